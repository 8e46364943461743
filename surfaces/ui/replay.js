// Replay: /replays/new?filter=…&since=…[&where=…] shows the cohort the Traces page's filter
// chooses (a dry run: calls, replayable, estimated cost per model) and a form to replay it on
// other models; /replays/{id} follows the replay's progress, then shows the benchmark across
// the recorded baseline and the models and each model's comparison with the baseline.
// Everything comes from /api/replays (docs/replay.md).

import { api, post } from "./api.js";
import { fmt, h, mount, notice, params } from "./dom.js";

const POLL_MS = 700;

function money(v) {
  return v === null || v === undefined ? "–" : fmt.usd(v);
}

// Metrics of a comparison in their own unit (scores are fractions, shown as percentages).
const METRIC_FORMAT = [[/_ms$/, fmt.ms], [/usd$/, fmt.usd], [/tokens$/, fmt.int]];
function unitOf(name) {
  const found = METRIC_FORMAT.find(([pattern]) => pattern.test(name));
  return found ? found[1] : fmt.num;
}
function signed(format, v) {
  if (v === null || v === undefined) return "–";
  return `${v > 0 ? "+" : v < 0 ? "−" : "±"}${format(Math.abs(v))}`;
}

function modelsOf(text) {
  return text.split(/[\s,]+/).map((m) => m.trim()).filter(Boolean);
}

function cohortCard(cohort) {
  const reasons = Object.entries(cohort.not_replayable || {});
  return h(
    "div",
    { class: "card", "data-testid": "cohort" },
    h("h2", {}, "Cohort"),
    h("p", {}, h("strong", { "data-testid": "cohort-calls" }, fmt.int(cohort.calls)), " recorded model calls, ", h("strong", { "data-testid": "cohort-replayable" }, fmt.int(cohort.replayable)), " replayable."),
    reasons.length ? h("ul", { class: "muted" }, reasons.map(([reason, n]) => h("li", {}, `${fmt.int(n)} not replayable: ${reason}`))) : null,
  );
}

function estimateTable(body) {
  const rows = Object.entries(body.models || {});
  if (!rows.length) return h("p", { class: "muted" }, "Name models to see what replaying would cost.");
  return h(
    "table",
    { class: "table", "data-testid": "estimate" },
    h("thead", {}, h("tr", {}, h("th", {}, "model"), h("th", {}, "input tokens"), h("th", {}, "output tokens"), h("th", {}, "estimated cost"))),
    h("tbody", {}, rows.map(([model, e]) => h("tr", {}, h("td", {}, model), h("td", {}, fmt.int(e.input_tokens)), h("td", {}, fmt.int(e.output_tokens)), h("td", {}, e.priced ? money(e.cost_usd) : "no price")))),
    h("tfoot", {}, h("tr", {}, h("td", {}, "recorded"), h("td", {}, fmt.int(body.recorded.input_tokens)), h("td", {}, fmt.int(body.recorded.output_tokens)), h("td", {}, money(body.recorded.cost_usd)))),
  );
}

