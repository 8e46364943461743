// One trace: span tree with a timing waterfall, and the selected span's details; its totals,
// and each model call read as a chat (the Conversation tab).

import { api, ApiError } from "./api.js";
import { chat, chatAfter } from "./chat.js";
import { copyButton, fmt, h, mount, notice, pretty } from "./dom.js";
import { addToDataset } from "./add-dataset.js";
import { costTitle, scoreChips } from "./explore.js";


// The server says what each span is (its purpose, a model call, a tool call), by the same
// rules as the experiment rows: the page never keeps a copy of them.
export function kindOf(span) {
  return span.category || "span";
}

const LABELS = { eval: "eval", task: "task", scorer: "scorer", llm: "LLM", tool: "tool", span: "span" };

function badge(kind) {
  return h("span", { class: `badge kind-${kind}` }, LABELS[kind] || kind);
}

/** Spans in tree order (depth first, children by start time), each with its depth. */
export function treeOrder(spans) {
  const ids = new Set(spans.map((span) => span.span_id));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    if (span.parent_span_id && ids.has(span.parent_span_id)) {
      if (!children.has(span.parent_span_id)) children.set(span.parent_span_id, []);
      children.get(span.parent_span_id).push(span);
    } else roots.push(span);
  }
  const byStart = (a, b) => a.start_ns - b.start_ns || a.name.localeCompare(b.name);
  const out = [];
  const seen = new Set();
  const walk = (span, depth) => {
    if (seen.has(span.span_id)) return;
    seen.add(span.span_id);
    const kids = (children.get(span.span_id) || []).sort(byStart);
    out.push({ span, depth, hasChildren: kids.length > 0 });
    for (const kid of kids) walk(kid, depth + 1);
  };
  roots.sort(byStart).forEach((root) => walk(root, 0));
  return { rows: out, children };
}

function llmSummary(llm) {
  if (!llm) return null;
  const parts = [];
  const tokens = (llm.input_tokens || 0) + (llm.output_tokens || 0);
  if (tokens) parts.push(`${fmt.tokens(tokens)} tok`);
  if (Number.isFinite(llm.cost_usd)) parts.push(fmt.usd(llm.cost_usd));
  else if (llm.cost_provenance === "unknown") parts.push("cost unknown");
  return parts.length ? h("span", { class: "span-llm muted small" }, parts.join(" · ")) : null;
}

function durationLabel(span, left, width) {
  // Right of the bar; inside a long bar; left of a short bar that ends near the edge.
  const text = fmt.ms(span.duration_ms);
  if (width >= 22) return h("span", { class: "wf-label inside", style: { right: `${100 - left - width}%` } }, text);
  if (left + width > 78) return h("span", { class: "wf-label before", style: { right: `${100 - left}%` } }, text);
  return h("span", { class: "wf-label", style: { left: `${left + width}%` } }, text);
}

function scoreInline(span) {
  const a = span.attributes || {};
  if (a["evalhouse.score.error"]) return h("span", { class: "chip bad small", title: a["evalhouse.score.error"] }, "scorer error");
  const v = Number(a["evalhouse.score.value"]);
  if (!("evalhouse.score.value" in a) || !Number.isFinite(v)) return null;
  return h("span", { class: `chip small score-${v >= 0.8 ? "good" : v >= 0.5 ? "mid" : "bad"}` }, fmt.score(v));
}

/** The stored scores of one span (rules, people, the app's evaluation events), newest first. */
function scoresOf(trace, span) {
  return (trace.scores || []).filter((score) => score.span_id === span.span_id);
}

function scoreLevel(value) {
  return value >= 0.8 ? "good" : value >= 0.5 ? "mid" : "bad";
}

/** A badge per stored score of the span in the tree: its name and value (or label). */
function storedBadges(scores) {
  return scores.map((score) => {
    const known = score.value !== null && score.value !== undefined;
    const text = known ? `${score.name} ${fmt.score(score.value)}` : `${score.name}: ${score.label || "–"}`;
    const level = score.error ? "bad" : known ? scoreLevel(score.value) : "mid";
    return h("span", { class: `chip small score-${level} stored-score`, "data-score": score.name, title: `${score.source}${score.author ? ` · ${score.author}` : ""}${score.rule ? ` · rule ${score.rule} v${score.rule_version}` : ""}` }, text);
  });
}

