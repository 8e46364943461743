// One experiment: summary header, rows table (columns, sort, filters, views), groups,
// trials and a per-row scatter plot. Every state lives in the address, so views are links.

import { api, ApiError, download } from "./api.js";
import { barChart, scatterChart } from "./charts.js";
import { copyButton, debounce, decoded, fmt, h, mount, notice, params, preview, scoreChip, setParams } from "./dom.js";

const PAGE = 100;
const HIDDEN_KEY = "evalhouse.hiddenColumns";
const DEFAULT_HIDDEN = ["row_id", "trial", "metadata", "input_tokens", "output_tokens", "cost_provenance"];
const PROVENANCE = [
  ["provided", "#059669", "cost reported by the spans"],
  ["inferred", "#4f46e5", "priced from the offline price table"],
  ["partly_unknown", "#d97706", "some model calls could not be priced"],
  ["unknown", "#dc2626", "no model call could be priced"],
  ["none", "#cbd5e1", "no model calls"],
];

export function metricFormat(name) {
  if (/_ms$|duration|latency/.test(name)) return fmt.ms;
  if (/usd|cost/.test(name)) return fmt.usd;
  if (/tokens/.test(name)) return fmt.tokens;
  return (v) => fmt.num(v);
}

export function metricLabel(name) {
  return name.replace(/_ms$/, "").replace(/_usd$/, "").replace(/_/g, " ");
}

function hiddenColumns(trials) {
  // With several trials per input the trial number matters: shown unless the user hid it.
  const defaults = DEFAULT_HIDDEN.filter((key) => !(trials && key === "trial"));
  try {
    const stored = localStorage.getItem(HIDDEN_KEY);
    return new Set(stored ? JSON.parse(stored) : defaults);
  } catch {
    return new Set(defaults);
  }
}

function slug(text) {
  return String(text || "experiment").toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "") || "experiment";
}

function cell(value, max = 400) {
  const v = decoded(value);
  const text = preview(v, max);
  return h("div", { class: "clamp", title: text.length > 80 ? preview(v, 2000) : null }, text);
}

function columnsFor(scoreNames, summary) {
  const scores = summary.scores || {};
  return [
    { key: "input", label: "Input", sort: "input", render: (r) => cell(r.input) },
    { key: "trial", label: "Trial", sort: "trial", num: true, render: (r) => fmt.int(r.trial) },
    { key: "output", label: "Output", sort: "output", render: (r) => cell(r.output) },
    { key: "expected", label: "Expected", sort: "expected", render: (r) => cell(r.expected) },
    ...scoreNames.map((name) => ({
      key: `score:${name}`,
      label: name,
      sort: `score:${name}`,
      num: true,
      summary: scores[name] ? `avg ${fmt.score(scores[name].mean)}` : "",
      render: (r) => {
        const failure = (r.score_errors || {})[name];
        if (failure) return h("span", { class: "chip bad", title: failure }, "error");
        return scoreChip((r.scores || {})[name]);
      },
    })),
    { key: "task_duration_ms", label: "Duration", sort: "task_duration_ms", num: true, render: (r) => fmt.ms(r.task_duration_ms) },
    { key: "total_tokens", label: "Tokens", sort: "total_tokens", num: true, render: (r) => fmt.tokens(r.total_tokens) },
    { key: "input_tokens", label: "Input tokens", sort: "input_tokens", num: true, render: (r) => fmt.tokens(r.input_tokens) },
    { key: "output_tokens", label: "Output tokens", sort: "output_tokens", num: true, render: (r) => fmt.tokens(r.output_tokens) },
    { key: "cost_usd", label: "Cost", sort: "cost_usd", num: true, render: (r) => h("span", { title: r.cost_provenance || "" }, fmt.usd(r.cost_usd)) },
    { key: "cost_provenance", label: "Cost source", sort: "cost_provenance", render: (r) => r.cost_provenance || "" },
    { key: "error", label: "Error", sort: "error", render: (r) => (r.error ? h("div", { class: "clamp error-text", title: r.error }, r.error) : "") },
    { key: "row_id", label: "Row id", sort: "row_id", render: (r) => h("span", { class: "mono small" }, r.row_id || "") },
    { key: "metadata", label: "Metadata", render: (r) => cell(r.metadata, 200) },
  ];
}