async function renderNew(root) {
  document.title = "New replay · evalhouse";
  const given = params();
  const cohortSlot = h("div", {}, h("p", { class: "loading" }, "Counting the cohort…"));
  const estimateSlot = h("div", {});
  const errorSlot = h("div", {});
  const field = (name, label, value, attrs = {}) => h("label", { class: "field" }, h("span", {}, label), h("input", { name, value: value || "", ...attrs }));
  const form = h(
    "form",
    { class: "card replay-form", "data-testid": "replay-form" },
    h("h2", {}, "Replay on other models"),
    field("filter", "Filter", given.filter, { placeholder: "tag:support model:gpt-4o" }),
    field("where", "Where (SQL over otel_traces)", given.where),
    field("since", "Since", given.since || "7d"),
    field("limit", "Calls at most", given.limit || "100", { type: "number", min: "1" }),
    field("models", "Models (PROVIDER:MODEL, comma separated)", given.models, { placeholder: "openai:gpt-4o-mini, openai:gpt-4.1-nano", required: true }),
    field("base_url", "Base URL (OpenAI-compatible, optional)", given.base_url),
    field("scorers", "Extra scorers (comma separated, optional)", given.scorers),
    field("budget_usd", "Budget in USD (optional)", given.budget_usd, { type: "number", step: "any", min: "0" }),
    field("name", "Name (optional)", given.name),
    h("div", { class: "actions" }, h("button", { type: "button", class: "secondary", "data-testid": "estimate-button", onclick: () => refresh() }, "Estimate"), h("button", { type: "submit", class: "primary" }, "Start replay")),
  );
  const body = () => {
    const data = Object.fromEntries(new FormData(form));
    const out = { filter: data.filter, where: data.where, since: data.since, limit: Number(data.limit) || 100, models: modelsOf(data.models || ""), base_url: data.base_url, scorers: modelsOf(data.scorers || ""), name: data.name };
    if (data.budget_usd) out.budget_usd = Number(data.budget_usd);
    for (const key of Object.keys(out)) if (out[key] === "" || (Array.isArray(out[key]) && !out[key].length)) delete out[key];
    return out;
  };
  async function refresh() {
    mount(errorSlot);
    try {
      const estimate = await post("/api/replays/estimate", body());
      mount(cohortSlot, cohortCard(estimate.cohort));
      mount(estimateSlot, estimateTable(estimate));
    } catch (error) {
      mount(cohortSlot);
      mount(errorSlot, notice("error", "Cannot count the cohort", error.message));
    }
  }
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    mount(errorSlot);
    try {
      const started = await post("/api/replays", body());
      window.location.assign(`/replays/${encodeURIComponent(started.id)}`);
    } catch (error) {
      mount(errorSlot, notice("error", "Replay not started", error.message));
    }
  });
  mount(root, h("h1", {}, "New replay"), h("p", { class: "muted" }, "Recorded calls are sent again, with their system instructions, tools and parameters, to the models you name. The original calls are the baseline."), errorSlot, cohortSlot, estimateSlot, form);
  await refresh();
}

function progressCard(progress) {
  return h(
    "div",
    { class: "card", "data-testid": "progress" },
    h("h2", {}, `Replay ${progress.name}`),
    h("p", {}, "State: ", h("strong", { "data-testid": "replay-state" }, progress.state), ` · spent ${money(progress.spent_usd)}`, progress.budget_usd ? ` of ${money(progress.budget_usd)}` : ""),
    h("ul", {}, Object.entries(progress.models || {}).map(([model, c]) => h("li", {}, `${model}: ${fmt.int(c.done)} / ${fmt.int(c.total)} calls`, c.errors ? ` (${fmt.int(c.errors)} failed)` : ""))),
    progress.budget_stop ? notice("info", "Budget reached", progress.budget_stop) : null,
    progress.error ? notice("error", "Replay failed", progress.error) : null,
  );
}

function benchmarkTable(bench) {
  return h(
    "div",
    { class: "card" },
    h("h2", {}, "Benchmark"),
    h(
      "table",
      { class: "table", "data-testid": "benchmark" },
      h("thead", {}, h("tr", {}, h("th", {}, "model"), h("th", {}, "rows"), h("th", {}, "score"), h("th", {}, "cost / call"), h("th", {}, "latency"), h("th", {}, "tokens"))),
      h("tbody", {}, bench.groups.map((g) => h("tr", {}, h("td", {}, String(g.key)), h("td", {}, fmt.int(g.rows)), h("td", {}, fmt.score(g.score)), h("td", {}, money(g.cost_per_row_usd)), h("td", {}, fmt.ms(g.avg_task_duration_ms)), h("td", {}, fmt.int(g.total_tokens))))),
    ),
    h("p", {}, `Best overall: ${bench.best_overall ?? "–"} · best value: ${bench.best_value ?? "–"}`),
    h(
      "ul",
      { "data-testid": "savings" },
      Object.entries(bench.savings_vs_recorded_per_1000_calls_usd || {}).map(([model, saved]) =>
        h("li", {}, saved === null ? `${model}: cost unknown (no price for a call), so no saving is claimed` : saved >= 0 ? `${model} saves ${money(saved)} per 1,000 calls against the recorded calls` : `${model} costs ${money(-saved)} more per 1,000 calls than the recorded calls`),
      ),
    ),
  );
}

