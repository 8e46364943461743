// The experiments page: runs over time, scores of selected runs, and the list itself.

import { api } from "./api.js";
import { barChart, lineChart, scatterChart } from "./charts.js";
import { addProvenance, costSource, fmt, h, mount, notice, params, scoreChip, setParams } from "./dom.js";

const PAGE = 50;

const METRICS = {
  avg_task_duration_ms: ["mean latency", fmt.ms],
  p95_task_duration_ms: ["p95 latency", fmt.ms],
  total_cost_usd: ["total cost", fmt.usd],
  cost_per_row_usd: ["cost per row", fmt.usd],
  total_tokens: ["tokens", fmt.tokens],
};

function costPerRow(e) {
  return Number.isFinite(e.total_cost_usd) && e.rows ? e.total_cost_usd / e.rows : null;
}

export function emptyState() {
  const host = window.location.hostname || "localhost";
  const snippet = `import evalhouse

evalhouse.init(endpoint="http://${host}:4317")  # OTLP/gRPC of evalhouse serve

result = evalhouse.run_experiment(
    "capitals",
    data=[{"input": "France", "expected": "Paris"},
          {"input": "Japan", "expected": "Tokyo"}],
    task=lambda country: my_app.answer(f"Capital of {country}?"),
    scorers=[lambda output, expected: output == expected],
)
print(result.format())`;
  return h(
    "section",
    { class: "empty" },
    h("h2", {}, "No experiments yet"),
    h("p", {}, "An experiment is a task run over every row of a dataset, each row traced and scored. Run one from Python and it shows up here as soon as its spans arrive:"),
    h("pre", { class: "code" }, snippet),
    h(
      "p",
      {},
      "From any other language, send OpenTelemetry spans to the OTLP endpoint — gRPC on ",
      h("code", {}, `${host}:4317`),
      ", HTTP on ",
      h("code", {}, `http://${host}:4318/v1/traces`),
      " (the ports evalhouse serve printed when it started) — with ",
      h("code", {}, "evalhouse.span.purpose = eval"),
      " and ",
      h("code", {}, "evalhouse.experiment.name"),
      " on each row's root span (see docs/wire-contract.md). Or from the command line: ",
      h("code", {}, "evalhouse eval my_eval.py"),
      ".",
    ),
  );
}

