// Diff mode: a candidate experiment against a baseline, matched row by row.

import { api, ApiError, saveBlob } from "./api.js";
import { costSource, decoded, fmt, h, mount, notice, params, preview, pretty, scoreChip, setParams } from "./dom.js";
import { metricFormat, metricLabel } from "./experiment.js";

const SHOW = 100;

function experimentOf(value) {
  if (value && typeof value === "object") return value;
  return { experiment_id: value, experiment_name: "" };
}

export function verdictClass(verdict) {
  const text = String(verdict || "").toLowerCase();
  if (/improv|better|win/.test(text)) return "good";
  if (/regress|worse|loss/.test(text)) return "bad";
  return "muted";
}

/** Tokens of `a` and `b` marked as kept or changed (LCS on words; long texts: all changed). */
export function wordDiff(a, b) {
  const left = a.split(/(\s+)/);
  const right = b.split(/(\s+)/);
  if (left.length * right.length > 250000) return { left: [[a, true]], right: [[b, true]] };
  const n = left.length;
  const m = right.length;
  const table = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) for (let j = m - 1; j >= 0; j -= 1) table[i][j] = left[i] === right[j] ? table[i + 1][j + 1] + 1 : Math.max(table[i + 1][j], table[i][j + 1]);
  const outLeft = [];
  const outRight = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (left[i] === right[j]) {
      outLeft.push([left[i], false]);
      outRight.push([right[j], false]);
      i += 1;
      j += 1;
    } else if (table[i + 1][j] >= table[i][j + 1]) outLeft.push([left[i++], true]);
    else outRight.push([right[j++], true]);
  }
  while (i < n) outLeft.push([left[i++], true]);
  while (j < m) outRight.push([right[j++], true]);
  return { left: outLeft, right: outRight };
}

function marked(parts, cls) {
  return parts.map(([text, changed]) => (changed && text.trim() ? h("mark", { class: cls }, text) : text));
}

function text(value) {
  const v = decoded(value);
  return typeof v === "string" ? v : pretty(v);
}

function toCsv(rows) {
  const quote = (v) => {
    const t = v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v);
    return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  };
  const names = [...new Set(rows.flatMap((r) => [...Object.keys((r.baseline || {}).scores || {}), ...Object.keys((r.candidate || {}).scores || {})]))].sort();
  const head = ["input", "key", "baseline_trace_id", "candidate_trace_id", "baseline_output", "candidate_output", ...names.flatMap((n) => [`baseline_${n}`, `candidate_${n}`, `diff_${n}`])];
  const lines = [head.map(quote).join(",")];
  for (const r of rows) {
    const b = r.baseline || {};
    const c = r.candidate || {};
    lines.push([keyOf(r), r.key, b.trace_id, c.trace_id, text(b.output), text(c.output), ...names.flatMap((n) => [(b.scores || {})[n], (c.scores || {})[n], (r.diffs || {})[n]])].map(quote).join(","));
  }
  return `${lines.join("\r\n")}\r\n`;
}

/** What identifies a matched row to a reader: its input (the default key is the input's
 * hash), else the key expression's value. */
export function keyOf(row) {
  const b = row.baseline || {};
  const c = row.candidate || {};
  const input = b.input ?? c.input;
  return input !== undefined && input !== null ? decoded(input) : decoded(row.key);
}

function rowKind(row) {
  const diffs = Object.values(row.diffs || {}).filter(Number.isFinite);
  if (diffs.some((d) => d < 0)) return "regression";
  if (diffs.some((d) => d > 0)) return "improvement";
  return "same";
}

function outputChanged(row) {
  return text((row.baseline || {}).output) !== text((row.candidate || {}).output);
}

