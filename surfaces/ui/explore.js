// Pieces shared by the production pages (traces, sessions, usage): the time range, the filter
// bar (chips for the filter language, a SQL box for `where`), state kept in the address,
// infinite pages, and cost shown with where it comes from.

import { fmt, h, mount, notice, toDate } from "./dom.js";

export const RANGES = [
  ["15m", "Last 15 minutes"],
  ["1h", "Last hour"],
  ["6h", "Last 6 hours"],
  ["24h", "Last 24 hours"],
  ["7d", "Last 7 days"],
  ["30d", "Last 30 days"],
];

// --- state in the address -------------------------------------------------------------------

/** The page's state: the address's parameters over `defaults` (strings). */
export function readState(defaults) {
  const found = Object.fromEntries(new URLSearchParams(window.location.search));
  return { ...defaults, ...found };
}

/** Write `state` to the address, leaving out values equal to their default. A new history
 * entry unless `replace`, so back and forward walk through filters. */
export function writeState(state, defaults, { replace = false } = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(state)) {
    if (value === undefined || value === null || value === "" || value === defaults[key]) continue;
    search.set(key, String(value));
  }
  const text = search.toString();
  const url = `${window.location.pathname}${text ? `?${text}` : ""}`;
  if (url === `${window.location.pathname}${window.location.search}`) return;
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
}

let popHandler = null;

/** Run `handler` on back/forward within the page (one handler at a time: a re-render
 * replaces the previous page's). */
export function onPopState(handler) {
  if (popHandler) window.removeEventListener("popstate", popHandler);
  popHandler = handler;
  window.addEventListener("popstate", handler);
}

// --- time range -----------------------------------------------------------------------------