function scoreCard(summary) {
  const scores = Object.entries(summary.scores || {}).sort(([a], [b]) => a.localeCompare(b));
  const level = `${Math.round((1 - (summary.alpha ?? 0.05)) * 1000) / 10}%`;
  return h(
    "section",
    { class: "card stat-card", id: "scores-card" },
    h("h2", {}, "Scores"),
    scores.length
      ? h(
          "table",
          { class: "mini" },
          h("thead", {}, h("tr", {}, h("th", {}, "score"), h("th", { class: "num" }, "mean"), h("th", { title: "Wilson interval for pass/fail scores; Wilson with the effective sample size for continuous scores (docs/results-api.md)" }, `${level} interval`), h("th", { class: "num" }, "n"), h("th", { class: "num" }, "errors"))),
          h(
            "tbody",
            {},
            scores.map(([name, s]) =>
              h(
                "tr",
                {},
                h("td", { class: "strong" }, name),
                h("td", { class: "num" }, scoreChip(s.mean)),
                h("td", { class: "nowrap interval-cell", title: intervalTitle(s, level) }, intervalBar(s), h("span", { class: "muted small" }, Number.isFinite(s.ci_low) ? ` ${fmt.score(s.ci_low)}–${fmt.score(s.ci_high)}` : " –")),
                h("td", { class: "num" }, fmt.int(s.count)),
                h("td", { class: "num" }, s.errors ? h("span", { class: "chip bad" }, fmt.int(s.errors)) : "0"),
              ),
            ),
          ),
        )
      : h("p", { class: "muted" }, "No scores yet. Scorers run in the experiment script, or on the server (evalhouse score EXPERIMENT --scorer NAME)."),
  );
}

const METHODS = { wilson: "Wilson interval (pass/fail score)", wilson_effective_n: "Wilson interval with the effective sample size (continuous score)" };

function intervalTitle(s, level) {
  if (!Number.isFinite(s.ci_low)) return s.count < 2 ? "one value: no interval" : "no interval";
  return `mean ${fmt.score(s.mean)}, ${level} interval ${fmt.score(s.ci_low)}–${fmt.score(s.ci_high)}: ${METHODS[s.ci_method] || s.ci_method}`;
}

// The server's intervals already stay in [0, 1]: drawn as they are, the numbers the CLI prints.
function intervalBar(s) {
  if (!Number.isFinite(s.ci_low) || !Number.isFinite(s.ci_high)) return h("span", { class: "ci-bar empty" });
  const left = s.ci_low * 100;
  const right = s.ci_high * 100;
  const mean = (s.mean ?? 0) * 100;
  return h("span", { class: "ci-bar" }, h("i", { class: "ci-range", style: { left: `${left}%`, width: `${Math.max(1, right - left)}%` } }), h("i", { class: "ci-mean", style: { left: `${mean}%` } }));
}

// Always shown; other metrics only when some row has them (cache and reasoning tokens...).
const CORE_METRICS = new Set(["task_duration_ms", "total_tokens", "cost_usd"]);

function metricsCard(summary) {
  const metrics = Object.entries(summary.metrics || {}).filter(([name, m]) => CORE_METRICS.has(name) || [m.mean, m.p50, m.p95].some((v) => Number.isFinite(v) && v !== 0));
  return h(
    "section",
    { class: "card stat-card", id: "metrics-card" },
    h("h2", {}, "Metrics"),
    metrics.length
      ? h(
          "table",
          { class: "mini" },
          h("thead", {}, h("tr", {}, h("th", {}, "metric"), h("th", { class: "num" }, "mean"), h("th", { class: "num" }, "p50"), h("th", { class: "num" }, "p95"))),
          h(
            "tbody",
            {},
            metrics.map(([name, m]) => {
              const f = metricFormat(name);
              return h("tr", {}, h("td", { class: "nowrap" }, metricLabel(name)), h("td", { class: "num" }, f(m.mean)), h("td", { class: "num" }, f(m.p50)), h("td", { class: "num" }, f(m.p95)));
            }),
          ),
        )
      : h("p", { class: "muted" }, "No metrics computed yet."),
  );
}