function statTable(id, entries, kind, alpha, sources) {
  const isScore = kind === "score";
  const level = `${Math.round((1 - (alpha ?? 0.05)) * 1000) / 10}%`;
  return h(
    "table",
    { class: "table", id },
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        h("th", {}, isScore ? "Score" : "Metric"),
        h("th", { class: "num" }, "Baseline"),
        h("th", { class: "num" }, "Candidate"),
        h("th", { class: "num" }, "Change"),
        h("th", { class: "num" }, `${level} interval`),
        h("th", { class: "num" }, "p"),
        h("th", { class: "num", title: "rows that got better / worse / stayed the same" }, "▲ / ▼ / ="),
        isScore ? null : h("th", { class: "num", title: "the smallest change of the mean that counts (practical threshold): a smaller one is “unchanged”, however small p is" }, "Min change"),
        h("th", {}, "Verdict"),
      ),
    ),
    h(
      "tbody",
      {},
      entries.map(([name, st]) => {
        const f = isScore ? fmt.score : metricFormat(name);
        const signed = (v) => (isScore ? fmt.signedScore(v) : `${v > 0 ? "+" : v < 0 ? "−" : "±"}${f(Math.abs(v))}`);
        const interval = Number.isFinite(st.ci_low) && Number.isFinite(st.ci_high) ? `${signed(st.ci_low)} … ${signed(st.ci_high)}` : "–";
        const label = isScore ? name : metricLabel(name);
        const source = name === "cost_usd" && sources ? h("div", { class: "small muted cost-source" }, `baseline ${sources.baseline} · candidate ${sources.candidate}`) : null;
        if (st.missing && !(st.matched > 0)) {
          return h("tr", { "data-score": name, class: "missing-row" }, h("td", { class: "strong" }, label, source), h("td", { colspan: isScore ? 7 : 8, class: "missing-text" }, st.missing), h("td", {}, h("span", { class: "chip verdict muted", title: st.missing }, "not compared")));
        }
        return h(
          "tr",
          { "data-score": name },
          h("td", { class: "strong" }, label, source, st.missing ? h("div", { class: "small missing-text" }, st.missing) : null),
          h("td", { class: "num" }, isScore ? scoreChip(st.baseline_mean) : f(st.baseline_mean)),
          h("td", { class: "num" }, isScore ? scoreChip(st.candidate_mean) : f(st.candidate_mean)),
          h("td", { class: "num strong" }, Number.isFinite(st.diff) ? signed(st.diff) : "–"),
          h("td", { class: "num muted" }, interval),
          h("td", { class: "num muted" }, fmt.pValue(st.p_value)),
          h("td", { class: "num" }, h("span", { class: "good-text" }, fmt.int(st.improvements)), " / ", h("span", { class: "bad-text" }, fmt.int(st.regressions)), " / ", h("span", { class: "muted" }, fmt.int(st.unchanged))),
          isScore ? null : h("td", { class: "num muted" }, Number.isFinite(st.min_change) ? (/tokens/.test(name) ? fmt.num(st.min_change, 2) : f(st.min_change)) : "–"),
          h("td", {}, h("span", { class: `chip verdict ${verdictClass(st.verdict)}`, title: verdictTitle(st) }, st.verdict || "–")),
        );
      }),
    ),
  );
}

function verdictTitle(st) {
  if (st.verdict === "unchanged") return `the change is below the practical threshold (${st.min_change}), however small p is`;
  if (st.verdict === "insufficient data") return "fewer than two matched rows";
  return `paired t-test, p = ${fmt.pValue(st.p_value)}`;
}

