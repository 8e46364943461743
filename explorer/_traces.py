"""``GET /api/traces`` and ``GET /api/traces/{id}``: pages of trace rows, and one trace.

A page reads the granules it shows plus the window (``benchmarks/explorer.py``):

- newest first (the default) reads ``trace_summaries`` in its order ``(start_time,
  trace_id)``, backwards, and stops after a page: 10 ms at 5M traces as at 500k;
- sorted by a metric, largest first, with no filter: ``trace_rank`` in its order (9 ms at 5M
  traces, against 580 ms for a top-k over the window of ``trace_summaries``);
- any other sort or a filtered one: ``trace_summaries`` within the window, a top-k that
  ClickHouse prunes with the skip indexes.

Cursors hold the last row's sort values (times in nanoseconds), so pages neither repeat nor
skip a row whatever arrives meanwhile.
"""

from __future__ import annotations

from typing import Any

from evalhouse.errors import NotFound
from evalhouse.evaluators import MODEL_CALLS, read_trace
from evalhouse.explorer._params import TracesRequest, decode_cursor, encode_cursor
from evalhouse.explorer._query import collect, conditions
from evalhouse.explorer._rows import SELECT, iso, latest, rows_at, scores_of, trace_json
from evalhouse.store import Store

__all__ = ["list_traces", "trace_detail"]


def _sort_value(sort: str, order: str) -> str:
    """The sorted expression; an unknown cost sorts last both ways."""
    if sort == "cost_usd":
        return f"ifNull(cost_usd, {'-inf' if order == 'desc' else 'inf'})"
    return sort


def list_traces(store: Store, request: TracesRequest) -> dict[str, Any]:
    """A page of traces and the cursor of the next one.

    >>> list_traces(store, TracesRequest.from_params({"filter": "status:error"}))  # doctest: +SKIP
    {'traces': [...], 'next_cursor': 'eyJrIjo...'}
    """
    where = conditions(
        store,
        request.window,
        kind=request.kind,
        filter=request.filter,
        where=request.where,
        q=request.q,
    )
    cursor_kind = f"traces:{request.sort}:{request.order}"
    position = decode_cursor(request.cursor, cursor_kind)
    if request.sort != "start_time" and request.order == "desc" and not where.narrowed:
        rows, after = _ranked(store, request, where.params, position)
    else:
        rows, after = _scanned(store, request, where.sql, where.params, position)
    scores = scores_of(store, [row["trace_id"] for row in rows])
    return {
        "traces": [trace_json(row, scores.get(row["trace_id"], {})) for row in rows],
        "next_cursor": encode_cursor(cursor_kind, after) if after is not None else None,
    }


