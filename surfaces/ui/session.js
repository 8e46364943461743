// One session, read like the conversation it was: each trace a turn (what the user said, what
// the app answered) with its tokens, cost and latency; the model calls of a turn unfold on
// demand; long sessions load a page of turns at a time.

import { api, ApiError } from "./api.js";
import { chatAfter } from "./chat.js";
import { copyButton, fmt, h, mount, notice, toDate } from "./dom.js";
import { clock, costCell, costTitle, infinitePages, longDuration, onPopState, readState, scoreChips, writeState } from "./explore.js";
import { lengthMs, sessionProvenance } from "./sessions.js";

const PAGE = 50;
const PREVIEW = 500; // the API's previews stop at 500 characters
const DEFAULTS = { since: "30d" };
const WINDOWS = [["7d", "last 7 days"], ["30d", "last 30 days"], ["90d", "last 90 days"], ["365d", "last year"]];

function gap(ms) {
  if (ms < 60000) return null;
  if (ms < 3600000) return `${Math.round(ms / 60000)} min later`;
  if (ms < 86400000) return `${(ms / 3600000).toFixed(1).replace(/\.0$/, "")} h later`;
  return `${Math.round(ms / 86400000)} days later`;
}

function bubble(role, text, traceHref) {
  if (!text) return null;
  const cut = text.length >= PREVIEW;
  return h(
    "div",
    { class: ["bubble", `bubble-${role}`], "data-role": role },
    h("div", { class: "chat-role" }, role === "user" ? "User" : "Assistant"),
    h("div", { class: "chat-text" }, cut ? `${text}…` : text),
    cut ? h("a", { href: traceHref, class: "small" }, "the whole text is in the trace") : null,
  );
}

async function unfold(target, trace) {
  mount(target, h("p", { class: "loading" }, "Loading the model calls…"));
  try {
    const detail = await api(`/api/traces/${encodeURIComponent(trace.trace_id)}`);
    const spans = new Map(detail.spans.map((s) => [s.span_id, s]));
    const calls = (detail.model_calls || []).map((c) => spans.get(c.span_id)).filter(Boolean).sort((a, b) => a.start_ns - b.start_ns);
    if (!calls.length) {
      mount(target, h("p", { class: "muted small" }, "No model calls in this turn."));
      return;
    }
    let previous = [];
    mount(
      target,
      calls.map((call, i) => {
        const before = previous;
        previous = [...call.input_messages, ...call.output_messages];
        return h(
          "div",
          { class: "turn-call" },
          h("div", { class: "muted small call-meta" }, h("strong", {}, call.name), ` · ${call.llm.request_model || call.llm.response_model || "model"} · ${fmt.ms(call.duration_ms)} · ${fmt.int(call.llm.input_tokens)} in / ${fmt.int(call.llm.output_tokens)} out · ${Number.isFinite(call.llm.cost_usd) ? fmt.usd(call.llm.cost_usd) : "cost unknown"}`),
          chatAfter(before, call.input_messages, call.output_messages, `as in call ${i}`),
        );
      }),
    );
  } catch (error) {
    mount(target, notice("error", "Could not load the turn", error.message));
  }
}

function turn(trace, number) {
  const href = `/traces/${encodeURIComponent(trace.trace_id)}`;
  const failed = trace.status === "error";
  const calls = h("div", { class: "turn-calls", hidden: true });
  const toggle = h("button", { type: "button", class: "link-button turn-toggle", hidden: !trace.llm_calls }, "show the model calls");
  toggle.addEventListener("click", () => {
    calls.hidden = !calls.hidden;
    toggle.textContent = calls.hidden ? "show the model calls" : "hide the model calls";
    if (!calls.hidden && !calls.firstChild) unfold(calls, trace);
  });
  return h(
    "article",
    { class: ["turn", failed && "failed"], "data-trace": trace.trace_id },
    h(
      "div",
      { class: "turn-meta" },
      h("a", { href, class: "strong" }, `Turn ${number}`),
      h("span", { title: fmt.time(trace.start_time) }, clock(trace.start_time)),
      h("span", { class: "turn-latency", title: "latency of the turn (its trace)" }, fmt.ms(trace.duration_ms)),
      trace.llm_calls
        ? [
            h("span", { class: "turn-tokens", title: `${fmt.int(trace.input_tokens)} in · ${fmt.int(trace.output_tokens)} out` }, `${fmt.int(trace.total_tokens)} tokens`),
            h("span", { class: "turn-cost", title: costTitle(trace.cost_provenance) }, costCell(trace)),
          ]
        : h("span", { class: "turn-tokens" }, "no model calls"),
      (trace.models || []).map((m) => h("span", { class: "chip muted model" }, m)),
      failed ? h("span", { class: "chip bad" }, `error${trace.error_count > 1 ? ` ×${trace.error_count}` : ""}`) : null,
      Object.keys(trace.scores || {}).length ? scoreChips(trace.scores) : null,
      h("span", { class: "spacer" }),
      h("span", { class: "turn-actions" }, toggle, h("a", { href }, "open the trace")),
    ),
    bubble("user", trace.input_preview, href),
    bubble("assistant", trace.output_preview, href),
    !trace.input_preview && !trace.output_preview ? h("p", { class: "muted small" }, `No input or output was recorded for this turn (${trace.root_name}).`) : null,
    calls,
  );
}