export async function render(root) {
  document.title = "Experiments · evalhouse";
  const state = { name: "", dataset: "", offset: 0, ...params() };
  state.offset = Number(state.offset) || 0;
  const selected = new Map();

  const list = h("div", { class: "card" });
  const trend = h("section", { class: "card" });
  const selection = h("section", { class: "card" });
  const scatter = h("section", { class: "card" });
  // Names and datasets are matched exactly by the API: offer the ones that exist.
  const nameInput = h("select", { "aria-label": "filter by experiment name", id: "filter-name" }, h("option", { value: "" }, "all experiments"));
  const datasetInput = h("select", { "aria-label": "filter by dataset", id: "filter-dataset" }, h("option", { value: "" }, "all datasets"));
  const reload = () => {
    state.name = nameInput.value;
    state.dataset = datasetInput.value;
    state.offset = 0;
    refresh();
  };
  nameInput.addEventListener("change", reload);
  datasetInput.addEventListener("change", reload);
  async function fillFilters() {
    const all = await api("/api/experiments", { limit: 500 });
    const names = new Set((all.experiments || []).map((e) => e.experiment_name).filter(Boolean));
    const datasets = new Set((all.experiments || []).map((e) => e.dataset_name).filter(Boolean));
    if (state.name) names.add(state.name);
    if (state.dataset) datasets.add(state.dataset);
    for (const name of [...names].sort()) nameInput.append(h("option", { value: name, selected: name === state.name }, name));
    for (const name of [...datasets].sort()) datasetInput.append(h("option", { value: name, selected: name === state.dataset }, name));
  }

  mount(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Experiments"), h("div", { class: "filters" }, nameInput, datasetInput)),
    h("div", { id: "experiments-body" }, h("p", { class: "loading" }, "Loading experiments…")),
  );
  const body = root.querySelector("#experiments-body");

  async function load() {
    setParams({ name: state.name, dataset: state.dataset, offset: state.offset || "" });
    const data = await api("/api/experiments", { name: state.name, dataset: state.dataset, limit: PAGE, offset: state.offset });
    const rows = data.experiments || [];
    if (!rows.length && !state.name && !state.dataset && !state.offset) {
      mount(body, emptyState());
      return;
    }
    mount(body, trend, h("div", { class: "grid-2" }, selection, scatter), list);
    renderList(rows, data.total ?? rows.length);
    renderSelection();
    renderScatter(rows);
    await renderTrend(rows);
  }

  function renderList(rows, total) {
    const scoreNames = [...new Set(rows.flatMap((e) => Object.keys(e.scores || {})))].sort();
    const table = h(
      "table",
      { class: "table", id: "experiments-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", { class: "narrow" }, ""), h("th", {}, "Experiment"), h("th", {}, "Dataset"), h("th", {}, "Created"), h("th", { class: "num" }, "Rows"), scoreNames.map((n) => h("th", { class: "num" }, n)), h("th", { class: "num" }, "Mean latency"), h("th", { class: "num" }, "p95"), h("th", { class: "num" }, "Tokens"), h("th", { class: "num" }, "Cost")),
      ),
      h(
        "tbody",
        {},
        rows.map((e) =>
          h(
            "tr",
            { dataset: { id: e.experiment_id } },
            h("td", { class: "narrow" }, h("input", { type: "checkbox", "aria-label": `select ${e.experiment_name}`, checked: selected.has(e.experiment_id), onchange: (event) => { if (event.target.checked) selected.set(e.experiment_id, e); else selected.delete(e.experiment_id); renderSelection(); } })),
            h("td", {}, h("a", { href: `/experiments/${encodeURIComponent(e.experiment_id)}`, class: "strong" }, e.experiment_name || "(unnamed)"), h("div", { class: "muted mono small" }, e.experiment_id.slice(0, 13))),
            h("td", {}, e.dataset_name ? h("a", { href: `?dataset=${encodeURIComponent(e.dataset_name)}` }, e.dataset_name) : h("span", { class: "muted" }, "–")),
            h("td", { title: fmt.time(e.created_at) }, fmt.ago(e.created_at)),
            h("td", { class: "num" }, fmt.int(e.rows), e.errored_rows ? h("span", { class: "chip bad small", title: "rows whose task failed" }, `${e.errored_rows} err`) : null),
            scoreNames.map((n) => h("td", { class: "num" }, scoreChip((e.scores || {})[n]))),
            h("td", { class: "num" }, fmt.ms(e.avg_task_duration_ms)),
            h("td", { class: "num" }, fmt.ms(e.p95_task_duration_ms)),
            h("td", { class: "num" }, fmt.tokens(e.total_tokens)),
            h("td", { class: "num", title: `cost source: ${costSource(e.cost_provenance)}` }, fmt.usd(e.total_cost_usd), h("div", { class: "small muted cost-source" }, costSource(e.cost_provenance))),
          ),
        ),
      ),
    );
    const pages = h(
      "div",
      { class: "pager" },
      h("span", { class: "muted" }, rows.length ? `${state.offset + 1}–${state.offset + rows.length} of ${fmt.int(total)}` : "no experiment matches these filters"),
      h("button", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); } }, "← Newer"),
      h("button", { type: "button", disabled: state.offset + rows.length >= total, onclick: () => { state.offset += PAGE; refresh(); } }, "Older →"),
    );
    mount(list, h("div", { class: "table-wrap" }, table), pages);
  }

  function renderSelection() {
    const chosen = [...selected.values()];
    const head = h("div", { class: "card-head" }, h("h2", {}, "Scores of selected experiments"));
    if (!chosen.length) {
      mount(selection, head, h("p", { class: "muted" }, "Tick experiments in the list to compare their scores here; tick two to open them in diff mode."));
      return;
    }
    const categories = [...new Set(chosen.flatMap((e) => Object.keys(e.scores || {})))].sort();
    const ordered = chosen.sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)));
    const when = fmt.runLabels(ordered.map((e) => e.created_at));
    const compareButton = h(
      "a",
      {
        class: ["button", "primary", chosen.length !== 2 && "disabled"],
        id: "compare-selected",
        href: chosen.length === 2 ? `/compare?baseline=${encodeURIComponent(ordered[0].experiment_id)}&candidate=${encodeURIComponent(ordered[1].experiment_id)}` : "#",
        "aria-disabled": chosen.length !== 2 ? "true" : "false",
        title: chosen.length === 2 ? "older as baseline, newer as candidate" : "select exactly two experiments",
      },
      "Compare two",
    );
    head.append(h("div", { class: "actions" }, compareButton, h("button", { type: "button", onclick: () => { selected.clear(); for (const box of list.querySelectorAll("input[type=checkbox]")) box.checked = false; renderSelection(); } }, "Clear")));
    mount(
      selection,
      head,
      barChart({
        categories,
        series: ordered.map((e, i) => ({ name: `${e.experiment_name} · ${when[i]}`, values: categories.map((c) => (e.scores || {})[c]) })),
        yFormat: fmt.score,
        yMax: 1,
      }),
    );
  }

  function renderScatter(rows) {
    const scoreNames = [...new Set(rows.flatMap((e) => Object.keys(e.scores || {})))].sort();
    const xSelect = h("select", { "aria-label": "metric" }, Object.entries(METRICS).map(([key, [label]]) => h("option", { value: key }, label)));
    const ySelect = h("select", { "aria-label": "score" }, scoreNames.map((n) => h("option", { value: n }, n)));
    const slot = h("div");
    const draw = () => {
      const [label, format] = METRICS[xSelect.value];
      const score = ySelect.value;
      mount(
        slot,
        scatterChart({
          points: rows.map((e) => ({ x: xSelect.value === "cost_per_row_usd" ? costPerRow(e) : e[xSelect.value], y: (e.scores || {})[score], series: e.experiment_name, label: `${e.experiment_name} (${fmt.time(e.created_at)})`, href: `/experiments/${encodeURIComponent(e.experiment_id)}` })),
          xFormat: format,
          yFormat: fmt.score,
          xLabel: label,
          yLabel: score,
        }),
      );
    };
    xSelect.addEventListener("change", draw);
    ySelect.addEventListener("change", draw);
    mount(scatter, h("div", { class: "card-head" }, h("h2", {}, "Metric vs score, per experiment"), h("div", { class: "actions" }, xSelect, ySelect)), scoreNames.length ? slot : h("p", { class: "muted" }, "No scores yet: scatter plots need scored experiments."));
    if (scoreNames.length) draw();
  }

  async function renderTrend(rows) {
    // Most runs first (ties: the most recent first), so the chart opens on a name that has a
    // trend to show rather than on a one-run experiment.
    const byRuns = (values) => {
      const counts = new Map();
      for (const v of values) if (v) counts.set(v, (counts.get(v) || 0) + 1);
      return [...counts.keys()].sort((a, b) => counts.get(b) - counts.get(a));
    };
    const names = byRuns(rows.map((e) => e.experiment_name));
    const datasets = byRuns(rows.map((e) => e.dataset_name));
    const mode = h("select", { "aria-label": "runs grouped by" }, h("option", { value: "name" }, "experiment name"), datasets.length ? h("option", { value: "dataset" }, "dataset") : null);
    const value = h("select", { "aria-label": "runs of" });
    const charts = h("div", { class: "grid-3" });
    const fill = () => {
      const options = mode.value === "name" ? names : datasets;
      const wanted = mode.value === "name" ? state.name : state.dataset;
      mount(value, options.map((o) => h("option", { value: o, selected: o === wanted }, o)));
    };
    if (state.dataset && !state.name) mode.value = "dataset";
    const draw = async () => {
      if (!value.value) {
        mount(charts, h("p", { class: "muted" }, "No named experiments on this page."));
        return;
      }
      mount(charts, h("p", { class: "loading" }, "Loading runs…"));
      const data = await api("/api/experiments/trend", { [mode.value]: value.value });
      const runs = data.runs || [];
      const labels = fmt.runLabels(runs.map((r) => r.created_at));
      const hrefs = runs.map((r) => `/experiments/${encodeURIComponent(r.experiment_id)}`);
      const scoreNames = [...new Set(runs.flatMap((r) => Object.keys(r.scores || {})))].sort();
      const trendNote = Object.entries(data.trend || {}).map(([score, t]) => {
        const way = /improv|up/.test(t.direction) ? "good" : /declin|down|regress/.test(t.direction) ? "bad" : "muted";
        return h("span", { class: `chip ${way}`, title: t.direction }, `${score} ${way === "good" ? "▲" : way === "bad" ? "▼" : "■"} ${fmt.signedScore(t.change)}`);
      });
      mount(
        charts,
        lineChart({ title: "Scores", labels, width: 420, yFormat: fmt.score, yMin: 0, yMax: 1, series: scoreNames.map((n) => ({ name: n, values: runs.map((r) => (r.scores || {})[n]), hrefs })) }),
        lineChart({ title: "Mean latency", labels, width: 420, yFormat: fmt.ms, series: [{ name: "mean task duration", values: runs.map((r) => r.avg_task_duration_ms), hrefs }] }),
        lineChart({ title: `Average cost per row (${costSource(addProvenance(runs))})`, labels, width: 420, yFormat: fmt.usd, series: [{ name: "average cost", values: runs.map((r) => r.avg_cost_usd), hrefs, color: "#d97706" }] }),
      );
      if (trendNote.length) charts.append(h("div", { class: "trend-note" }, h("span", { class: "muted" }, "Trend over these runs: "), trendNote));
    };
    mode.addEventListener("change", () => { fill(); draw().catch(showError); });
    value.addEventListener("change", () => draw().catch(showError));
    const showError = (error) => mount(charts, notice("error", "Could not load the runs", error.message));
    mount(trend, h("div", { class: "card-head" }, h("h2", {}, "Across runs of"), h("div", { class: "actions" }, mode, value)), charts);
    fill();
    await draw().catch(showError);
  }

  async function refresh() {
    try {
      await load();
    } catch (error) {
      mount(body, notice("error", "Could not load the experiments", error.message));
    }
  }

  await Promise.all([refresh(), fillFilters().catch(() => {})]);
}
