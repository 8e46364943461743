// One trace: span tree with a timing waterfall, and the selected span's details.

import { api, ApiError } from "./api.js";
import { copyButton, fmt, h, mount, notice, pretty } from "./dom.js";

const MODEL_CALLS = new Set(["chat", "text_completion", "generate_content", "embeddings"]);

export function kindOf(span) {
  if (span.purpose) return span.purpose;
  if (span.llm && MODEL_CALLS.has(span.llm.operation)) return "llm";
  if (span.llm && span.llm.operation === "execute_tool") return "tool";
  return "span";
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

function messages(title, list) {
  if (!list || !list.length) return null;
  return h("section", { class: "detail-block" }, h("h3", {}, title), list.map((m) => h("div", { class: `message role-${(m.role || "other").replace(/[^a-z]/g, "")}` }, h("div", { class: "role" }, m.role || "message"), h("div", { class: "pre" }, m.content))));
}

function value(title, v) {
  if (v === null || v === undefined || v === "") return null;
  return h("section", { class: "detail-block" }, h("h3", {}, title), h("pre", { class: "code" }, pretty(v)));
}

function llmBlock(llm) {
  if (!llm) return null;
  const counted = MODEL_CALLS.has(llm.operation)
    ? llm.counted
      ? h("p", { class: "small good-text" }, "Counted in the row's tokens and cost (a leaf model call).")
      : h("p", { class: "small muted" }, "Not counted: a model call below this span reports the same usage, so it would count twice.")
    : null;
  const provenance = { provided: "reported by the span", inferred: "priced from the offline price table", unknown: "model or usage not priced", none: "not a model call" }[llm.cost_provenance] || llm.cost_provenance;
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
      h("dd", { id: "span-cost" }, fmt.usd(llm.cost_usd), h("span", { class: "muted" }, ` · ${llm.cost_provenance}: ${provenance}`)),
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
  const failed = span.status_code === "STATUS_CODE_ERROR" || span.status_code === "Error";
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
    llmBlock(span.llm),
    messages("Input messages", span.input_messages),
    messages("Output messages", span.output_messages),
    value("Input", span.input),
    value("Output", span.output),
    attributesBlock(span),
    eventsBlock(span, span.start_ns),
  ];
}

export async function render(root, traceId) {
  document.title = `Trace ${traceId.slice(0, 8)} · evalhouse`;
  mount(root, h("p", { class: "loading" }, "Loading trace…"));
  let trace;
  try {
    trace = await api(`/api/traces/${encodeURIComponent(traceId)}`);
  } catch (error) {
    const title = error instanceof ApiError && error.status === 404 ? "Trace not found" : "Could not load the trace";
    mount(root, h("div", { class: "crumbs" }, h("a", { href: "/" }, "Experiments"), " / trace"), notice("error", title, error.message));
    return;
  }
  const spans = trace.spans;
  const byId = new Map(spans.map((span) => [span.span_id, span]));
  const { rows } = treeOrder(spans);
  const total = Math.max(1, trace.end_ns - trace.start_ns);
  const collapsed = new Set();
  const wanted = new URLSearchParams(window.location.hash.slice(1)).get("span");
  let selected = byId.get(wanted) || byId.get(trace.root_span_id) || spans[0];

  const panel = h("aside", { class: "card span-details", id: "span-details" });
  const tree = h("div", { class: "waterfall", id: "span-tree", role: "tree" });
  const experiment = trace.experiment;
  const services = [...new Set(spans.map((span) => span.service_name).filter(Boolean))];
  const calls = spans.filter((span) => span.llm && span.llm.counted);
  const tokens = calls.reduce((sum, span) => sum + span.llm.input_tokens + span.llm.output_tokens, 0);

  mount(
    root,
    h("div", { class: "crumbs" }, h("a", { href: "/" }, "Experiments"), experiment ? [" / ", h("a", { href: `/experiments/${encodeURIComponent(experiment.id)}` }, experiment.name || experiment.id)] : null, " / trace"),
    h("div", { class: "page-head" }, h("h1", {}, "Trace"), h("span", { class: "mono small" }, trace.trace_id), copyButton(trace.trace_id)),
    h(
      "div",
      { class: "meta-line" },
      h("span", {}, h("strong", {}, fmt.ms(trace.duration_ms)), " total"),
      h("span", {}, `${spans.length} spans`),
      services.length ? h("span", {}, `service ${services.join(", ")}`) : null,
      calls.length ? h("span", {}, `${calls.length} model call${calls.length === 1 ? "" : "s"} · ${fmt.tokens(tokens)} tokens`) : null,
      experiment && experiment.row_id ? h("span", { class: "muted" }, `row ${experiment.row_id}${experiment.trial ? `, trial ${experiment.trial}` : ""}`) : null,
      h("span", { class: "legend" }, ["eval", "task", "scorer", "llm", "tool", "span"].map((k) => h("span", { class: "legend-item" }, h("i", { class: `kind-${k}` }), LABELS[k]))),
    ),
    trace.orphans ? notice("warn", `${trace.orphans} span(s) without their parent`, "Their parent span never arrived (or not yet); they are shown at the top level.") : null,
    trace.truncated ? notice("warn", "Trace cut short", `Only the first ${spans.length} spans are shown.`) : null,
    h("div", { class: "trace-layout" }, h("section", { class: "card" }, tree), panel),
  );

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
          const failed = span.status_code === "STATUS_CODE_ERROR";
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
    history.replaceState(null, "", `#span=${span.span_id}`);
    drawTree();
    mount(panel, details(span, trace));
  }

  drawTree();
  mount(panel, details(selected, trace));
}