function costCard(summary) {
  const cost = summary.cost || {};
  const provenance = cost.provenance || {};
  const total = PROVENANCE.reduce((sum, [key]) => sum + (provenance[key] || 0), 0);
  return h(
    "section",
    { class: "card stat-card", id: "cost-card" },
    h("h2", {}, "Cost"),
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "task total"),
      h("dd", {}, fmt.usd(cost.total_usd)),
      h("dt", {}, "per row"),
      h("dd", {}, fmt.usd(cost.per_row_usd)),
      h("dt", {}, "LLM judges"),
      h("dd", { title: "scorer model calls; never part of the task cost" }, fmt.usd(cost.judge_usd)),
    ),
    total
      ? h(
          "div",
          { class: "provenance" },
          h(
            "div",
            { class: "stack-bar", role: "img", "aria-label": "cost provenance of rows" },
            PROVENANCE.filter(([key]) => provenance[key]).map(([key, color, meaning]) => h("i", { style: { width: `${(provenance[key] / total) * 100}%`, background: color }, title: `${key}: ${provenance[key]} rows — ${meaning}` })),
          ),
          h(
            "div",
            { class: "legend" },
            PROVENANCE.filter(([key]) => provenance[key]).map(([key, color, meaning]) => h("span", { class: "legend-item", title: meaning }, h("i", { style: { background: color } }), `${key.replace("_", " ")} ${provenance[key]}`)),
          ),
        )
      : null,
    cost.price_data_version ? h("p", { class: "muted small" }, `prices: ${cost.price_data_version}`) : null,
  );
}

function healthCard(summary) {
  const spans = summary.spans || {};
  const errors = summary.errors || {};
  const fact = (label, value, bad, title) => [h("dt", { title }, label), h("dd", { class: bad ? "bad-text" : "" }, fmt.int(value))];
  return h(
    "section",
    { class: "card stat-card", id: "health-card" },
    h("h2", {}, "Errors and completeness"),
    h(
      "dl",
      { class: "facts" },
      fact("rows with task errors", errors.rows, errors.rows > 0),
      fact("scorer errors", errors.scorer_errors, errors.scorer_errors > 0),
      fact("spans received", spans.received, false, "spans stored for this experiment's traces"),
      fact("spans used", spans.used, false, "spans that fed the rows' metrics"),
      fact("orphan spans", spans.orphans, spans.orphans > 0, "spans whose parent never arrived"),
      fact("late spans", spans.late, spans.late > 0, "spans that arrived after their row was computed (the row was recomputed)"),
    ),
  );
}