export async function render(root) {
  const state = { baseline: "", candidate: "", key: "", show: "all", ...params() };
  document.title = "Compare · evalhouse";
  if (!state.baseline || !state.candidate) {
    mount(root, h("h1", {}, "Compare experiments"), notice("info", "Pick two experiments", "Tick two experiments in the list and press “Compare two”, or open an experiment and choose “Diff against…”. The address takes ?baseline=ID&candidate=ID.", h("p", {}, h("a", { href: "/experiments" }, "Go to the experiments"))));
    return;
  }
  mount(root, h("p", { class: "loading" }, "Comparing…"));
  const PAGE_ROWS = 500;
  const fetchPage = (offset) => api("/api/compare", { baseline: state.baseline, candidate: state.candidate, key: state.key, limit: PAGE_ROWS, offset });
  let data;
  try {
    data = await fetchPage(0);
  } catch (error) {
    mount(root, h("h1", {}, "Compare experiments"), notice("error", error instanceof ApiError && error.status === 404 ? "Experiment not found" : "Could not compare", error.message, h("p", {}, h("a", { href: "/experiments" }, "Back to the experiments"))));
    return;
  }
  const base = experimentOf(data.baseline);
  const cand = experimentOf(data.candidate);
  document.title = `${cand.experiment_name || "candidate"} vs ${base.experiment_name || "baseline"} · evalhouse`;
  const rows = data.rows || [];
  const total = data.rows_total ?? rows.length;
  const counts = { all: 0, regression: 0, improvement: 0, changed: 0 };
  function count(more) {
    for (const row of more) {
      const kind = rowKind(row);
      counts.all += 1;
      if (kind !== "same") counts[kind] += 1;
      if (outputChanged(row)) counts.changed += 1;
    }
  }
  count(rows);
  // Pages come largest regression first: the rest is loaded on demand (and for downloads).
  async function loadMore() {
    const more = (await fetchPage(rows.length)).rows || [];
    rows.push(...more);
    count(more);
    return more.length;
  }
  async function loadAll() {
    while (rows.length < total && (await loadMore())) {
      // keep going until every matched row is here
    }
  }
  // Columns of the row grid: the scores compared (a score one side lacks is listed above).
  const scoreNames = Object.keys(data.scores || {}).filter((n) => !(data.scores[n].missing && !(data.scores[n].matched > 0))).sort();
  // Metrics neither run has (cache or reasoning tokens, say) would only be rows of zeros.
  // A metric that could not be compared (an unknown cost) stays, saying why.
  const metrics = Object.entries(data.metrics || {}).filter(([, st]) => st.missing || [st.baseline_mean, st.candidate_mean].some((v) => Number.isFinite(v) && v !== 0));
  let shown = SHOW;

  const keyInput = h("input", { type: "text", class: "mono key-input", value: state.key, placeholder: "input (default), or row_id, or an SQL expression", "aria-label": "comparison key", id: "compare-key" });
  const grid = h("div", { class: "card", id: "compare-rows" });
  const filters = h("nav", { class: "tabs" });
  const filename = `compare-${String(base.experiment_id).slice(0, 8)}-${String(cand.experiment_id).slice(0, 8)}`;

  const side = (label, e, why) =>
    h("div", { class: "side" }, h("div", { class: "muted small", title: why || null }, label, why ? ` — ${why}` : ""), h("a", { href: `/experiments/${encodeURIComponent(e.experiment_id)}`, class: "strong" }, e.experiment_name || e.experiment_id), h("div", { class: "muted small mono" }, String(e.experiment_id).slice(0, 13), e.created_at ? ` · ${fmt.time(e.created_at)}` : ""));

  mount(
    root,
    h("div", { class: "crumbs" }, h("a", { href: "/experiments" }, "Experiments"), " / compare"),
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Diff mode"),
      h(
        "div",
        { class: "actions" },
        h("a", { class: "button", href: `/compare?baseline=${encodeURIComponent(cand.experiment_id)}&candidate=${encodeURIComponent(base.experiment_id)}${state.key ? `&key=${encodeURIComponent(state.key)}` : ""}`, title: "swap baseline and candidate" }, "⇄ Swap"),
        h("button", { type: "button", class: "button", "data-export": "csv", onclick: async () => { await loadAll(); saveBlob(new Blob([toCsv(rows)], { type: "text/csv" }), `${filename}.csv`); } }, "Download CSV"),
        h("button", { type: "button", class: "button", "data-export": "json", onclick: async () => { await loadAll(); saveBlob(new Blob([JSON.stringify({ ...data, rows }, null, 2)], { type: "application/json" }), `${filename}.json`); } }, "Download JSON"),
      ),
    ),
    h("div", { class: "versus" }, side("baseline", base, data.baseline_reason), h("span", { class: "arrow" }, "→"), side("candidate", cand)),
    h(
      "div",
      { class: "meta-line" },
      h("span", { id: "matched" }, h("strong", {}, fmt.int(data.matched_rows)), " rows matched"),
      data.unmatched ? h("span", { class: "muted" }, `${fmt.int(data.unmatched.baseline)} only in baseline, ${fmt.int(data.unmatched.candidate)} only in candidate`) : null,
      h("label", { class: "inline" }, "matched by ", keyInput, h("button", { type: "button", onclick: () => { setParams({ ...state, key: keyInput.value.trim() }); window.location.reload(); } }, "Apply")),
    ),
    data.matched_rows === 0 ? notice("info", "No rows matched", "The two experiments share no row with the same comparison key. Rows are matched by their input unless a key (a metadata field, say) is given above.") : null,
    h("section", { class: "card" }, h("h2", {}, "Scores"), Object.keys(data.scores || {}).length ? h("div", { class: "table-wrap" }, statTable("compare-scores", Object.entries(data.scores).sort(([a], [b]) => a.localeCompare(b)), "score", data.alpha)) : h("p", { class: "muted" }, "Neither experiment has scores.")),
    metrics.length ? h("section", { class: "card" }, h("h2", {}, "Metrics"), h("div", { class: "table-wrap" }, statTable("compare-metrics", metrics, "metric", data.alpha, { baseline: costSource(base.cost_provenance), candidate: costSource(cand.cost_provenance) }))) : null,
    filters,
    grid,
  );

  // Several trials of one input: the output shown is one of them, the scores their mean.
  function trialsNote(side) {
    const most = Math.max(0, ...rows.map((row) => (row[side] || {}).trials || 0));
    return most > 1 ? h("div", { class: "th-summary" }, `one of ${most} trials; scores: their mean`) : null;
  }

  function renderFilters() {
    const tab = (key, label) => h("a", { href: "#", class: state.show === key ? "active" : "", "data-show": key, onclick: (event) => { event.preventDefault(); state.show = key; shown = SHOW; setParams(state); renderFilters(); renderGrid(); } }, label);
    mount(filters, tab("all", `All rows (${counts.all})`), tab("regression", `Regressions (${counts.regression})`), tab("improvement", `Improvements (${counts.improvement})`), tab("changed", `Output changed (${counts.changed})`));
  }

  function renderGrid() {
    const chosen = rows.filter((row) => state.show === "all" || (state.show === "changed" ? outputChanged(row) : rowKind(row) === state.show));
    const body = chosen.slice(0, shown).map((row) => {
      const b = row.baseline || {};
      const c = row.candidate || {};
      const bt = text(b.output);
      const ct = text(c.output);
      const changed = bt !== ct;
      const diff = changed ? wordDiff(bt, ct) : null;
      return h(
        "tr",
        { class: `diff-${rowKind(row)}` },
        h("td", {}, h("div", { class: "clamp", title: preview(keyOf(row), 2000) }, preview(keyOf(row), 300))),
        h("td", { class: "output" }, h("div", { class: "pre" }, changed ? marked(diff.left, "del") : bt), b.error ? h("div", { class: "error-text" }, b.error) : null, b.trace_id ? h("a", { href: `/traces/${b.trace_id}`, class: "small" }, "trace ↗") : null),
        h("td", { class: ["output", changed && "changed"] }, h("div", { class: "pre" }, changed ? marked(diff.right, "ins") : ct), c.error ? h("div", { class: "error-text" }, c.error) : null, c.trace_id ? h("a", { href: `/traces/${c.trace_id}`, class: "small" }, "trace ↗") : null),
        scoreNames.map((n) => {
          const d = (row.diffs || {})[n];
          const cls = Number.isFinite(d) ? (d < 0 ? "bad" : d > 0 ? "good" : "") : "";
          return h("td", { class: ["num", "score-diff", cls && `cell-${cls}`] }, scoreChip((b.scores || {})[n]), h("span", { class: "muted" }, " → "), scoreChip((c.scores || {})[n]), Number.isFinite(d) && d !== 0 ? h("div", { class: `small ${cls}-text` }, fmt.signedScore(d)) : null);
        }),
      );
    });
    mount(
      grid,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "table diff-table", id: "diff-table" },
          h("thead", {}, h("tr", {}, h("th", { class: "key-col" }, !data.key || data.key === "input" ? "input" : `input (matched by ${data.key})`), h("th", {}, "Baseline output", trialsNote("baseline")), h("th", {}, "Candidate output", trialsNote("candidate")), scoreNames.map((n) => h("th", { class: "num" }, n)))),
          h("tbody", {}, body.length ? body : h("tr", {}, h("td", { colspan: 3 + scoreNames.length, class: "empty-cell" }, "No row in this view."))),
        ),
      ),
      h(
        "div",
        { class: "pager" },
        h("span", { class: "muted" }, `${Math.min(shown, chosen.length)} of ${chosen.length} rows shown${rows.length < total ? ` (${rows.length} of ${total} loaded)` : ""}, largest regression first`),
        chosen.length > shown || rows.length < total
          ? h("button", { type: "button", id: "show-more", onclick: async () => { if (chosen.length <= shown + SHOW && rows.length < total) await loadMore(); shown += SHOW; renderFilters(); renderGrid(); } }, "Show more")
          : null,
      ),
    );
  }

  renderFilters();
  renderGrid();
}