function comparisonCard(model, cmp) {
  const scores = Object.entries(cmp.scores || {});
  return h(
    "div",
    { class: "card", "data-testid": "comparison" },
    h("h2", {}, `${model} vs recorded`),
    h("p", { class: "muted" }, `${fmt.int(cmp.matched_rows)} matched calls · `, h("a", { href: `/compare?baseline=${encodeURIComponent(cmp.baseline.experiment_id)}&candidate=${encodeURIComponent(cmp.candidate.experiment_id)}` }, "open the comparison")),
    h(
      "table",
      { class: "table" },
      h("thead", {}, h("tr", {}, h("th", {}, "score"), h("th", {}, "recorded"), h("th", {}, model), h("th", {}, "better / worse"), h("th", {}, "95% CI"), h("th", {}, "p"), h("th", {}, "verdict"))),
      h(
        "tbody",
        {},
        scores.map(([name, s]) => h("tr", {}, h("td", {}, name), h("td", {}, fmt.score(s.baseline_mean)), h("td", {}, fmt.score(s.candidate_mean)), h("td", {}, `+${s.improvements} / −${s.regressions}`), h("td", {}, `${fmt.signedScore(s.ci_low)} … ${fmt.signedScore(s.ci_high)}`), h("td", {}, s.p_value === null ? "–" : Number(s.p_value).toPrecision(2)), h("td", { "data-testid": "verdict" }, s.verdict))),
        Object.entries(cmp.metrics || {}).map(([name, m]) => {
          const format = unitOf(name);
          if (m.missing) return h("tr", { class: "muted", "data-metric": name }, h("td", {}, name), h("td", { colspan: 6 }, m.missing));
          return h("tr", { "data-metric": name }, h("td", {}, name), h("td", {}, m.baseline_mean === null ? "–" : format(m.baseline_mean)), h("td", {}, m.candidate_mean === null ? "–" : format(m.candidate_mean)), h("td", { title: "rows lower / higher than recorded" }, `${m.improvements} lower / ${m.regressions} higher`), h("td", {}, `${signed(format, m.ci_low)} … ${signed(format, m.ci_high)}`), h("td", {}, m.p_value === null ? "–" : Number(m.p_value).toPrecision(2)), h("td", { "data-testid": "metric-verdict" }, m.verdict));
        }),
      ),
    ),
  );
}

async function renderOne(root, id) {
  document.title = "Replay · evalhouse";
  const show = (progress) => {
    const parts = [h("h1", {}, "Replay"), progressCard(progress)];
    if (progress.result) {
      const result = progress.result;
      parts.push(cohortCard(result.cohort), benchmarkTable(result.benchmark));
      for (const [model, cmp] of Object.entries(result.compare)) parts.push(comparisonCard(model, cmp));
    }
    mount(root, ...parts);
    return progress.state === "done" || progress.state === "failed";
  };
  // The first state is the page; later states replace it until the replay ends.
  if (show(await api(`/api/replays/${encodeURIComponent(id)}`))) return;
  const poll = async () => {
    try {
      if (!show(await api(`/api/replays/${encodeURIComponent(id)}`))) setTimeout(poll, POLL_MS);
    } catch (error) {
      mount(root, notice("error", "Replay progress unavailable", error.message));
    }
  };
  setTimeout(poll, POLL_MS);
}

export async function render(root, id) {
  if (!id || id === "new") return renderNew(root);
  return renderOne(root, id);
}