def _scanned(
    store: Store,
    request: TracesRequest,
    where: str,
    params: dict[str, Any],
    position: list[Any] | None,
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    direction = "DESC" if request.order == "desc" else "ASC"
    compare = "<" if request.order == "desc" else ">"
    if request.sort == "start_time":
        order = ["start_ns", "trace_id"]
        columns = "start_time, trace_id"
        sort_sql = f"start_time {direction}, trace_id {direction}"
    else:
        order = ["sort_value", "start_ns", "trace_id"]
        columns = f"{_sort_value(request.sort, request.order)}, start_time, trace_id"
        sort_sql = f"sort_value {direction}, start_time {direction}, trace_id {direction}"
    sort_value = _sort_value(request.sort, request.order)

    def fetch(after: list[Any] | None, n: int) -> list[dict[str, Any]]:
        extra = ""
        bound: dict[str, Any] = {}
        if after is not None:
            holders = []
            for i, value in enumerate(after):
                name = f"c{i}"
                bound[name] = value
                if order[i] == "start_ns":
                    holders.append(f"fromUnixTimestamp64Nano({{{name}:Int64}}, 'UTC')")
                elif order[i] == "trace_id":
                    holders.append(f"{{{name}:String}}")
                else:
                    holders.append(f"{{{name}:Float64}}")
            extra = f" AND ({columns}) {compare} ({', '.join(holders)})"
            if request.sort == "start_time":  # lets the primary key skip past the cursor
                extra += f" AND start_time {compare}= {holders[0]}"
        if request.sort != "start_time":
            threshold = _threshold(
                store, where + extra, {**params, **bound}, sort_value, direction, n
            )
            if threshold is not None:
                extra += f" AND {sort_value} {'>=' if direction == 'DESC' else '<='} {{t:Float64}}"
                bound["t"] = threshold
        sql = (
            f"SELECT {SELECT}, {sort_value} AS sort_value FROM trace_summaries "
            f"WHERE {where}{extra} ORDER BY {sort_sql} LIMIT {{n:UInt32}}"
        )
        return store.select(sql, {**params, **bound, "n": n})

    return collect(fetch, order, order, position, request.limit)


def _threshold(
    store: Store, where: str, params: dict[str, Any], value: str, direction: str, n: int
) -> float | None:
    """The ``n``-th value of the sort column among the matching rows: one column read with
    ClickHouse's top-k pruning, so the page query reads its other columns for ``n`` rows
    only. Sorting 5M rows by duration with the tie-breaks read every column of the window
    (1.08 s at 20M spans); a top-k of one column takes a tenth of that."""
    rows = store.select(
        f"SELECT {value} AS v FROM trace_summaries WHERE {where} "
        f"ORDER BY v {direction} LIMIT 1 OFFSET {{k:UInt32}}",
        {**params, "k": n - 1},
    )
    return float(rows[0]["v"]) if rows else None


def _ranked(
    store: Store, request: TracesRequest, params: dict[str, Any], position: list[Any] | None
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """Largest first from ``trace_rank``, then the rows of the page from ``trace_summaries``."""
    order = ["key", "neg_start", "trace_id"]
    kind = "" if request.kind == "all" else " AND kind = {kind:String}"

    def fetch(after: list[Any] | None, n: int) -> list[dict[str, Any]]:
        extra = ""
        bound: dict[str, Any] = {"metric": request.sort, "n": n}
        if after is not None:
            extra = " AND (key, neg_start, trace_id) > ({c0:Float64}, {c1:Int64}, {c2:String})"
            bound.update(c0=after[0], c1=after[1], c2=after[2])
        sql = (
            "SELECT key, neg_start, trace_id, version, is_deleted FROM trace_rank "
            "WHERE metric = {metric:String} AND start_time >= "
            "fromUnixTimestamp64Nano({since:Int64}, 'UTC') AND start_time < "
            f"fromUnixTimestamp64Nano({{until:Int64}}, 'UTC'){kind}{extra} "
            "ORDER BY metric, key, neg_start, trace_id LIMIT {n:UInt32}"
        )
        return store.select(sql, {**params, **bound})

    ranked, after = collect(fetch, order, order, position, request.limit)
    if not ranked:
        return [], after
    return rows_at(store, [(-row["neg_start"], row["trace_id"]) for row in ranked]), after


def trace_detail(store: Store, trace_id: str) -> dict[str, Any]:
    """One trace: its tree (:func:`evalhouse.evaluators.read_trace`: spans, costs, messages,
    which calls count), its row, and each model call's messages as a chat.

    :class:`NotFound` when no span of it is stored.
    """
    tree = read_trace(store, trace_id)
    if tree is not None:
        # The row starts where the first span does: a point on the primary key.
        found = rows_at(store, [(tree["start_ns"], trace_id)])
    else:
        rows = store.select(
            f"SELECT {SELECT} FROM trace_summaries WHERE trace_id = {{id:String}} "
            "ORDER BY start_time, trace_id",
            {"id": trace_id},
        )
        found = latest(rows, ["start_ns", "trace_id"])
    if tree is None and not found:
        raise NotFound(
            f"no span of trace {trace_id} is stored; check the id, and that the app sends "
            "its spans to this evalhouse (recent spans can take a moment to arrive)"
        )
    row = None
    if found:
        row = trace_json(found[-1], scores_of(store, [trace_id]).get(trace_id, {}))
    answer: dict[str, Any] = dict(tree) if tree is not None else {"trace_id": trace_id}
    answer["trace"] = row
    answer["scores"] = _scores_of_trace(store, trace_id)
    answer["model_calls"] = [
        {
            "span_id": span["span_id"],
            "name": span["name"],
            "provider": span["llm"]["provider"],
            "model": span["llm"]["request_model"] or span["llm"]["response_model"],
            "counted": span["llm"]["counted"],
            "chat": [*span["input_messages"], *span["output_messages"]],
        }
        for span in (tree or {}).get("spans", [])
        if span["llm"] is not None and span["llm"]["operation"] in MODEL_CALLS
    ]
    return answer


_SCORE_LIMIT = 1_000


def _scores_of_trace(store: Store, trace_id: str) -> list[dict[str, Any]]:
    """Every score of one trace, its spans and its session turns, newest first: ``span_id``
    names the span scored (empty for the trace). A re-score replaces the older value."""
    rows = store.select(
        """
        SELECT target_span_id AS span_id, name, source, rule, rule_version, author,
               argMax(value, created_at) AS value, argMax(label, created_at) AS label,
               argMax(explanation, created_at) AS explanation, argMax(error, created_at) AS error,
               toUnixTimestamp64Nano(max(created_at)) AS created_ns
        FROM scores WHERE trace_id = {id:String}
        GROUP BY span_id, name, source, rule, rule_version, author, experiment_id, row_id, trial
        ORDER BY created_ns DESC, name
        LIMIT {limit:UInt32}
        """,
        {"id": trace_id, "limit": _SCORE_LIMIT},
    )
    return [
        {
            **{k: row[k] for k in ("span_id", "name", "source", "rule", "author", "label")},
            "rule_version": int(row["rule_version"]),
            "value": None if row["value"] is None else float(row["value"]),
            "explanation": row["explanation"],
            "error": row["error"],
            "created_at": iso(int(row["created_ns"])),
        }
        for row in rows
    ]
