// Sessions: conversations made of traces sharing a session id, latest activity first, in
// pages that load as you scroll. The time range and filters are in the address.

import { api } from "./api.js";
import { fmt, h, mount, notice, toDate } from "./dom.js";
import { clock, costCell, filterBar, infinitePages, longDuration, onPopState, readState, scoreChips, showError, term, timeRange, withTerm, writeState } from "./explore.js";

const PAGE = 50;
const DEFAULTS = { since: "24h", until: "", filter: "", where: "" };

export function lengthMs(row) {
  const start = toDate(row.start_time);
  const end = toDate(row.end_time);
  return start && end ? end - start : null;
}

/** Sessions carry no provenance of their own: no calls, all priced, or some unknown. */
export function sessionProvenance(row) {
  if (!row.llm_calls) return "none";
  if (Number.isFinite(row.cost_usd)) return "";
  return row.cost_known_usd > 0 ? "partly_unknown" : "unknown";
}

export async function render(root) {
  document.title = "Sessions · evalhouse";
  const state = readState(DEFAULTS);
  let pages = null;
  const change = (values) => {
    Object.assign(state, values);
    writeState(state, DEFAULTS);
    draw();
  };
  onPopState(() => {
    if (pages) pages.stop();
    render(root);
  });
  const barSlot = h("div");
  const message = h("div", { class: "inline-message", id: "sessions-message" });
  const body = h("div", { id: "sessions-body" });
  mount(root, h("div", { class: "page-head" }, h("h1", {}, "Sessions"), h("div", { class: "filters" }, timeRange(state, (range) => change(range)))), barSlot, message, body);

  function draw() {
    if (pages) pages.stop();
    mount(barSlot, filterBar(state, (values) => change(values)));
    mount(message);
    const tbody = h("tbody");
    let shown = 0;
    const table = h(
      "table",
      { class: "table sessions-table", id: "sessions-table" },
      h(
        "thead",
        {},
        h("tr", {}, h("th", {}, "Session"), h("th", {}, "User"), h("th", {}, "Last activity"), h("th", { class: "num" }, "Length"), h("th", { class: "num" }, "Traces"), h("th", { class: "num" }, "LLM calls"), h("th", { class: "num" }, "Tokens"), h("th", { class: "num" }, "Cost"), h("th", { class: "num" }, "Errors"), h("th", {}, "Scores")),
      ),
      tbody,
    );
    const wrap = h("div", { class: "table-wrap" }, table);
    pages = infinitePages({
      load: async (cursor) => {
        const data = await api("/api/sessions", { since: state.since, until: state.until, filter: state.filter, where: state.where, limit: PAGE, cursor });
        return { items: data.sessions || [], next: data.next_cursor };
      },
      draw: (items) => {
        shown += items.length;
        if (!shown) {
          mount(wrap, notice("info", "No sessions in this window", state.filter || state.where ? "No session has a trace matching these filters; remove a chip or widen the time range." : h("p", {}, "A session is the traces that share a session id: set ", h("code", {}, "session.id"), " (or gen_ai.conversation.id, langfuse.session.id…) on any span of each trace. Widen the time range if the app sent them earlier.")));
          return;
        }
        tbody.append(...items.map(rowOf));
      },
      onError: (error, first) => {
        if (error.status === 400) {
          showError(message, "The filter was not accepted", error);
          if (first) mount(body);
        } else showError(message, "Could not load the sessions", error);
      },
      describe: (count, done, busy) => (busy ? "Loading sessions…" : done && !count ? "" : done ? `${fmt.int(count)} session${count === 1 ? "" : "s"} · all of this window` : `${fmt.int(count)} sessions loaded · scroll for more`),
    });
    mount(body, h("section", { class: "card", id: "sessions-card" }, wrap, pages.footer));
    pages.start();
  }

  function rowOf(row) {
    const href = `/sessions/${encodeURIComponent(row.session_id)}`;
    return h(
      "tr",
      {
        class: ["clickable", row.error_count && "errored"],
        "data-session": row.session_id,
        onclick: (event) => {
          if (event.target.closest("a, button")) return;
          window.location.href = href;
        },
      },
      h("td", { class: "ellipsis" }, h("a", { href, class: "strong mono", title: row.session_id }, row.session_id)),
      h(
        "td",
        { class: "ellipsis" },
        row.user_id
          ? h("button", { type: "button", class: "cell-filter", title: `filter: ${term("user", row.user_id)}`, "data-filter": term("user", row.user_id), onclick: () => change({ filter: withTerm(state.filter, term("user", row.user_id)) }) }, row.user_id)
          : h("span", { class: "muted" }, "–"),
      ),
      h("td", { title: `${fmt.time(row.start_time)} – ${fmt.time(row.end_time)}` }, clock(row.end_time)),
      h("td", { class: "num" }, longDuration(lengthMs(row))),
      h("td", { class: "num" }, fmt.int(row.traces)),
      h("td", { class: "num" }, fmt.int(row.llm_calls)),
      h("td", { class: "num" }, fmt.tokens(row.total_tokens)),
      h("td", { class: "num cost-cell" }, costCell({ ...row, cost_provenance: sessionProvenance(row) })),
      h("td", { class: "num" }, row.error_count ? h("span", { class: "chip bad" }, fmt.int(row.error_count)) : "0"),
      h("td", {}, scoreChips(row.scores)),
    );
  }

  draw();
}
