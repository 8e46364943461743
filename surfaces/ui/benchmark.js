// Benchmark view: experiments on one dataset grouped by a metadata field (a model, say),
// score against cost.

import { api } from "./api.js";
import { barChart, scatterChart } from "./charts.js";
import { addProvenance, costSource, fmt, h, mount, notice, params, preview, scoreChip, setParams } from "./dom.js";

const OVERALL = "score";

/** The group's overall score, or one named score (``scores`` holds them by name). */
function scoreOf(group, name) {
  const pick = (v) => (v && typeof v === "object" ? v.mean : v);
  if (name === OVERALL) return typeof group.score === "number" ? group.score : null;
  if (group.scores && name in group.scores) return pick(group.scores[name]);
  if (group.score && typeof group.score === "object") return pick(group.score[name]);
  return null;
}

function describe(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "object") {
    if ("key" in value) return String(value.key);
    return Object.entries(value).map(([k, v]) => `${k}: ${typeof v === "number" ? fmt.num(v, 4) : preview(v, 60)}`).join(", ");
  }
  return String(value);
}

function savings(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return fmt.usd(value);
  if (typeof value === "object" && Number.isFinite(value.per_row_usd)) {
    const parts = [`${fmt.usd(value.per_row_usd)} per row`];
    if (Number.isFinite(value.fraction)) parts[0] += ` (${Math.round(value.fraction * 100)}%)`;
    if (value.best_value && value.best_overall && value.best_value !== value.best_overall) parts.push(`with ${value.best_value} instead of ${value.best_overall}`);
    if (Number.isFinite(value.score_difference)) parts.push(`score ${fmt.signedScore(value.score_difference)}`);
    return parts.join(", ");
  }
  if (typeof value === "object") {
    const parts = [];
    for (const [k, v] of Object.entries(value)) parts.push(`${k.replace(/_/g, " ")}: ${typeof v === "number" ? (/pct|percent|ratio/.test(k) ? `${fmt.num(v * (k.includes("ratio") ? 100 : 1), 1)}%` : /usd|cost/.test(k) ? fmt.usd(v) : fmt.num(v, 3)) : preview(v, 60)}`);
    return parts.join(" · ");
  }
  return String(value);
}