/** Every stored score of the span with who gave it and why. */
function storedBlock(scores) {
  if (!scores.length) return null;
  const who = (score) => (score.rule ? `rule ${score.rule} (v${score.rule_version})` : score.author ? `${score.source} · ${score.author}` : score.source);
  return h(
    "section",
    { class: "detail-block", id: "span-scores" },
    h("h3", {}, `Scores (${scores.length})`),
    h(
      "dl",
      { class: "facts" },
      scores.map((score) => [
        h("dt", {}, score.name),
        h(
          "dd",
          {},
          score.value !== null && score.value !== undefined ? fmt.score(score.value) : score.label || "–",
          score.value !== null && score.value !== undefined && score.label ? ` (${score.label})` : "",
          h("span", { class: "muted small" }, ` · ${who(score)} · ${fmt.time(score.created_at)}`),
          score.explanation ? h("div", { class: "small" }, score.explanation) : null,
          score.error ? h("div", { class: "bad-text small" }, score.error) : null,
        ),
      ]),
    ),
  );
}

function messages(span) {
  if (!span.input_messages.length && !span.output_messages.length) return null;
  return h("section", { class: "detail-block", id: "span-chat" }, h("h3", {}, "Messages"), chat(span.input_messages, span.output_messages));
}

// A tool span: what it was called with and what it gave back (OTel GenAI, OpenInference).
function toolBlock(span) {
  const a = span.attributes || {};
  const name = a["gen_ai.tool.name"] || a["tool.name"];
  const args = a["gen_ai.tool.call.arguments"] ?? a["tool.parameters"] ?? span.input ?? null;
  const result = a["gen_ai.tool.call.result"] ?? span.output ?? null;
  if (!name && args === null && result === null) return null;
  return h(
    "section",
    { class: "detail-block", id: "tool-block" },
    h("h3", {}, "Tool call"),
    h("div", { class: "tool-call" }, h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "ƒ"), h("strong", { class: "mono" }, name || span.name)), args !== null ? h("pre", { class: "tool-args" }, pretty(args)) : null),
    result !== null ? h("div", { class: "tool-result" }, h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "↩"), "result"), h("pre", { class: "tool-args" }, pretty(result))) : null,
  );
}

function value(title, v) {
  if (v === null || v === undefined || v === "") return null;
  return h("section", { class: "detail-block" }, h("h3", {}, title), h("pre", { class: "code" }, pretty(v)));
}

function llmBlock(span) {
  const llm = span.llm;
  if (!llm) return null;
  const counted = span.model_call
    ? llm.counted
      ? h("p", { class: "small good-text" }, "Counted in the row's tokens and cost (a leaf model call).")
      : h("p", { class: "small muted" }, "Not counted: a model call below this span reports the same usage, so it would count twice.")
    : null;
  const provenance = llm.cost_provenance === "none" ? "not a model call" : costTitle(llm.cost_provenance);
  return h(
    "section",
    { class: "detail-block", id: "llm-block" },
    h("h3", {}, "Model call"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "provider"),
      h("dd", {}, llm.provider || "–"),
      h("dt", {}, "model"),
      h("dd", {}, llm.request_model || "–", llm.response_model && llm.response_model !== llm.request_model ? ` → ${llm.response_model}` : ""),
      h("dt", {}, "operation"),
      h("dd", {}, llm.operation || "–"),
      h("dt", {}, "input tokens"),
      h("dd", {}, fmt.int(llm.input_tokens), llm.cache_read_tokens || llm.cache_write_tokens ? h("span", { class: "muted" }, ` (cache read ${fmt.int(llm.cache_read_tokens)}, write ${fmt.int(llm.cache_write_tokens)})`) : null),
      h("dt", {}, "output tokens"),
      h("dd", {}, fmt.int(llm.output_tokens), llm.reasoning_tokens ? h("span", { class: "muted" }, ` (reasoning ${fmt.int(llm.reasoning_tokens)})`) : null),
      h("dt", {}, "cost"),
      llm.cost_provenance === "none"
        ? h("dd", { id: "span-cost", class: "muted" }, "– not priced: not a model call (its calls are)")
        : h("dd", { id: "span-cost", class: Number.isFinite(llm.cost_usd) ? null : "cost-unknown" }, fmt.usd(llm.cost_usd), h("span", { class: "muted" }, ` · ${llm.cost_provenance}: ${provenance}`)),
    ),
    counted,
  );
}