export async function render(root, sessionId) {
  document.title = `Session ${sessionId} · evalhouse`;
  const state = readState(DEFAULTS);
  onPopState(() => render(root, sessionId));
  const crumbs = h("div", { class: "crumbs" }, h("a", { href: "/sessions" }, "Sessions"), ` / ${sessionId}`);
  const windowSelect = h("select", { id: "session-window", "aria-label": "look back" }, WINDOWS.map(([key, label]) => h("option", { value: key, selected: key === state.since }, label)));
  if (!WINDOWS.some(([key]) => key === state.since)) windowSelect.prepend(h("option", { value: state.since, selected: true }, `since ${state.since}`));
  windowSelect.addEventListener("change", () => {
    writeState({ since: windowSelect.value }, DEFAULTS);
    render(root, sessionId);
  });
  mount(root, crumbs, h("p", { class: "loading" }, "Loading session…"));
  let first;
  try {
    first = await api(`/api/sessions/${encodeURIComponent(sessionId)}`, { since: state.since, limit: PAGE });
  } catch (error) {
    const missing = error instanceof ApiError && error.status === 404;
    mount(root, crumbs, h("div", { class: "page-head" }, h("h1", {}, "Session"), h("div", { class: "filters" }, windowSelect)), notice("error", missing ? "Session not found" : "Could not load the session", error.message));
    return;
  }
  const session = first.session;
  const conversation = h("div", { class: "conversation", id: "conversation" });
  let number = 0;
  let last = null;
  let pending = first;
  const pages = infinitePages({
    load: async (cursor) => {
      const data = pending || (await api(`/api/sessions/${encodeURIComponent(sessionId)}`, { since: state.since, limit: PAGE, cursor }));
      pending = null;
      return { items: data.traces || [], next: data.next_cursor };
    },
    draw: (items) => {
      for (const trace of items) {
        const at = toDate(trace.start_time);
        const later = last && at ? gap(at - last) : null;
        if (later) conversation.append(h("div", { class: "turn-gap muted small" }, later));
        last = toDate(trace.end_time) || at;
        number += 1;
        conversation.append(turn(trace, number));
      }
    },
    describe: (count, done, busy) => (busy ? "Loading turns…" : done ? `${fmt.int(count)} turn${count === 1 ? "" : "s"} · the whole session` : `${fmt.int(count)} of ${fmt.int(session.traces)} turns · scroll for more`),
  });
  const stat = (label, value, id, title) => h("div", { class: "stat", id, title }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value));
  const filter = encodeURIComponent(`session:${sessionId}`);
  mount(
    root,
    crumbs,
    h("div", { class: "page-head" }, h("div", { class: "title-status" }, h("h1", {}, "Session ", h("span", { class: "session-id" }, sessionId)), copyButton(sessionId)), h("div", { class: "filters" }, windowSelect, h("a", { class: "button", id: "session-traces", href: `/traces?since=${encodeURIComponent(state.since)}&filter=${filter}` }, "Traces of this session"))),
    h(
      "div",
      { class: "meta-line" },
      session.user_id ? h("span", {}, "user ", h("a", { href: `/sessions?since=${encodeURIComponent(state.since)}&filter=${encodeURIComponent(`user:${session.user_id}`)}` }, session.user_id)) : null,
      h("span", { title: fmt.time(session.start_time) }, `started ${fmt.time(session.start_time)}`),
      h("span", { title: fmt.time(session.end_time) }, `last activity ${fmt.ago(session.end_time)}`),
      Object.keys(session.scores || {}).length ? h("span", {}, "mean scores ", scoreChips(session.scores)) : null,
    ),
    h(
      "div",
      { class: "stat-strip", id: "session-totals" },
      stat("turns", fmt.int(session.traces), "session-turns"),
      stat("length", longDuration(lengthMs(session))),
      stat("model calls", fmt.int(session.llm_calls)),
      stat("tokens", fmt.int(session.total_tokens), "session-tokens"),
      stat("cost", costCell({ ...session, cost_provenance: sessionProvenance(session) }), "session-cost"),
      stat("errors", session.error_count ? h("span", { class: "bad-text" }, fmt.int(session.error_count)) : "0", null, "spans in error across the session's traces"),
    ),
    h("section", { class: "card conversation-card" }, conversation, pages.footer),
  );
  await pages.start();
}
