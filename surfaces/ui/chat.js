// A model call read as a chat: system, user and assistant messages, tool calls and their
// results. The API gives each message as {role, content} text in every dialect, a tool call
// as a line "→ name(arguments)" and a tool result as "← result" (evaluators/_messages.py).

import { h, pretty } from "./dom.js";

const CALL = /^→ ([^(\n]*)\(([\s\S]*)\)$/;

/** A message's text as parts: {kind: "text"|"call"|"result", ...}. */
export function parts(content) {
  const out = [];
  let text = [];
  const flush = () => {
    if (text.length) out.push({ kind: "text", text: text.join("\n") });
    text = [];
  };
  for (const line of String(content ?? "").split("\n")) {
    const call = CALL.exec(line);
    if (call) {
      flush();
      out.push({ kind: "call", name: call[1].trim() || "tool", args: call[2] });
    } else if (line.startsWith("← ")) {
      flush();
      out.push({ kind: "result", text: line.slice(2) });
    } else text.push(line);
  }
  flush();
  return out;
}

function partNode(part) {
  if (part.kind === "call") {
    return h("div", { class: "tool-call" }, h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "ƒ"), h("span", {}, "calls tool "), h("strong", { class: "mono" }, part.name)), part.args ? h("pre", { class: "tool-args" }, pretty(part.args)) : null);
  }
  if (part.kind === "result") {
    return h("div", { class: "tool-result" }, h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "↩"), "tool result"), h("pre", { class: "tool-args" }, pretty(part.text)));
  }
  return h("div", { class: "chat-text" }, part.text);
}

const ROLE_LABELS = { system: "System", user: "User", assistant: "Assistant", tool: "Tool", developer: "Developer", model: "Assistant" };

/** One message bubble; `answer` marks a message the model produced in this call. */
export function message(m, { answer = false } = {}) {
  const role = String(m.role || "").toLowerCase();
  const cls = role.replace(/[^a-z]/g, "") || "other";
  const pieces = parts(m.content);
  const hasCall = pieces.some((p) => p.kind === "call");
  return h(
    "div",
    { class: ["chat-message", `chat-${cls}`, answer && "chat-answer", hasCall && "has-tool-call"], "data-role": role || "other" },
    h("div", { class: "chat-role" }, ROLE_LABELS[role] || role || "message", answer ? h("span", { class: "chat-tag" }, "response") : null),
    pieces.length ? pieces.map(partNode) : h("div", { class: "chat-text muted" }, "(empty)"),
  );
}

/** A chat: the call's input messages, then its output (marked as the response). */
export function chat(input, output) {
  const shown = [...(input || []).map((m) => message(m)), ...(output || []).map((m) => message(m, { answer: true }))];
  if (!shown.length) return h("p", { class: "muted small" }, "No messages were captured for this call (the instrumentation may not record content).");
  return h("div", { class: "chat" }, shown);
}

const same = (a, b) => a.role === b.role && a.content === b.content;

/**
 * A call's chat after an earlier call of the same conversation: the messages it repeats from
 * `previous` (that call's input and output) fold away under `label`.
 */
export function chatAfter(previous, input, output, label = "as in the call before") {
  let repeated = 0;
  while (repeated < input.length && repeated < previous.length && same(input[repeated], previous[repeated])) repeated += 1;
  if (!repeated) return chat(input, output);
  return [
    h("details", { class: "earlier" }, h("summary", {}, `${repeated} earlier message${repeated === 1 ? "" : "s"}, ${label}`), chat(input.slice(0, repeated), [])),
    repeated < input.length || output.length ? chat(input.slice(repeated), output) : null,
  ];
}