export async function render(root, id) {
  const state = { view: "rows", q: "", where: "", sort: "", order: "", offset: 0, group: "", x: "", y: "", ...params() };
  state.offset = Number(state.offset) || 0;
  const base = `/api/experiments/${encodeURIComponent(id)}`;
  mount(root, h("p", { class: "loading" }, "Loading experiment…"));

  let summary;
  let firstRows;
  try {
    [summary, firstRows] = await Promise.all([api(base), api(`${base}/rows`, rowParams(state))]);
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      document.title = "Experiment not found · evalhouse";
      mount(root, notice("error", "Experiment not found", error.message, h("p", {}, "Experiments appear once the evaluator has computed their first rows, a few seconds after the spans arrive. ", h("a", { href: "/experiments" }, "See all experiments"), ".")));
      return;
    }
    if (error instanceof ApiError && error.status === 400 && state.where) {
      // A bad filter in a shared link must not hide the experiment: drop it and say why.
      const bad = state.where;
      state.where = "";
      setParams(state);
      [summary, firstRows] = await Promise.all([api(base), api(`${base}/rows`, rowParams(state))]);
      firstRows.filterError = `the filter ${bad} was dropped: ${error.message}`;
    } else {
      throw error;
    }
  }
  const e = summary.experiment || {};
  document.title = `${e.experiment_name || id} · evalhouse`;
  const scoreNames = Object.keys(summary.scores || {}).sort();
  const metadataKeys = new Set(Object.keys(e.metadata && typeof e.metadata === "object" ? e.metadata : {}));
  const hidden = hiddenColumns((firstRows.rows || []).some((row) => row.trial > 0) || e.trials > 1);
  const columns = columnsFor(scoreNames, summary);
  let request = 0;

  const message = h("div", { class: "inline-message" });
  const tableSlot = h("div", { class: "card", id: "rows-card" });
  const tabs = h("nav", { class: "tabs", role: "tablist" });
  const toolbar = h("div", { class: "toolbar" });

  const search = h("input", { type: "search", placeholder: "search input, output, expected, error…", value: state.q, "aria-label": "search rows", id: "row-search" });
  const where = h("input", { type: "text", class: "mono", placeholder: "SQL filter, e.g. task_duration_ms > 500 AND scores['exact'] < 1", value: state.where, "aria-label": "SQL filter", id: "row-where" });
  search.addEventListener("input", debounce(() => { state.q = search.value.trim(); state.offset = 0; refresh(); }, 300));
  where.addEventListener("keydown", (event) => { if (event.key === "Enter") applyWhere(); });
  function applyWhere() {
    state.where = where.value.trim();
    state.offset = 0;
    refresh();
  }

  const exportButton = (format, label) =>
    h(
      "button",
      {
        type: "button",
        class: "button",
        "data-export": format,
        onclick: async () => {
          try {
            await download(`${base}/export?format=${format}`, `${slug(e.experiment_name)}-${id.slice(0, 8)}.${format}`);
          } catch (error) {
            mount(message, notice("error", `Download failed`, error.message));
          }
        },
      },
      label,
    );

  const diffSelect = h("select", { "aria-label": "diff against a baseline", id: "diff-select", onchange: () => { if (diffSelect.value) window.location.href = `/compare?baseline=${encodeURIComponent(diffSelect.value)}&candidate=${encodeURIComponent(id)}`; } }, h("option", { value: "" }, "Diff against…"));

  mount(
    root,
    h("div", { class: "crumbs" }, h("a", { href: "/experiments" }, "Experiments"), " / ", e.experiment_name ? h("a", { href: `/experiments?name=${encodeURIComponent(e.experiment_name)}` }, e.experiment_name) : "experiment"),
    h("div", { class: "page-head" }, h("h1", {}, e.experiment_name || "(unnamed experiment)"), h("div", { class: "actions" }, diffSelect, exportButton("csv", "Download CSV"), exportButton("json", "Download JSON"))),
    h(
      "div",
      { class: "meta-line" },
      h("span", { class: "mono small", title: "experiment id (permalink)" }, id),
      copyButton(window.location.origin + `/experiments/${id}`, "copy link"),
      e.dataset_name ? h("span", {}, "dataset ", h("a", { href: `/?dataset=${encodeURIComponent(e.dataset_name)}`, class: "strong" }, e.dataset_name)) : null,
      h("span", { title: fmt.time(e.created_at) }, `created ${fmt.ago(e.created_at)}`),
      h("span", {}, `${fmt.int(e.rows)} rows`),
      metadataChips(e.metadata),
    ),
    h("div", { class: "grid-4" }, scoreCard(summary), metricsCard(summary), costCard(summary), healthCard(summary)),
    tabs,
    toolbar,
    message,
    tableSlot,
  );
  loadBaselines().catch(() => {});

  function metadataChips(metadata) {
    const value = decoded(metadata);
    if (!value || typeof value !== "object") return null;
    return h("span", { class: "chips" }, Object.entries(value).slice(0, 8).map(([k, v]) => h("span", { class: "chip muted" }, `${k}: ${preview(v, 40)}`)));
  }

  async function loadBaselines() {
    const found = new Map();
    for (const filter of [{ name: e.experiment_name }, { dataset: e.dataset_name }]) {
      const value = Object.values(filter)[0];
      if (!value) continue;
      const data = await api("/api/experiments", { ...filter, limit: 50 });
      for (const other of data.experiments || []) if (other.experiment_id !== id) found.set(other.experiment_id, other);
    }
    for (const other of found.values()) {
      diffSelect.append(h("option", { value: other.experiment_id }, `${other.experiment_name} · ${fmt.shortTime(other.created_at)}`));
    }
    if (!found.size) diffSelect.append(h("option", { value: "", disabled: true }, "no other run of this experiment or dataset"));
  }

  function rowParams(st, extra = {}) {
    const errors = st.view === "errors" ? "only" : st.view === "scorer_errors" ? "scorer_errors" : "";
    return { limit: PAGE, offset: st.offset, sort: st.sort, order: st.sort ? st.order || "desc" : "", q: st.q, where: st.where, errors, ...extra };
  }

  function renderTabs() {
    const errors = summary.errors || {};
    const tab = (view, label) => h("a", { href: "#", role: "tab", class: state.view === view ? "active" : "", "aria-selected": state.view === view ? "true" : "false", "data-view": view, onclick: (event) => { event.preventDefault(); state.view = view; state.offset = 0; refresh(); } }, label);
    mount(
      tabs,
      tab("rows", `Rows (${fmt.int(e.rows)})`),
      tab("errors", `Errors (${fmt.int(errors.rows || 0)})`),
      tab("scorer_errors", `Scorer errors (${fmt.int(errors.scorer_errors || 0)})`),
      tab("groups", "Group by"),
      tab("trials", "Trials"),
      tab("chart", "Chart"),
    );
  }

  function renderToolbar() {
    const rowsView = ["rows", "errors", "scorer_errors"].includes(state.view);
    const columnsMenu = h(
      "details",
      { class: "menu", id: "columns-menu" },
      h("summary", { class: "button" }, "Columns"),
      h(
        "div",
        { class: "menu-body" },
        columns.map((column) =>
          h(
            "label",
            {},
            h("input", {
              type: "checkbox",
              checked: !hidden.has(column.key),
              "data-column": column.key,
              onchange: (event) => {
                if (event.target.checked) hidden.delete(column.key);
                else hidden.add(column.key);
                localStorage.setItem(HIDDEN_KEY, JSON.stringify([...hidden]));
                renderRows(lastRows);
              },
            }),
            column.label,
          ),
        ),
      ),
    );
    const choices = [...[...metadataKeys].sort().map((key) => `metadata.${key}`), "trial"];
    const groupSelect = h("select", { "aria-label": "group by", id: "group-select", onchange: () => { state.group = groupSelect.value; refresh(); } }, h("option", { value: "" }, "choose a field…"), choices.map((key) => h("option", { value: key, selected: state.group === key }, key)));
    if (state.group && !choices.includes(state.group)) groupSelect.append(h("option", { value: state.group, selected: true }, state.group));
    mount(
      toolbar,
      state.view === "groups" ? h("label", { class: "inline" }, "Group by", groupSelect) : null,
      rowsView || state.view === "groups" ? h("div", { class: "where" }, where, h("button", { type: "button", onclick: applyWhere, id: "apply-where" }, "Filter"), h("button", { type: "button", class: "link-button", onclick: () => { where.value = ""; applyWhere(); } }, "clear")) : null,
      rowsView ? search : null,
      rowsView ? columnsMenu : null,
    );
  }

  let lastRows = firstRows;
  let rowKeysSeen = false;
  function renderRows(data) {
    lastRows = data;
    const rows = data.rows || [];
    renderRowsMetadata(data);
    const visible = columns.filter((column) => !hidden.has(column.key));
    const header = (column) => {
      if (!column.sort) return h("th", { class: column.num ? "num" : "" }, column.label);
      const active = state.sort === column.sort;
      const arrow = active ? (state.order === "asc" ? " ▲" : " ▼") : "";
      return h(
        "th",
        { class: [column.num && "num", "sortable", active && "sorted"], "data-sort": column.sort, title: "sort" },
        h(
          "button",
          {
            type: "button",
            class: "th-button",
            onclick: () => {
              if (state.sort === column.sort) state.order = state.order === "asc" ? "desc" : "asc";
              else {
                state.sort = column.sort;
                state.order = column.num ? "desc" : "asc";
              }
              state.offset = 0;
              refresh();
            },
          },
          column.label,
          arrow,
        ),
        column.summary ? h("div", { class: "th-summary" }, column.summary) : null,
      );
    };
    const empty = !rows.length
      ? h("tr", {}, h("td", { colspan: visible.length + 1, class: "empty-cell" }, state.view === "errors" ? "No row of this experiment failed." : state.view === "scorer_errors" ? "No scorer failed on this experiment." : state.q || state.where ? "No row matches the search and filter." : "No rows yet."))
      : null;
    const total = data.total ?? rows.length;
    mount(
      tableSlot,
      data.filterError ? notice("error", "Filter dropped", data.filterError) : null,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table rows-table", id: "rows-table" },
          h("thead", {}, h("tr", {}, h("th", { class: "narrow" }, ""), visible.map(header))),
          h(
            "tbody",
            {},
            empty,
            rows.map((row) =>
              h(
                "tr",
                { class: ["clickable", row.error && "errored"], "data-trace": row.trace_id, title: "open the trace", onclick: (event) => { if (!event.target.closest("a,button,input")) window.location.href = `/traces/${row.trace_id}`; } },
                h("td", { class: "narrow" }, h("a", { href: `/traces/${row.trace_id}`, class: "trace-link", title: `trace ${row.trace_id}` }, "↗")),
                visible.map((column) => h("td", { class: column.num ? "num" : "" }, column.render(row))),
              ),
            ),
          ),
        ),
      ),
      h(
        "div",
        { class: "pager" },
        h("span", { class: "muted", id: "rows-range" }, rows.length ? `rows ${fmt.int(state.offset + 1)}–${fmt.int(state.offset + rows.length)} of ${fmt.int(total)}` : `0 of ${fmt.int(total)}`),
        h("button", { type: "button", disabled: state.offset === 0, onclick: () => { state.offset = Math.max(0, state.offset - PAGE); refresh(); } }, "← Previous"),
        h("button", { type: "button", disabled: state.offset + rows.length >= total, onclick: () => { state.offset += PAGE; refresh(); } }, "Next →"),
      ),
    );
  }

  async function renderGroups() {
    if (!rowKeysSeen) renderRowsMetadata(await api(`${base}/rows`, rowParams({ ...state, view: "rows", offset: 0 }, { limit: 200 })));
    renderToolbar();
    if (!state.group) {
      mount(tableSlot, h("p", { class: "muted" }, "Choose a field to see one summary per value: a field of the rows' metadata (from the dataset), of the experiment's metadata, or the trial."));
      return;
    }
    const data = await api(base, { group_by: state.group, where: state.where });
    const groups = (data.group_by && data.group_by.groups) || data.groups || [];
    const label = state.group.replace(/^metadata\./, "");
    const names = [...new Set(groups.flatMap((g) => Object.keys(g.scores || {})))].sort();
    // The metrics people compare groups on; the token breakdown is in the summary above.
    const metricNames = ["task_duration_ms", "llm_duration_ms", "total_tokens", "cost_usd"].filter((m) => groups.some((g) => g.metrics && m in g.metrics));
    const mean = (v) => (v && typeof v === "object" ? v.mean : v);
    mount(
      tableSlot,
      barChart({ width: 1100, height: 240, title: `Scores by ${label}`, categories: names, series: groups.map((g) => ({ name: g.key === "" || g.key === null ? "(none)" : String(g.key), values: names.map((n) => mean((g.scores || {})[n])) })), yFormat: fmt.score, yMax: 1 }),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table", id: "groups-table" },
          h("thead", {}, h("tr", {}, h("th", {}, label), h("th", { class: "num" }, "rows"), names.map((n) => h("th", { class: "num" }, n)), metricNames.map((m) => h("th", { class: "num" }, metricLabel(m))))),
          h(
            "tbody",
            {},
            groups.map((g) =>
              h(
                "tr",
                {},
                h("td", { class: "strong" }, g.key === "" || g.key === null ? h("span", { class: "muted" }, "(none)") : preview(g.key, 80)),
                h("td", { class: "num" }, fmt.int(g.rows)),
                names.map((n) => h("td", { class: "num" }, scoreChip(mean((g.scores || {})[n])))),
                metricNames.map((m) => h("td", { class: "num" }, metricFormat(m)(mean((g.metrics || {})[m])))),
              ),
            ),
          ),
        ),
      ),
    );
  }

  function renderRowsMetadata(data) {
    rowKeysSeen = true;
    for (const row of data.rows || []) {
      const value = decoded(row.metadata);
      if (value && typeof value === "object" && !Array.isArray(value)) for (const key of Object.keys(value)) metadataKeys.add(key);
    }
  }

  async function renderTrials() {
    const data = await api(`${base}/trials`, { where: state.where, limit: 1000 });
    const inputs = (data.inputs || []).slice().sort((a, b) => Number(b.flaky) - Number(a.flaky));
    const names = [...new Set(inputs.flatMap((i) => Object.keys(i.scores || {})))].sort();
    const multi = inputs.some((i) => i.trials > 1);
    mount(
      tableSlot,
      multi ? null : h("p", { class: "muted" }, "Each input ran once. Run with trials=N to see how stable the scores are across trials; flaky inputs are flagged here."),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table", id: "trials-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "Input"), h("th", { class: "num" }, "Trials"), names.map((n) => h("th", { class: "num" }, n)), h("th", {}, ""))),
          h(
            "tbody",
            {},
            inputs.map((i) =>
              h(
                "tr",
                {},
                h("td", {}, cell(i.input, 200)),
                h("td", { class: "num" }, fmt.int(i.trials)),
                names.map((n) => {
                  const st = (i.scores || {})[n];
                  if (!st) return h("td", { class: "num" }, "–");
                  return h("td", { class: "num", title: `min ${fmt.score(st.min)}, max ${fmt.score(st.max)}` }, scoreChip(st.mean), Number.isFinite(st.stddev) && st.stddev > 0 ? h("span", { class: "muted small" }, ` ±${(st.stddev * 100).toFixed(1)}`) : null);
                }),
                h("td", {}, i.flaky ? h("span", { class: "chip warn", title: "scores disagree across trials" }, "flaky") : null),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function renderChart() {
    const data = await api(`${base}/rows`, { limit: 1000, where: state.where });
    const rows = data.rows || [];
    const metrics = { task_duration_ms: "duration", total_tokens: "tokens", cost_usd: "cost" };
    const xSelect = h("select", { "aria-label": "metric", id: "chart-x" }, Object.entries(metrics).map(([k, label]) => h("option", { value: k, selected: state.x === k }, label)));
    const ySelect = h("select", { "aria-label": "score", id: "chart-y" }, scoreNames.map((n) => h("option", { value: n, selected: state.y === n }, n)));
    const slot = h("div");
    const draw = () => {
      state.x = xSelect.value;
      state.y = ySelect.value;
      setParams(state);
      mount(slot, scatterChart({ width: 1100, height: 300, title: `${metrics[xSelect.value]} vs ${ySelect.value}, one point per row`, points: rows.map((r) => ({ x: r[xSelect.value], y: (r.scores || {})[ySelect.value], label: preview(decoded(r.input), 60), href: `/traces/${r.trace_id}` })), xFormat: metricFormat(xSelect.value), yFormat: fmt.score, xLabel: metrics[xSelect.value], yLabel: ySelect.value, yMin: 0, yMax: 1 }));
    };
    xSelect.addEventListener("change", draw);
    ySelect.addEventListener("change", draw);
    mount(tableSlot, h("div", { class: "card-head" }, h("h2", {}, "Metric vs score"), h("div", { class: "actions" }, xSelect, ySelect)), scoreNames.length ? slot : h("p", { class: "muted" }, "No scores to plot yet."), rows.length < (data.total ?? 0) ? h("p", { class: "muted small" }, `showing the first ${fmt.int(rows.length)} of ${fmt.int(data.total)} rows`) : null);
    if (scoreNames.length) draw();
  }

  let toolbarView = null;
  async function refresh() {
    const mine = ++request;
    setParams(state);
    renderTabs();
    // Re-rendered only when the view changes: the search box must keep focus while typing.
    if (toolbarView !== state.view) renderToolbar();
    toolbarView = state.view;
    mount(message);
    try {
      if (state.view === "groups") await renderGroups();
      else if (state.view === "trials") await renderTrials();
      else if (state.view === "chart") await renderChart();
      else {
        tableSlot.classList.add("busy");
        const data = await api(`${base}/rows`, rowParams(state));
        if (mine !== request) return;
        renderRows(data);
      }
    } catch (error) {
      if (mine !== request) return;
      const title = error instanceof ApiError && error.status === 400 ? "The filter was not accepted" : "Could not load the rows";
      mount(message, notice("error", title, error.message));
    } finally {
      tableSlot.classList.remove("busy");
    }
  }

  renderTabs();
  if (!state.where) renderRowsMetadata(firstRows);
  if (["rows", "errors", "scorer_errors"].includes(state.view)) {
    renderRows(firstRows);
    renderToolbar();
    toolbarView = state.view;
  } else {
    await refresh();
  }
}