function scoreBlock(span) {
  const a = span.attributes || {};
  if (!("evalhouse.score.name" in a) && !("evalhouse.score.error" in a)) return null;
  const v = Number(a["evalhouse.score.value"]);
  return h(
    "section",
    { class: "detail-block" },
    h("h3", {}, "Score"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, a["evalhouse.score.name"] || "score"),
      h("dd", {}, Number.isFinite(v) ? fmt.score(v) : "–"),
      a["evalhouse.score.explanation"] ? [h("dt", {}, "explanation"), h("dd", {}, a["evalhouse.score.explanation"])] : null,
      a["evalhouse.score.error"] ? [h("dt", {}, "error"), h("dd", { class: "bad-text" }, a["evalhouse.score.error"])] : null,
    ),
  );
}

function attributesBlock(span) {
  const entries = Object.entries(span.attributes || {}).sort(([a], [b]) => a.localeCompare(b));
  const filter = h("input", { type: "search", placeholder: "filter attributes", "aria-label": "filter attributes" });
  const body = h("tbody");
  const draw = () => {
    const needle = filter.value.toLowerCase();
    mount(
      body,
      entries
        .filter(([k, v]) => !needle || k.toLowerCase().includes(needle) || v.toLowerCase().includes(needle))
        .map(([k, v]) => h("tr", {}, h("td", { class: "mono small attr-key" }, k), h("td", {}, v.length > 400 ? h("details", {}, h("summary", {}, `${v.slice(0, 200)}…`), h("div", { class: "pre" }, pretty(v))) : h("div", { class: "pre" }, v)))),
    );
  };
  filter.addEventListener("input", draw);
  draw();
  return h("section", { class: "detail-block" }, h("div", { class: "card-head" }, h("h3", {}, `Attributes (${entries.length})`), filter), h("table", { class: "table attrs", id: "attributes" }, body));
}

function eventsBlock(span, start) {
  if (!span.events || !span.events.length) return null;
  return h(
    "section",
    { class: "detail-block" },
    h("h3", {}, `Events (${span.events.length})`),
    span.events.map((event) => h("div", { class: "event" }, h("span", { class: "strong" }, event.name), h("span", { class: "muted small" }, ` +${fmt.ms((event.time_ns - start) / 1e6)}`), Object.keys(event.attributes || {}).length ? h("pre", { class: "code small" }, pretty(event.attributes)) : null)),
  );
}

function details(span, trace) {
  const kind = kindOf(span);
  const tool = kind === "tool" ? toolBlock(span) : null;
  const failed = isFailed(span);
  return [
    h("div", { class: "detail-head" }, badge(kind), h("h2", {}, span.name)),
    failed ? notice("error", "This span failed", span.status_message || "status ERROR, no message") : null,
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "duration"),
      h("dd", {}, fmt.ms(span.duration_ms)),
      h("dt", {}, "starts at"),
      h("dd", {}, `+${fmt.ms((span.start_ns - trace.start_ns) / 1e6)}`),
      h("dt", {}, "service"),
      h("dd", {}, span.service_name || "–"),
      h("dt", {}, "span id"),
      h("dd", { class: "mono small" }, span.span_id),
      span.parent_span_id ? [h("dt", {}, "parent"), h("dd", { class: "mono small" }, span.parent_span_id, span.orphan ? h("span", { class: "chip warn" }, "parent missing") : null)] : null,
    ),
    scoreBlock(span),
    storedBlock(scoresOf(trace, span)),
    llmBlock(span),
    messages(span),
    tool,
    tool ? null : value("Input", span.input),
    tool ? null : value("Output", span.output),
    attributesBlock(span),
    eventsBlock(span, span.start_ns),
  ];
}

function isFailed(span) {
  return span.status_code === "STATUS_CODE_ERROR" || span.status_code === "Error";
}

/** What the header needs of a trace whose row is not written yet (the evaluator writes it a
 * few seconds after the trace's last span): its root. Totals wait for the row, so that tokens
 * and cost follow the one rule the lists use. */
