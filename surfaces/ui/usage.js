// Usage over time: cost, tokens, LLM calls, latency percentiles and errors per bucket, grouped
// by model, provider, service or user; and what each model cost over the window.

import { api } from "./api.js";
import { timeChart } from "./charts.js";
import { fmt, h, mount, notice, toDate } from "./dom.js";
import { filterBar, onPopState, rangeText, readState, showError, timeRange, writeState } from "./explore.js";

const DEFAULTS = { since: "24h", until: "", interval: "", group_by: "model", filter: "", where: "", percentile: "p95" };
const INTERVALS = ["1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d"];
const SECONDS = { m: 60, h: 3600, d: 86400, w: 604800 };
const GROUPS = [["model", "model"], ["provider", "provider"], ["service", "service"], ["user", "user"], ["none", "nothing (totals)"]];
const TOP = 6; // groups drawn on their own; the rest is "other"

function seconds(text) {
  const match = /^(\d+(?:\.\d+)?)([mhdw])$/.exec(String(text || "").trim());
  return match ? Number(match[1]) * SECONDS[match[2]] : null;
}

/** The window as times: [since, until] in ms. */
function windowOf(state) {
  const now = Date.now();
  const relative = seconds(state.since);
  const since = relative ? now - relative * 1000 : toDate(state.since)?.getTime() ?? now - 86400000;
  const until = state.until ? toDate(state.until)?.getTime() ?? now : now;
  return [since, until];
}

/** About 30 to 60 buckets across the window (readable bars), from the API's intervals. */
export function autoInterval(since, until) {
  const span = (until - since) / 1000;
  return INTERVALS.find((text) => span / seconds(text) <= 60) || "1d";
}

function sum(rows, key) {
  return rows.reduce((total, row) => total + (Number(row[key]) || 0), 0);
}

/** Groups ranked by what they cost (then tokens, calls), the first TOP kept. */
function topGroups(buckets) {
  const totals = new Map();
  for (const b of buckets) {
    const t = totals.get(b.group) || { cost: 0, tokens: 0, calls: 0, traces: 0 };
    t.cost += b.cost_known_usd || 0;
    t.tokens += b.total_tokens || 0;
    t.calls += b.llm_calls || 0;
    t.traces += b.traces || 0;
    totals.set(b.group, t);
  }
  const ranked = [...totals.entries()].sort(([, a], [, b]) => b.cost - a.cost || b.tokens - a.tokens || b.calls - a.calls || b.traces - a.traces).map(([g]) => g);
  return { top: ranked.slice(0, TOP), rest: ranked.slice(TOP) };
}

/** One series per score name: the mean of the bucket's scored traces (every group together). */
function scoreSeries(buckets) {
  const byName = new Map();
  for (const b of buckets) {
    for (const [name, mean] of Object.entries(b.scores || {})) {
      if (!byName.has(name)) byName.set(name, new Map());
      byName.get(name).set(toDate(b.t).getTime(), mean);
    }
  }
  return [...byName.keys()].sort().slice(0, TOP).map((name) => ({ name, values: byName.get(name) }));
}

const label = (group) => (group === null || group === undefined ? "all" : group === "" ? "(none)" : group);

/** One series per top group (and "other" for sums) of `key` per bucket time. */
function seriesOf(buckets, key, groups, { other = true } = {}) {
  const byGroup = new Map(groups.top.map((g) => [g, new Map()]));
  const rest = new Map();
  for (const b of buckets) {
    const t = toDate(b.t).getTime();
    const v = b[key];
    if (byGroup.has(b.group)) byGroup.get(b.group).set(t, v);
    else if (other && Number.isFinite(v)) rest.set(t, (rest.get(t) || 0) + v);
  }
  const out = groups.top.map((g) => ({ name: label(g), values: byGroup.get(g) }));
  if (other && groups.rest.length) out.push({ name: `other (${groups.rest.length})`, values: rest, color: "#94a3b8" });
  return out;
}

function tile(name, value, detail, id) {
  return h("div", { class: "stat", id }, h("div", { class: "stat-label" }, name), h("div", { class: "stat-value" }, value), detail ? h("div", { class: "muted small" }, detail) : null);
}

function knownCost(known, unpriced) {
  if (unpriced && !known) return h("span", { class: "cost-unknown" }, "unknown");
  if (unpriced) return h("span", { class: "cost-unknown", title: `${unpriced} model call(s) have no known price` }, `≥ ${fmt.usd(known)}`);
  return fmt.usd(known);
}

