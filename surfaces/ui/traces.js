// The production traces: a time range, filters (chips and SQL), text search, sortable columns
// and pages that load as you scroll. Everything the list shows is in the address.

import { addToDataset } from "./add-dataset.js";
import { api } from "./api.js";
import { fmt, h, mount, notice } from "./dom.js";
import { clock, costCell, filterBar, infinitePages, onPopState, readState, scoreChips, showError, sortHeader, term, timeRange, withTerm, writeState } from "./explore.js";

const PAGE = 50;
const DEFAULTS = { since: "24h", until: "", filter: "", where: "", q: "", kind: "production", sort: "start_time", order: "desc" };
// Sorts the API does (over the whole window); the other columns sort the loaded rows.
const SERVER_SORTS = new Set(["start_time", "duration_ms", "total_tokens", "cost_usd", "error_count"]);
const TEXT_SORTS = new Set(["root_name", "service_name", "session_id", "user_id", "models"]);

/** Rows in `order` by `key`; blanks (no session, no score...) last either way. */
function byKey(key, order) {
  const sign = order === "asc" ? 1 : -1;
  const value = (row) => {
    if (key === "models") return (row.models || []).join(", ");
    if (key === "scores") {
      const values = Object.values(row.scores || {});
      return values.length ? values.reduce((a, b) => a + b, 0) / values.length : null;
    }
    return row[key];
  };
  return (a, b) => {
    const x = value(a);
    const y = value(b);
    const empty = (v) => v === null || v === undefined || v === "";
    if (empty(x) || empty(y)) return empty(x) - empty(y);
    return sign * (typeof x === "number" ? x - y : String(x).localeCompare(String(y)));
  };
}

export function emptyTraces() {
  const host = window.location.hostname || "localhost";
  return h(
    "section",
    { class: "empty" },
    h("h2", {}, "No production traces in this window"),
    h("p", {}, "Traces of a live app show up here a few seconds after its last span arrives. Instrument the app with one line and use it as usual:"),
    h("pre", { class: "code" }, `import evalhouse\n\nevalhouse.init(endpoint="http://${host}:4317", service_name="support-bot")\n# OpenAI, Anthropic, LangChain... calls are traced from here on`),
    h("p", {}, "Any OpenTelemetry SDK works too (OTLP gRPC on port 4317, HTTP on 4318). Put ", h("code", {}, "session.id"), " and ", h("code", {}, "user.id"), " on a span to group traces into sessions and users. Widen the time range if the app sent traces earlier."),
  );
}