function pendingRow(spans, trace) {
  const root = spans.find((span) => span.span_id === trace.root_span_id) || spans[0];
  return { root_name: root ? root.name : "", service_name: root ? root.service_name : "", pending: true };
}

function totalsStrip(row, spanCount, durationMs) {
  const stat = (label, value, id, title) => h("div", { class: "stat", id, title }, h("div", { class: "stat-label" }, label), h("div", { class: "stat-value" }, value));
  if (row.pending) {
    return h("div", { class: "stat-strip", id: "trace-totals" }, stat("duration", fmt.ms(durationMs)), stat("spans", fmt.int(spanCount)), h("div", { class: "stat muted small pending-note" }, "Tokens and cost in total appear once the trace is complete (a few seconds after its last span); each model call's are in the tree."));
  }
  const cost = Number.isFinite(row.cost_usd)
    ? [fmt.usd(row.cost_usd), h("span", { class: "muted small" }, ` ${row.cost_provenance === "none" ? "" : row.cost_provenance}`)]
    : row.cost_provenance === "partly_unknown"
      ? [h("span", { class: "cost-unknown" }, `≥ ${fmt.usd(row.cost_known_usd)}`), h("span", { class: "muted small" }, " partly unknown")]
      : [h("span", { class: "cost-unknown" }, "unknown"), h("span", { class: "muted small" }, " no price known")];
  return h(
    "div",
    { class: "stat-strip", id: "trace-totals" },
    stat("duration", fmt.ms(durationMs)),
    stat("spans", fmt.int(spanCount)),
    stat("model calls", fmt.int(row.llm_calls), null, "leaf model calls: a framework span around the provider's span counts once"),
    stat("tokens", [fmt.int(row.total_tokens), h("span", { class: "muted small" }, ` ${fmt.int(row.input_tokens)} in · ${fmt.int(row.output_tokens)} out`)], "trace-tokens"),
    stat("cost", row.llm_calls || row.cost_provenance !== "none" ? cost : h("span", { class: "muted" }, "– no model calls"), "trace-cost", costTitle(row.cost_provenance)),
  );
}

/** The model calls in time order, each with its span (the API's list when it has one). */
function modelCalls(trace, byId) {
  const listed = trace.model_calls || trace.spans.filter((span) => span.model_call).map((span) => ({ span_id: span.span_id }));
  return listed
    .map((call) => byId.get(call.span_id))
    .filter(Boolean)
    .sort((a, b) => a.start_ns - b.start_ns);
}

/** Each model call as a chat; messages the previous call already showed fold away. */
function conversationView(calls, trace, open) {
  if (!calls.length) return h("section", { class: "card" }, h("p", { class: "muted" }, "No model calls in this trace."));
  let previous = [];
  return calls.map((span, i) => {
    const llm = span.llm;
    const before = previous;
    previous = [...span.input_messages, ...span.output_messages];
    const cost = Number.isFinite(llm.cost_usd) ? `${fmt.usd(llm.cost_usd)} ${llm.cost_provenance}` : "cost unknown";
    return h(
      "section",
      { class: ["card", "call-card", isFailed(span) && "failed"], "data-span": span.span_id },
      h(
        "div",
        { class: "card-head" },
        h("h2", {}, h("span", { class: "muted" }, `${i + 1}. `), span.name),
        h(
          "div",
          { class: "call-meta muted small" },
          [llm.provider, llm.request_model || llm.response_model].filter(Boolean).join(" · "),
          ` · +${fmt.ms((span.start_ns - trace.start_ns) / 1e6)} · ${fmt.ms(span.duration_ms)} · ${fmt.int(llm.input_tokens)} in / ${fmt.int(llm.output_tokens)} out · ${cost}`,
          llm.counted ? null : h("span", { class: "chip muted small", title: "a model call below this span reports the same usage" }, "not counted"),
          " ",
          h("button", { type: "button", class: "link-button", onclick: () => open(span) }, "show in timeline"),
        ),
      ),
      isFailed(span) ? notice("error", "This call failed", span.status_message || "status ERROR") : null,
      chatAfter(before, span.input_messages, span.output_messages, `as in call ${i}`),
    );
  });
}