function costTable(buckets) {
  const models = new Map();
  for (const b of buckets) {
    const m = models.get(b.group) || { calls: 0, input: 0, output: 0, tokens: 0, known: 0, unpriced: 0, traces: 0 };
    m.calls += b.llm_calls;
    m.input += b.input_tokens;
    m.output += b.output_tokens;
    m.tokens += b.total_tokens;
    m.known += b.cost_known_usd || 0;
    m.unpriced += b.unpriced_calls || 0;
    m.traces += b.traces;
    models.set(b.group, m);
  }
  const rows = [...models.entries()].filter(([, m]) => m.calls).sort(([, a], [, b]) => (a.unpriced === a.calls) - (b.unpriced === b.calls) || b.known - a.known || b.tokens - a.tokens);
  const total = [...models.values()].reduce((t, m) => t + m.known, 0);
  if (!rows.length) return h("p", { class: "muted" }, "No model calls in this window.");
  const all = { calls: 0, input: 0, output: 0, tokens: 0, known: 0, unpriced: 0 };
  for (const [, m] of rows) for (const key of Object.keys(all)) all[key] += m[key];
  return h(
    "table",
    { class: "table", id: "cost-table" },
    h("thead", {}, h("tr", {}, h("th", {}, "Model"), h("th", { class: "num" }, "LLM calls"), h("th", { class: "num" }, "Input tokens"), h("th", { class: "num" }, "Output tokens"), h("th", { class: "num" }, "Cost"), h("th", { class: "num" }, "Per call"), h("th", { class: "num" }, "Share"))),
    h(
      "tbody",
      {},
      rows.map(([model, m]) => {
        const unknown = m.unpriced === m.calls;
        return h(
          "tr",
          { "data-model": model },
          h("td", { class: "strong" }, h("a", { href: `/traces?filter=${encodeURIComponent(`model:${model}`)}` }, label(model)), m.unpriced ? h("div", { class: "small missing-text" }, unknown ? "no known price for this model" : `${m.unpriced} call(s) without a price`) : null),
          h("td", { class: "num" }, fmt.int(m.calls)),
          h("td", { class: "num" }, fmt.int(m.input)),
          h("td", { class: "num" }, fmt.int(m.output)),
          h("td", { class: "num" }, knownCost(m.known, m.unpriced)),
          h("td", { class: "num" }, unknown ? h("span", { class: "cost-unknown" }, "unknown") : fmt.usd(m.known / (m.calls - m.unpriced))),
          h("td", { class: "num" }, unknown || !total ? "–" : `${((m.known / total) * 100).toFixed(1)}%`),
        );
      }),
    ),
    h("tfoot", {}, h("tr", {}, h("td", { class: "strong" }, "All models"), h("td", { class: "num" }, fmt.int(all.calls)), h("td", { class: "num" }, fmt.int(all.input)), h("td", { class: "num" }, fmt.int(all.output)), h("td", { class: "num strong" }, knownCost(all.known, all.unpriced)), h("td", {}), h("td", {}))),
  );
}