export async function render(root) {
  document.title = "Traces · evalhouse";
  const state = readState(DEFAULTS);
  let pages = null;
  const change = (values, options) => {
    Object.assign(state, values);
    writeState(state, DEFAULTS, options);
    draw();
  };
  onPopState(() => {
    if (pages) pages.stop();
    render(root);
  });

  const search = h("input", { type: "search", id: "trace-search", value: state.q, placeholder: "search inputs and outputs", "aria-label": "search inputs and outputs" });
  let typing = null;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => change({ q: search.value.trim() }), 350);
  });
  const kind = h(
    "select",
    { id: "trace-kind", "aria-label": "kind of traces" },
    [["production", "production"], ["experiment", "experiment rows"], ["all", "all traces"]].map(([value, label]) => h("option", { value, selected: state.kind === value }, label)),
  );
  kind.addEventListener("change", () => change({ kind: kind.value }));
  const barSlot = h("div");
  const message = h("div", { class: "inline-message", id: "traces-message" });
  const body = h("div", { id: "traces-body" });
  mount(
    root,
    h("div", { class: "page-head" }, h("h1", {}, "Traces"), h("div", { class: "filters" }, timeRange(state, (range) => change(range)), kind, search)),
    barSlot,
    message,
    body,
  );

  // Traces ticked in the list: "Add to dataset" takes them (the page keeps them across pages).
  const selected = new Set();
  const adder = addToDataset(() => [...selected], { id: "traces-dataset", label: () => (selected.size ? `Add ${fmt.int(selected.size)} selected to a dataset` : "Add selected to a dataset") });
  function toggle(traceId, on) {
    if (on) selected.add(traceId);
    else selected.delete(traceId);
    adder.refresh();
  }
  function replayHref() {
    const query = new URLSearchParams();
    // The filter language means the same to a replay; a where is over other columns there.
    for (const key of ["filter", "since"]) if (state[key]) query.set(key, state[key]);
    return `/replays/new?${query}`;
  }

  function draw() {
    if (pages) pages.stop();
    mount(barSlot, filterBar(state, (values) => change(values), { suggestions: suggestions() }));
    mount(message);
    const server = SERVER_SORTS.has(state.sort);
    const rows = [];
    const tbody = h("tbody");
    const table = h("table", { class: "table traces-table", id: "traces-table" }, h("thead", {}, headRow()), tbody);
    const wrap = h("div", { class: "table-wrap" }, table);
    const note = server ? null : h("p", { class: "muted small sort-note", id: "sort-note" }, "Sorted within the loaded traces: the server sorts by time, duration, tokens, cost and status.");
    pages = infinitePages({
      load: async (cursor) => {
        const data = await api("/api/traces", {
          since: state.since,
          until: state.until,
          filter: state.filter,
          where: state.where,
          q: state.q,
          kind: state.kind,
          sort: server ? state.sort : "start_time",
          order: server ? state.order : "desc",
          limit: PAGE,
          cursor,
        });
        return { items: data.traces || [], next: data.next_cursor };
      },
      draw: (items) => {
        rows.push(...items);
        if (!rows.length) {
          mount(wrap, state.filter || state.where || state.q || state.kind !== "production" || state.since !== DEFAULTS.since ? notice("info", "No trace matches", "Nothing in this window matches the filters or the search; remove a chip or widen the time range.") : emptyTraces());
          return;
        }
        if (server) tbody.append(...items.map(rowOf));
        else {
          mount(tbody, [...rows].sort(byKey(state.sort, state.order)).map(rowOf));
        }
        rememberValues(items);
      },
      onError: (error, first) => failure(error, first, "traces"),
      describe: (count, done, busy) => (busy ? "Loading traces…" : done && !count ? "" : done ? `${fmt.int(count)} trace${count === 1 ? "" : "s"} · all of this window` : `${fmt.int(count)} traces loaded · scroll for more`),
    });
    const tools = h(
      "div",
      { class: "list-tools", id: "traces-tools" },
      adder,
      state.kind === "production" ? h("a", { class: "button", id: "replay-link", href: replayHref(), title: "re-run the model calls of these traces on other models, compared with what they answered" }, "Replay on other models") : null,
    );
    mount(body, h("section", { class: "card", id: "traces-card" }, tools, note, wrap, pages.footer));
    pages.start();
  }

  function failure(error, first, what) {
    // A bad filter term or SQL: the API's 400 names it; shown where the filter is.
    if (error.status === 400) {
      showError(message, "The filter was not accepted", error);
      if (first) mount(body);
    } else showError(message, `Could not load the ${what}`, error);
  }

  function onSort(key) {
    if (state.sort === key) change({ order: state.order === "desc" ? "asc" : "desc" });
    else change({ sort: key, order: TEXT_SORTS.has(key) ? "asc" : "desc" });
  }

  function headRow() {
    const sh = (label, key, options) => sortHeader(label, key, state.sort, state.order, onSort, options);
    const all = h("input", { type: "checkbox", id: "select-all", "aria-label": "select every loaded trace", title: "select every loaded trace" });
    all.addEventListener("change", () => {
      for (const box of document.querySelectorAll("#traces-table tbody input.pick")) {
        box.checked = all.checked;
        toggle(box.dataset.trace, all.checked);
      }
    });
    return h(
      "tr",
      {},
      h("th", { class: "pick-cell" }, all),
      sh("Time", "start_time"),
      sh("Root", "root_name"),
      sh("Service", "service_name"),
      sh("Session", "session_id"),
      sh("User", "user_id"),
      sh("Duration", "duration_ms", { num: true }),
      sh("Tokens", "total_tokens", { num: true }),
      sh("Cost", "cost_usd", { num: true, title: "sort by cost (unknown costs last)" }),
      sh("Status", "error_count", { title: "sort by errors" }),
      sh("Models", "models"),
      sh("Scores", "scores", { title: "sort by the mean of the trace's scores" }),
    );
  }

  const seen = { service: new Set(), model: new Set(), user: new Set(), tag: new Set() };
  function rememberValues(items) {
    for (const row of items) {
      if (row.service_name) seen.service.add(row.service_name);
      if (row.user_id) seen.user.add(row.user_id);
      for (const m of row.models || []) seen.model.add(m);
      for (const t of row.tags || []) seen.tag.add(t);
    }
    const list = document.getElementById("filter-suggestions");
    if (list) for (const value of suggestions()) if (!list.querySelector(`option[value="${CSS.escape(value)}"]`)) list.append(h("option", { value }));
  }
  function suggestions() {
    return Object.entries(seen).flatMap(([key, values]) => [...values].slice(0, 30).map((v) => term(key, v)));
  }

  // A value in a cell adds itself to the filter (the row's link is not followed).
  function filterLink(key, value, label) {
    if (!value) return h("span", { class: "muted" }, "–");
    return h(
      "button",
      {
        type: "button",
        class: "cell-filter",
        title: `filter: ${term(key, value)}`,
        "data-filter": term(key, value),
        onclick: (event) => {
          event.stopPropagation();
          change({ filter: withTerm(state.filter, term(key, value)) });
        },
      },
      label || value,
    );
  }

  function pick(traceId) {
    const box = h("input", { type: "checkbox", class: "pick", "data-trace": traceId, checked: selected.has(traceId), "aria-label": `select trace ${traceId}` });
    box.addEventListener("change", () => toggle(traceId, box.checked));
    return box;
  }

  function rowOf(row) {
    const href = `/traces/${encodeURIComponent(row.trace_id)}`;
    const failed = row.status === "error";
    return h(
      "tr",
      {
        class: ["clickable", failed && "errored"],
        "data-trace": row.trace_id,
        onclick: (event) => {
          if (event.target.closest("a, button, input")) return;
          if (event.ctrlKey || event.metaKey) window.open(href, "_blank");
          else window.location.href = href;
        },
      },
      h("td", { class: "pick-cell" }, pick(row.trace_id)),
      h("td", { title: fmt.time(row.start_time) }, clock(row.start_time)),
      h(
        "td",
        { class: "root-cell" },
        h("a", { href, class: "strong root-name", title: row.root_name }, row.root_name || "(unnamed)"),
        (row.tags || []).map((t) => filterLink("tag", t, h("span", { class: "chip small tag" }, t))),
        row.input_preview ? h("div", { class: "preview muted small", title: row.input_preview }, row.input_preview) : null,
      ),
      h("td", { class: "ellipsis" }, filterLink("service", row.service_name)),
      h("td", { class: "ellipsis" }, row.session_id ? h("a", { href: `/sessions/${encodeURIComponent(row.session_id)}`, class: "mono small", title: `open session ${row.session_id}` }, row.session_id) : h("span", { class: "muted" }, "–")),
      h("td", { class: "ellipsis" }, filterLink("user", row.user_id)),
      h("td", { class: "num" }, fmt.ms(row.duration_ms)),
      h("td", { class: "num", title: `${fmt.int(row.input_tokens)} in · ${fmt.int(row.output_tokens)} out` }, row.llm_calls ? fmt.tokens(row.total_tokens) : h("span", { class: "muted" }, "–")),
      h("td", { class: "num cost-cell" }, costCell(row)),
      h("td", {}, failed ? filterLink("status", "error", h("span", { class: "chip bad", title: `${row.error_count} span(s) in error` }, `error${row.error_count > 1 ? ` ×${row.error_count}` : ""}`)) : h("span", { class: "chip good" }, "ok")),
      h("td", { class: "models-cell" }, (row.models || []).length ? row.models.map((m) => filterLink("model", m, h("span", { class: "chip muted model" }, m))) : h("span", { class: "muted" }, "–")),
      h("td", {}, scoreChips(row.scores)),
    );
  }

  draw();
}