function localInput(value) {
  const d = toDate(value);
  if (!d) return "";
  const local = new Date(d.getTime() - d.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function isoFromLocal(text) {
  if (!text) return "";
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? "" : d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** A range picker: presets, or "custom" with two local date-times. onChange({since, until}). */
export function timeRange(state, onChange) {
  const custom = !RANGES.some(([key]) => key === state.since) || Boolean(state.until);
  const select = h(
    "select",
    { id: "time-range", "aria-label": "time range" },
    RANGES.map(([key, label]) => h("option", { value: key, selected: !custom && key === state.since }, label)),
    h("option", { value: "custom", selected: custom }, "Custom range…"),
  );
  const from = h("input", { type: "datetime-local", id: "range-from", "aria-label": "from", value: custom ? localInput(/^\d{4}-/.test(state.since) ? state.since : null) : "" });
  const to = h("input", { type: "datetime-local", id: "range-to", "aria-label": "to", value: custom ? localInput(state.until) : "" });
  const apply = h("button", { type: "button", id: "range-apply" }, "Apply");
  const box = h("span", { class: "range-custom", hidden: !custom }, from, h("span", { class: "muted" }, "to"), to, apply);
  select.addEventListener("change", () => {
    if (select.value === "custom") {
      box.hidden = false;
      if (!from.value) from.value = localInput(new Date(Date.now() - 86400000));
      return;
    }
    box.hidden = true;
    onChange({ since: select.value, until: "" });
  });
  apply.addEventListener("click", () => {
    const since = isoFromLocal(from.value);
    if (since) onChange({ since, until: isoFromLocal(to.value) });
  });
  return h("span", { class: "range-picker" }, select, box);
}

/** Words for the window: "last 24 hours", "6 Dec 10:00 – now". */
export function rangeText(state) {
  const preset = RANGES.find(([key]) => key === state.since);
  if (preset && !state.until) return preset[1].toLowerCase();
  const since = toDate(state.since);
  const until = toDate(state.until);
  const text = (d) => (d ? fmt.shortTime(d) : "now");
  return since ? `${text(since)} – ${text(until)}` : `last ${state.since}`;
}

// --- filter language ------------------------------------------------------------------------

export const FILTER_KEYS = ["service:", "model:", "provider:", "session:", "user:", "tag:", "name:", "status:error", "status:ok", "latency:>2s", "cost:>0.01", "tokens:>1000", "score.NAME:<0.5", "attr.KEY:VALUE"];

/** The filter text as terms, quotes respected: 'name:"a b" -status:error' -> two terms. */
export function splitTerms(text) {
  const terms = [];
  let current = "";
  let quote = "";
  for (const char of String(text || "")) {
    if (quote) {
      if (char === quote) quote = "";
      current += char;
    } else if (char === '"' || char === "'") {
      quote = char;
      current += char;
    } else if (/\s/.test(char)) {
      if (current) terms.push(current);
      current = "";
    } else current += char;
  }
  if (current) terms.push(current);
  return terms;
}

/** One term for KEY and a value, quoted when the value has spaces or quotes. */
export function term(key, value, negated = false) {
  const text = String(value);
  const quoted = /[\s"']/.test(text) ? `"${text.replace(/"/g, "'")}"` : text;
  return `${negated ? "-" : ""}${key}:${quoted}`;
}

/** The filter with `added` as one more term (replacing the same term, negated or not). */
export function withTerm(filter, added) {
  const bare = (t) => t.replace(/^-/, "");
  const terms = splitTerms(filter).filter((t) => bare(t) !== bare(added));
  return [...terms, added].join(" ");
}

/**
 * The filter bar: each term of `filter` a chip (click to negate, × to remove), a box to type
 * more, and a SQL box for `where`. onChange({filter, where}).
 */
export function filterBar(state, onChange, { suggestions = [] } = {}) {
  const terms = splitTerms(state.filter);
  const list = h("datalist", { id: "filter-suggestions" }, [...new Set([...FILTER_KEYS, ...suggestions])].map((v) => h("option", { value: v })));
  const input = h("input", { type: "text", id: "filter-input", list: "filter-suggestions", placeholder: terms.length ? "add a filter…" : "filter: model:gpt-4o status:error latency:>2s …", "aria-label": "add a filter term", autocomplete: "off" });
  const emit = (next) => onChange({ filter: next.join(" "), where: state.where || "" });
  const chips = terms.map((t, i) => {
    const negated = t.startsWith("-");
    return h(
      "span",
      { class: ["filter-chip", negated && "negated"], "data-term": t },
      h("button", { type: "button", class: "chip-text", title: negated ? "negated: click to match instead" : "click to exclude instead", onclick: () => emit(terms.map((x, j) => (j === i ? (negated ? x.slice(1) : `-${x}`) : x))) }, t),
      h("button", { type: "button", class: "chip-remove", "aria-label": `remove ${t}`, title: "remove", onclick: () => emit(terms.filter((_, j) => j !== i)) }, "×"),
    );
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      const added = splitTerms(input.value);
      if (added.length) emit([...terms, ...added]);
    } else if (event.key === "Backspace" && !input.value && terms.length) {
      emit(terms.slice(0, -1));
    }
  });
  const where = h("input", { type: "text", id: "where-input", class: "mono", value: state.where || "", placeholder: "SQL over the trace columns, e.g. total_tokens > 1000 AND has(tags, 'beta')", "aria-label": "SQL where" });
  const apply = () => onChange({ filter: terms.join(" "), where: where.value.trim() });
  where.addEventListener("keydown", (event) => { if (event.key === "Enter") apply(); });
  const sqlRow = h(
    "div",
    { class: "sql-row", hidden: !state.where },
    h("span", { class: "sql-label" }, "WHERE"),
    where,
    h("button", { type: "button", id: "where-apply", onclick: apply }, "Apply"),
    state.where ? h("button", { type: "button", class: "link-button", onclick: () => onChange({ filter: terms.join(" "), where: "" }) }, "clear") : null,
  );
  const sqlToggle = h(
    "button",
    { type: "button", id: "sql-toggle", class: ["sql-toggle", state.where && "active"], "aria-pressed": state.where ? "true" : "false", title: "filter with a SQL condition over the trace columns" },
    "SQL",
  );
  sqlToggle.addEventListener("click", () => {
    sqlRow.hidden = !sqlRow.hidden;
    sqlToggle.setAttribute("aria-pressed", sqlRow.hidden ? "false" : "true");
    if (!sqlRow.hidden) where.focus();
  });
  const box = h("div", { class: "filter-box", onclick: (event) => { if (event.target === box) input.focus(); } }, chips, input);
  return h("div", { class: "filter-bar", id: "filter-bar" }, h("div", { class: "filter-line" }, box, sqlToggle, terms.length ? h("button", { type: "button", class: "link-button", id: "filter-clear", onclick: () => emit([]) }, "clear") : null), sqlRow, list);
}

// --- values ---------------------------------------------------------------------------------

const PROVENANCE = {
  provided: "reported by the spans",
  inferred: "priced from the bundled price table",
  partly_unknown: "some model calls have no known price",
  unknown: "no known price for the model",
  none: "no model calls",
};

/** A cost with where it comes from; unknown stays unknown, never $0. */
export function costCell(row) {
  const kind = row.cost_provenance || "";
  const known = row.cost_known_usd;
  if (kind === "none" || (!row.llm_calls && !Number.isFinite(row.cost_usd))) return h("span", { class: "muted", title: PROVENANCE.none }, "–");
  if (!Number.isFinite(row.cost_usd)) {
    const partly = Number.isFinite(known) && known > 0;
    return h(
      "span",
      { class: "cost-unknown", title: partly ? `${fmt.usd(known)} known; ${PROVENANCE.partly_unknown}` : PROVENANCE[kind] || PROVENANCE.unknown },
      partly ? `≥ ${fmt.usd(known)}` : "unknown",
      h("div", { class: "small muted cost-source" }, partly ? "partly unknown" : "no price"),
    );
  }
  return h("span", { title: PROVENANCE[kind] || kind }, fmt.usd(row.cost_usd), kind ? h("div", { class: "small muted cost-source" }, kind.replace("_", " ")) : null);
}

export function costTitle(kind) {
  return PROVENANCE[kind] || kind || "";
}

/** A time as a list shows it: the clock today, the date and the clock otherwise ("6 Dec
 * 23:10", which may break before the clock: a narrow table wraps it rather than overflow). */
export function clock(value) {
  const d = toDate(value);
  if (!d) return "–";
  if (d.toDateString() === new Date().toDateString()) return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const day = d.toLocaleDateString("en-GB", { day: "numeric", month: "short" }).replace(" ", "\u00a0");
  return `${day} ${d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit" })}`;
}

/** A length of time that may run to hours or days (a session): "4.9 h", "2.1 days". */
export function longDuration(ms) {
  if (!Number.isFinite(ms)) return "–";
  if (ms >= 86400000) return `${(ms / 86400000).toFixed(1)} days`;
  if (ms >= 3600000) return `${(ms / 3600000).toFixed(1)} h`;
  return fmt.ms(ms);
}

/** Score chips "name 80%", or a dash. */
export function scoreChips(scores) {
  const entries = Object.entries(scores || {}).sort(([a], [b]) => a.localeCompare(b));
  if (!entries.length) return h("span", { class: "muted" }, "–");
  return h(
    "span",
    { class: "score-chips" },
    entries.map(([name, value]) => {
      const level = value >= 0.8 ? "good" : value >= 0.5 ? "mid" : "bad";
      return h("span", { class: `chip score-${level}`, title: `${name}: ${value}` }, `${name} ${fmt.score(value)}`);
    }),
  );
}

// --- sortable headers and infinite pages ----------------------------------------------------

/** A header cell that sorts: ▼/▲ on the sorted one. onSort(key). */
export function sortHeader(label, key, sort, order, onSort, { num = false, title } = {}) {
  const active = sort === key;
  return h(
    "th",
    { class: [num && "num", active && "sorted"], "data-sort": key, "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : null },
    h("button", { type: "button", class: "th-button", title: title || `sort by ${label.toLowerCase()}`, onclick: () => onSort(key) }, label, active ? (order === "asc" ? " ▲" : " ▼") : ""),
  );
}

/**
 * Pages that load as the reader scrolls: `load(cursor)` resolves to {items, next}; `draw(items)`
 * appends them; `onError(error, first)` hears a failed page. The footer holds a "Load more" button (also for keyboards and tests) and says
 * when everything is shown. Returns {footer, start(), stop()}.
 */
export function infinitePages({ load, draw, describe, onError }) {
  const status = h("span", { class: "muted", id: "page-status" });
  const more = h("button", { type: "button", id: "load-more" }, "Load more");
  const footer = h("div", { class: "pager infinite", id: "pager" }, status, more);
  let cursor = null;
  let done = false;
  let busy = false;
  let count = 0;
  let stopped = false;
  const observer = "IntersectionObserver" in window ? new IntersectionObserver((entries) => { if (entries.some((e) => e.isIntersecting)) next(); }, { rootMargin: "300px" }) : null;

  function show() {
    more.hidden = done;
    more.disabled = busy;
    footer.dataset.state = busy ? "loading" : done ? "done" : "more";
    status.textContent = describe(count, done, busy);
  }

  async function next() {
    if (busy || done || stopped) return;
    busy = true;
    show();
    try {
      const page = await load(cursor);
      if (stopped) return;
      cursor = page.next;
      done = !page.next;
      count += page.items.length;
      draw(page.items);
    } catch (error) {
      if (stopped) return;
      done = true;
      if (onError) onError(error, count === 0);
      else footer.before(notice("error", "Could not load more", error.message));
    } finally {
      busy = false;
      if (!stopped) show();
    }
    // A short first page that does not fill the screen: keep going while the footer shows.
    if (!done && !stopped && footer.getBoundingClientRect().top < window.innerHeight) next();
  }

  more.addEventListener("click", () => next());
  return {
    footer,
    start() {
      show();
      if (observer) observer.observe(footer);
      return next();
    },
    stop() {
      stopped = true;
      if (observer) observer.disconnect();
    },
    get count() {
      return count;
    },
  };
}

/** An API error under the filter bar (a bad filter term or SQL: the message names it). */
export function showError(slot, title, error) {
  mount(slot, notice("error", title, error.message || String(error)));
}