export async function render(root) {
  document.title = "Usage · evalhouse";
  const state = readState(DEFAULTS);
  onPopState(() => render(root));
  const change = (values) => {
    Object.assign(state, values);
    writeState(state, DEFAULTS);
    draw();
  };
  const interval = h("select", { id: "usage-interval", "aria-label": "bucket size" }, h("option", { value: "" }, "auto buckets"), INTERVALS.map((i) => h("option", { value: i, selected: state.interval === i }, `per ${i}`)));
  interval.addEventListener("change", () => change({ interval: interval.value }));
  const groupBy = h("select", { id: "usage-group", "aria-label": "group by" }, GROUPS.map(([value, text]) => h("option", { value, selected: state.group_by === value }, `by ${text}`)));
  groupBy.addEventListener("change", () => change({ group_by: groupBy.value }));
  const barSlot = h("div");
  const message = h("div", { class: "inline-message", id: "usage-message" });
  const body = h("div", { id: "usage-body" });
  mount(root, h("div", { class: "page-head" }, h("h1", {}, "Usage"), h("div", { class: "filters" }, timeRange(state, (range) => change(range)), interval, groupBy)), barSlot, message, body);
  let generation = 0;

  async function draw() {
    const mine = ++generation;
    mount(barSlot, filterBar(state, (values) => change(values)));
    mount(message);
    body.classList.add("busy");
    const [since, until] = windowOf(state);
    const every = state.interval || autoInterval(since, until);
    const step = seconds(every) * 1000;
    const common = { since: state.since, until: state.until, interval: every, filter: state.filter, where: state.where };
    let totals;
    let grouped;
    let byModel;
    try {
      [totals, grouped, byModel] = await Promise.all([
        api("/api/usage", { ...common, group_by: "none" }),
        state.group_by === "none" ? null : api("/api/usage", { ...common, group_by: state.group_by }),
        state.group_by === "model" ? null : api("/api/usage", { ...common, group_by: "model" }),
      ]);
    } catch (error) {
      if (mine !== generation) return;
      body.classList.remove("busy");
      showError(message, error.status === 400 ? "The filter was not accepted" : "Could not load the usage", error);
      mount(body);
      return;
    }
    if (mine !== generation) return;
    body.classList.remove("busy");
    const overall = totals.buckets || [];
    const buckets = grouped ? grouped.buckets || [] : overall;
    const models = state.group_by === "model" ? buckets : byModel.buckets || [];
    if (!overall.length) {
      mount(body, notice("info", `No usage in the ${rangeText(state)}`, state.filter || state.where ? "Nothing matches these filters; remove a chip or widen the time range." : "Usage counts the model calls of production traces; widen the time range, or send traces (see the Traces page)."));
      return;
    }
    const start = Math.floor(Math.min(since, ...buckets.map((b) => toDate(b.t).getTime())) / step) * step;
    const end = Math.max(until, ...buckets.map((b) => toDate(b.t).getTime() + step));
    const groups = topGroups(buckets);
    const chart = (title, key, options = {}) => timeChart({ title, start, end, step, series: seriesOf(options.from || buckets, key, options.groups || groups, { other: options.bars }), bars: Boolean(options.bars), yFormat: options.format || fmt.num, width: 600 });
    const unpriced = sum(overall, "unpriced_calls");
    const traces = sum(overall, "traces");
    const errors = sum(overall, "errors");
    const known = sum(overall, "cost_known_usd");
    const percentile = ["p50", "p95", "p99"].includes(state.percentile) ? state.percentile : "p95";
    const latencyPick = h("select", { id: "usage-percentile", "aria-label": "latency percentile" }, ["p50", "p95", "p99"].map((p) => h("option", { value: p, selected: p === percentile }, p)));
    latencyPick.addEventListener("change", () => change({ percentile: latencyPick.value }));
    const single = { top: [null], rest: [] };
    const latency =
      state.group_by === "none"
        ? timeChart({
            title: "Latency of LLM calls",
            start,
            end,
            step,
            width: 600,
            yFormat: fmt.ms,
            series: ["p50", "p95", "p99"].map((p, i) => ({ name: p, values: seriesOf(overall, `latency_ms_${p}`, single, { other: false })[0].values, color: ["#0891b2", "#d97706", "#dc2626"][i] })),
          })
        : chart(`Latency of LLM calls (${percentile})`, `latency_ms_${percentile}`, { format: fmt.ms });
    const scores = scoreSeries(overall);
    const scoreChart = scores.length
      ? h("section", { class: "card", id: "chart-scores" }, timeChart({ title: scores.length === 1 ? `Score ${scores[0].name} (mean of the scored traces)` : "Scores (mean of the scored traces)", start, end, step, width: 600, yFormat: fmt.score, series: scores }))
      : null;
    mount(
      body,
      h(
        "div",
        { class: "stat-strip usage-tiles", id: "usage-tiles" },
        tile("cost", knownCost(known, unpriced), unpriced ? `${fmt.int(unpriced)} call${unpriced === 1 ? "" : "s"} without a known price` : "every call priced", "usage-cost"),
        tile("tokens", fmt.tokens(sum(overall, "total_tokens")), `${fmt.tokens(sum(overall, "input_tokens"))} in · ${fmt.tokens(sum(overall, "output_tokens"))} out`, "usage-tokens"),
        tile("LLM calls", fmt.int(sum(overall, "llm_calls")), null, "usage-calls"),
        tile("traces", fmt.int(traces), null, "usage-traces"),
        tile("error rate", traces ? `${((errors / traces) * 100).toFixed(1)}%` : "–", `${fmt.int(errors)} trace${errors === 1 ? "" : "s"} with an error`, "usage-errors"),
      ),
      h(
        "div",
        { class: "grid-2 usage-charts", id: "usage-charts" },
        h("section", { class: "card", id: "chart-cost" }, chart("Cost (priced calls)", "cost_known_usd", { bars: true, format: fmt.usd }), unpriced ? h("p", { class: "small missing-text" }, `${fmt.int(unpriced)} call${unpriced === 1 ? "" : "s"} had no known price and ${unpriced === 1 ? "is" : "are"} not in these bars: their cost is unknown, not $0.`) : null),
        h("section", { class: "card", id: "chart-tokens" }, chart("Tokens", "total_tokens", { bars: true, format: fmt.tokens })),
        h("section", { class: "card", id: "chart-calls" }, chart("LLM calls", "llm_calls", { bars: true, format: fmt.int })),
        h("section", { class: "card", id: "chart-latency" }, state.group_by === "none" ? null : h("div", { class: "card-tools" }, latencyPick), latency),
        h("section", { class: "card", id: "chart-errors" }, chart("Error rate (traces with an error)", "error_rate", { format: fmt.score })),
        h("section", { class: "card", id: "chart-traces" }, chart("Traces", "traces", { bars: true, format: fmt.int })),
        scoreChart,
      ),
      h("section", { class: "card", id: "cost-by-model" }, h("div", { class: "card-head" }, h("h2", {}, `Cost by model, ${rangeText(state)}`), h("span", { class: "muted small" }, "leaf model calls, as in the traces")), h("div", { class: "table-wrap" }, costTable(models))),
    );
    body.dataset.groups = String(groups.top.length + groups.rest.length);
  }

  await draw();
}