export async function render(root) {
  document.title = "Benchmark · evalhouse";
  const state = { dataset: "", by: "metadata.model", ...params() };
  const datasetSelect = h("select", { "aria-label": "dataset", id: "bench-dataset" }, h("option", { value: "" }, "choose a dataset…"));
  const byInput = h("input", { type: "text", class: "mono", value: state.by, "aria-label": "group by", id: "bench-by", placeholder: "metadata.model" });
  const body = h("div", { id: "benchmark-body" });
  const go = () => {
    state.dataset = datasetSelect.value;
    state.by = byInput.value.trim() || "metadata.model";
    setParams(state);
    draw();
  };
  datasetSelect.addEventListener("change", go);
  byInput.addEventListener("keydown", (event) => { if (event.key === "Enter") go(); });
  mount(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Benchmark"), h("div", { class: "filters" }, h("label", { class: "inline" }, "dataset ", datasetSelect), h("label", { class: "inline" }, "compare by ", byInput), h("button", { type: "button", onclick: go }, "Show"))),
    h("p", { class: "muted" }, "Experiments on one dataset, grouped by a field of their metadata (the model, a prompt version…): which gives the best score, and which the best score per dollar."),
    body,
  );

  try {
    const list = await api("/api/experiments", { limit: 200 });
    const datasets = [...new Set((list.experiments || []).map((e) => e.dataset_name).filter(Boolean))].sort();
    if (state.dataset && !datasets.includes(state.dataset)) datasets.unshift(state.dataset);
    for (const name of datasets) datasetSelect.append(h("option", { value: name, selected: name === state.dataset }, name));
    if (!state.dataset && datasets.length) datasetSelect.value = state.dataset = datasets[0];
    if (!datasets.length) {
      mount(body, notice("info", "No datasets yet", "A benchmark compares experiments run on the same dataset: pass dataset=\"name\" (or a dataset object) to evalhouse.run_experiment, once per model, with the model in metadata={\"model\": ...}."));
      return;
    }
  } catch (error) {
    mount(body, notice("error", "Could not load the experiments", error.message));
    return;
  }
  await draw();

  async function draw() {
    if (!state.dataset) return;
    mount(body, h("p", { class: "loading" }, "Comparing…"));
    let data;
    try {
      data = await api("/api/benchmark", { dataset: state.dataset, by: state.by });
    } catch (error) {
      mount(body, notice("error", "Could not build the benchmark", error.message));
      return;
    }
    const groups = data.groups || [];
    if (!groups.length) {
      mount(body, notice("info", "Nothing to compare", `No experiment on ${state.dataset} has ${state.by} set. Put the field in the experiment's metadata (metadata={"model": "gpt-4o-mini"}).`));
      return;
    }
    const named = [...new Set(groups.flatMap((g) => Object.keys(g.scores || (typeof g.score === "object" && g.score) || {})))].sort();
    const scoreNames = [...(groups.some((g) => typeof g.score === "number") ? [OVERALL] : []), ...named];
    const picker = h("select", { "aria-label": "score", id: "bench-score" }, scoreNames.map((n) => h("option", { value: n }, n === OVERALL ? "mean of all scores" : n)));
    const charts = h("div", { class: "grid-2" });
    const drawCharts = () => {
      const name = picker.value;
      mount(
        charts,
        h("section", { class: "card" }, scatterChart({ title: "Score vs cost per row", points: groups.map((g) => ({ x: g.cost_per_row_usd, y: scoreOf(g, name), series: String(g.key), label: String(g.key) })), xFormat: fmt.usd, yFormat: fmt.score, xLabel: "cost per row", yLabel: name === OVERALL ? "mean score" : name, highlight: (p) => p.label === describe(data.best_value), highlightLabel: "best value: most score per dollar" })),
        h("section", { class: "card" }, barChart({ title: `${name === OVERALL ? "Mean score" : `Mean ${name}`} by ${state.by.replace(/^metadata\./, "")}`, categories: groups.map((g) => String(g.key)), series: [{ name, values: groups.map((g) => scoreOf(g, name)) }], yFormat: fmt.score, yMax: 1 })),
      );
    };
    picker.addEventListener("change", drawCharts);
    mount(
      body,
      h(
        "div",
        { class: "grid-3 callouts" },
        h("section", { class: "card callout", id: "best-overall" }, h("div", { class: "muted small" }, "best overall"), h("div", { class: "big" }, describe(data.best_overall))),
        h("section", { class: "card callout", id: "best-value" }, h("div", { class: "muted small" }, "best value (score per dollar)"), h("div", { class: "big" }, describe(data.best_value))),
        h("section", { class: "card callout", id: "cost-savings" }, h("div", { class: "muted small" }, "cost savings"), h("div", { class: "big small-big" }, savings(data.cost_savings)), h("div", { class: "muted small" }, `costs: ${costSource(addProvenance(groups))}`)),
      ),
      scoreNames.length > 1 ? h("label", { class: "inline" }, "score ", picker) : null,
      charts,
      h(
        "section",
        { class: "card" },
        h(
          "div",
          { class: "table-wrap" },
          h(
            "table",
            { class: "table", id: "benchmark-table" },
            h("thead", {}, h("tr", {}, h("th", {}, state.by.replace(/^metadata\./, "")), h("th", { class: "num" }, "experiments"), scoreNames.map((n) => h("th", { class: "num" }, n === OVERALL ? "mean score" : n)), h("th", { class: "num" }, "total cost"), h("th", { class: "num" }, "cost per row"), h("th", {}, "cost source"), h("th", { class: "num" }, "mean latency"), h("th", { class: "num" }, "tokens"))),
            h(
              "tbody",
              {},
              groups.map((g) =>
                h(
                  "tr",
                  {},
                  h("td", { class: "strong" }, String(g.key)),
                  h("td", { class: "num" }, Array.isArray(g.experiments) ? g.experiments.length : fmt.int(g.experiments)),
                  scoreNames.map((n) => h("td", { class: "num" }, scoreChip(scoreOf(g, n)))),
                  h("td", { class: "num", title: g.cost_missing || null }, fmt.usd(g.cost_total_usd)),
                  h("td", { class: "num" }, fmt.usd(g.cost_per_row_usd)),
                  h("td", { class: "cost-source" }, costSource(g.cost_provenance), g.cost_missing ? h("div", { class: "small missing-text" }, g.cost_missing) : null, g.price_data_version ? h("div", { class: "small muted" }, g.price_data_version) : null),
                  h("td", { class: "num" }, fmt.ms(g.avg_task_duration_ms)),
                  h("td", { class: "num" }, fmt.tokens(g.total_tokens)),
                ),
              ),
            ),
          ),
        ),
      ),
    );
    drawCharts();
  }
}