export async function render(root, traceId) {
  document.title = `Trace ${traceId.slice(0, 8)} · evalhouse`;
  mount(root, h("p", { class: "loading" }, "Loading trace…"));
  let trace;
  try {
    trace = await api(`/api/traces/${encodeURIComponent(traceId)}`);
  } catch (error) {
    const title = error instanceof ApiError && error.status === 404 ? "Trace not found" : "Could not load the trace";
    mount(root, h("div", { class: "crumbs" }, h("a", { href: "/traces" }, "Traces"), " / trace"), notice("error", title, error.message));
    return;
  }
  const spans = trace.spans;
  const byId = new Map(spans.map((span) => [span.span_id, span]));
  const { rows } = treeOrder(spans);
  const total = Math.max(1, trace.end_ns - trace.start_ns);
  const collapsed = new Set();
  const wanted = new URLSearchParams(window.location.hash.slice(1)).get("span");
  // A failed trace opens on where the failure began: a failed span with no failed child.
  const origin = spans.find((span) => isFailed(span) && !spans.some((child) => child.parent_span_id === span.span_id && isFailed(child)));
  let selected = byId.get(wanted) || origin || byId.get(trace.root_span_id) || spans[0];

  const panel = h("aside", { class: "card span-details", id: "span-details" });
  const tree = h("div", { class: "waterfall", id: "span-tree", role: "tree" });
  const experiment = trace.experiment;
  const row = trace.trace || pendingRow(spans, trace);
  const production = !experiment && row.kind !== "experiment";
  const failures = spans.filter(isFailed);
  const calls = modelCalls(trace, byId);
  let view = new URLSearchParams(window.location.search).get("view") === "chat" ? "chat" : "timeline";
  const timeline = h("div", { class: "trace-layout", id: "timeline-view" }, h("section", { class: "card" }, tree), panel);
  const conversation = h("div", { id: "chat-view" });
  const tabs = h("nav", { class: "tabs", id: "trace-tabs" });

  mount(
    root,
    h(
      "div",
      { class: "crumbs" },
      production ? h("a", { href: "/traces" }, "Traces") : h("a", { href: "/experiments" }, "Experiments"),
      experiment ? [" / ", h("a", { href: `/experiments/${encodeURIComponent(experiment.id)}` }, experiment.name || experiment.id)] : null,
      row.session_id ? [" / ", h("a", { href: `/sessions/${encodeURIComponent(row.session_id)}` }, `session ${row.session_id}`)] : null,
      " / trace",
    ),
    h(
      "div",
      { class: "page-head" },
      h("div", { class: "title-status" }, h("h1", {}, row.root_name || "Trace"), h("span", { class: `chip ${failures.length ? "bad" : "good"}`, id: "trace-status" }, failures.length ? `error · ${failures.length} span${failures.length === 1 ? "" : "s"}` : "ok")),
      h("span", { class: "mono small muted" }, trace.trace_id),
      copyButton(trace.trace_id),
      addToDataset(() => [trace.trace_id], { id: "trace-dataset" }),
    ),
    h(
      "div",
      { class: "meta-line" },
      row.start_time ? h("span", { title: row.start_time }, fmt.time(row.start_time)) : null,
      row.service_name ? h("span", {}, "service ", h("strong", {}, row.service_name)) : null,
      row.user_id ? h("span", {}, "user ", h("a", { href: `/traces?filter=${encodeURIComponent(`user:${row.user_id}`)}` }, row.user_id)) : null,
      (row.tags || []).length ? h("span", { class: "chips" }, row.tags.map((t) => h("span", { class: "chip small tag" }, t))) : null,
      (row.models || []).length ? h("span", { class: "chips" }, row.models.map((m) => h("span", { class: "chip muted model" }, m))) : null,
      Object.keys(row.scores || {}).length ? scoreChips(row.scores) : null,
      experiment && experiment.row_id ? h("span", { class: "muted" }, `row ${experiment.row_id}${experiment.trial ? `, trial ${experiment.trial}` : ""}`) : null,
    ),
    totalsStrip(row, spans.length, trace.duration_ms),
    failures.length
      ? notice(
          "error",
          `${failures.length} span${failures.length === 1 ? "" : "s"} failed`,
          h("ul", { class: "failures", id: "trace-failures" }, failures.map((span) => h("li", {}, h("button", { type: "button", class: "link-button", onclick: () => { showView("timeline"); select(span); } }, span.name), span.status_message ? h("span", {}, `: ${span.status_message}`) : null))),
        )
      : null,
    trace.orphans ? notice("warn", `${trace.orphans} span(s) without their parent`, "Their parent span never arrived (or not yet); they are shown at the top level.") : null,
    trace.truncated ? notice("warn", "Trace cut short", `Only the first ${spans.length} spans are shown.`) : null,
    tabs,
    timeline,
    conversation,
  );

  function showView(next) {
    view = next;
    const search = new URLSearchParams(window.location.search);
    if (view === "chat") search.set("view", "chat");
    else search.delete("view");
    const text = search.toString();
    history.replaceState(null, "", `${window.location.pathname}${text ? `?${text}` : ""}${window.location.hash}`);
    mount(
      tabs,
      h("a", { href: "#", class: view === "timeline" ? "active" : "", "data-view": "timeline", onclick: (event) => { event.preventDefault(); showView("timeline"); } }, "Timeline"),
      h("a", { href: "#", class: view === "chat" ? "active" : "", "data-view": "chat", onclick: (event) => { event.preventDefault(); showView("chat"); } }, `Conversation (${calls.length} model call${calls.length === 1 ? "" : "s"})`),
      view === "chat" ? null : h("span", { class: "legend tab-legend" }, ["eval", "task", "scorer", "llm", "tool", "span"].map((k) => h("span", { class: "legend-item" }, h("i", { class: `kind-${k}` }), LABELS[k]))),
    );
    timeline.hidden = view !== "timeline";
    conversation.hidden = view !== "chat";
    if (view === "chat" && !conversation.firstChild) mount(conversation, conversationView(calls, trace, (span) => { showView("timeline"); select(span); }));
  }

  function hiddenByCollapse(span) {
    let parent = byId.get(span.parent_span_id);
    while (parent) {
      if (collapsed.has(parent.span_id)) return true;
      parent = byId.get(parent.parent_span_id);
    }
    return false;
  }

  function drawTree() {
    const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => h("span", { style: { left: `${f * 100}%` } }, fmt.ms((f * total) / 1e6)));
    mount(
      tree,
      h("div", { class: "wf-head" }, h("div", { class: "wf-name" }, "span"), h("div", { class: "wf-time" }, ticks)),
      rows
        .filter(({ span }) => !hiddenByCollapse(span))
        .map(({ span, depth, hasChildren }) => {
          const kind = kindOf(span);
          const left = ((span.start_ns - trace.start_ns) / total) * 100;
          const width = Math.max(0.4, ((span.end_ns - span.start_ns) / total) * 100);
          const failed = isFailed(span);
          return h(
            "div",
            {
              class: ["wf-row", span === selected && "selected", failed && "failed"],
              role: "treeitem",
              "data-span": span.span_id,
              "data-kind": kind,
              tabindex: 0,
              onclick: () => select(span),
              onkeydown: (event) => { if (event.key === "Enter") select(span); },
            },
            h(
              "div",
              { class: "wf-name", style: { paddingLeft: `${depth * 16 + 4}px` } },
              hasChildren ? h("button", { type: "button", class: "toggle", "aria-label": "collapse", onclick: (event) => { event.stopPropagation(); if (collapsed.has(span.span_id)) collapsed.delete(span.span_id); else collapsed.add(span.span_id); drawTree(); } }, collapsed.has(span.span_id) ? "▸" : "▾") : h("span", { class: "toggle" }),
              badge(kind),
              h("span", { class: "span-name", title: span.name }, span.name),
              failed ? h("span", { class: "chip bad small" }, "error") : null,
              scoreInline(span),
              storedBadges(scoresOf(trace, span)),
              llmSummary(span.llm),
            ),
            h(
              "div",
              { class: "wf-time" },
              h("div", { class: `wf-bar kind-${kind}`, style: { left: `${left}%`, width: `${width}%` } }),
              durationLabel(span, left, width),
            ),
          );
        }),
    );
  }

  function select(span) {
    selected = span;
    history.replaceState(null, "", `${window.location.pathname}${window.location.search}#span=${span.span_id}`);
    drawTree();
    mount(panel, details(span, trace));
  }

  drawTree();
  mount(panel, details(selected, trace));
  showView(view);
}
