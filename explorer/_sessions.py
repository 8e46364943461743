"""``GET /api/sessions`` and ``GET /api/sessions/{id}``: conversations made of traces.

A session is the traces sharing a ``session_id``. The list is ordered by each session's
latest trace: it walks ``trace_summaries`` newest first (the same in-order read as the trace
list) collecting session ids until a page is full, then totals those sessions only, through
the bloom filter on ``session_id``. One session's traces come a page at a time, oldest first,
so a session of thousands of traces opens as fast as one of ten.
"""

from __future__ import annotations

from typing import Any

from evalhouse.errors import NotFound
from evalhouse.explorer._params import (
    SessionRequest,
    SessionsRequest,
    Window,
    decode_cursor,
    encode_cursor,
)
from evalhouse.explorer._query import WINDOW, Conditions, collect, conditions
from evalhouse.explorer._rows import iso, rows_at, scores_of, trace_json
from evalhouse.store import Store

__all__ = ["list_sessions", "session_detail"]

# Totals of some sessions' traces in the window, from their primary-key ranges in
# ``session_traces`` (the latest version of each trace: FINAL on those ranges only).
_TOTALS = (
    """
SELECT
    session_id,
    toUnixTimestamp64Nano(min(start_time)) AS start_ns,
    toUnixTimestamp64Nano(max(end_time)) AS end_ns,
    count() AS traces,
    anyIf(user_id, user_id != '') AS user_id,
    sum(total_tokens) AS total_tokens,
    if(countIf(cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(cost_usd))) AS cost_usd,
    sum(cost_known_usd) AS cost_known_usd,
    sum(error_count) AS error_count,
    sum(llm_calls) AS llm_calls,
    groupArray(1000)(trace_id) AS trace_ids
FROM session_traces FINAL
WHERE session_id IN {sessions:Array(String)} AND """
    + WINDOW
    + """
GROUP BY session_id
"""
)


def _session_json(row: dict[str, Any], scores: dict[str, float]) -> dict[str, Any]:
    return {
        "session_id": row["session_id"],
        "start_time": iso(row["start_ns"]),
        "end_time": iso(row["end_ns"]),
        "traces": row["traces"],
        "user_id": row["user_id"],
        "total_tokens": row["total_tokens"],
        "cost_usd": row["cost_usd"],
        "error_count": row["error_count"],
        "scores": scores,
        "llm_calls": row["llm_calls"],
        "cost_known_usd": row["cost_known_usd"],
    }


def _totals(store: Store, window: Window, sessions: list[str]) -> dict[str, dict[str, Any]]:
    rows = store.select(_TOTALS, {**window.sql_params(), "sessions": sessions})
    return {row["session_id"]: row for row in rows}


def _mean_scores(store: Store, sessions: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per session, the mean of its traces' latest scores (one query for the page; at most
    1,000 traces of a session are read for it)."""
    owner = {t: row["session_id"] for row in sessions for t in row["trace_ids"]}
    sums: dict[str, dict[str, list[float]]] = {}
    for trace_id, scores in scores_of(store, list(owner)).items():
        for name, value in scores.items():
            sums.setdefault(owner[trace_id], {}).setdefault(name, []).append(value)
    return {
        session: {name: sum(values) / len(values) for name, values in names.items()}
        for session, names in sums.items()
    }


def list_sessions(store: Store, request: SessionsRequest) -> dict[str, Any]:
    """Sessions with a (matching) trace in the window, latest activity first.

    >>> list_sessions(store, SessionsRequest.from_params({}))   # doctest: +SKIP
    {'sessions': [...], 'next_cursor': None}
    """
    where = conditions(
        store, request.window, kind=request.kind, filter=request.filter, where=request.where
    )
    position = decode_cursor(request.cursor, "sessions")
    order = ["start_ns", "trace_id"]

    def fetch(after: list[Any] | None, n: int) -> list[dict[str, Any]]:
        extra = ""
        bound: dict[str, Any] = {"n": n}
        if after is not None:
            extra = (
                " AND (start_time, trace_id) < (fromUnixTimestamp64Nano({c0:Int64}, 'UTC'), "
                "{c1:String}) AND start_time <= fromUnixTimestamp64Nano({c0:Int64}, 'UTC')"
            )
            bound.update(c0=after[0], c1=after[1])
        return store.select(
            "SELECT session_id, toUnixTimestamp64Nano(start_time) AS start_ns, trace_id, "
            "version, is_deleted FROM trace_summaries "
            f"WHERE {where.sql} AND session_id != ''{extra} "
            "ORDER BY start_time DESC, trace_id DESC LIMIT {n:UInt32}",
            {**where.params, **bound},
        )

    # Walk matching traces newest first: a session comes at its latest matching trace. On a
    # later page, a session whose latest matching trace is at or before the cursor (in walk
    # order) was listed already.
    fresh: list[tuple[str, list[Any]]] = []
    checked: set[str] = set()
    walked = position
    while len(fresh) <= request.limit:
        rows, walked = collect(fetch, order, order, walked, 4 * request.limit)
        new: list[tuple[str, list[Any]]] = []
        for row in rows:
            if row["session_id"] not in checked:
                checked.add(row["session_id"])
                new.append((row["session_id"], [row["start_ns"], row["trace_id"]]))
        if position is not None and new:
            latest_match = _latest_matching(store, where, [s for s, _ in new])
            new = [
                (s, at)
                for s, at in new
                if tuple(latest_match.get(s, at)) < (position[0], position[1])
            ]
        fresh += new
        if walked is None:
            break
    page = fresh[: request.limit]
    totals = _totals(store, request.window, [s for s, _ in page])
    rows = [totals[s] for s, _ in page if s in totals]
    means = _mean_scores(store, rows)
    sessions = [_session_json(row, means.get(row["session_id"], {})) for row in rows]
    after = encode_cursor("sessions", page[-1][1]) if len(fresh) > request.limit else None
    return {"sessions": sessions, "next_cursor": after}


def _latest_matching(store: Store, where: Conditions, sessions: list[str]) -> dict[str, list[Any]]:
    if not where.narrowed:
        # Only the window and the kind: the sessions' own primary-key ranges answer (through
        # the bloom filter on trace_summaries.session_id: 459 ms at 20M spans).
        kind = " AND kind = {kind:String}" if "kind" in where.params else ""
        rows = store.select(
            "SELECT session_id, argMax(tuple(toUnixTimestamp64Nano(start_time), trace_id), "
            "tuple(start_time, trace_id)) AS latest FROM session_traces FINAL "
            f"WHERE session_id IN {{sessions:Array(String)}} AND {WINDOW}{kind} "
            "GROUP BY session_id",
            {**where.params, "sessions": sessions},
        )
        return {row["session_id"]: list(row["latest"]) for row in rows}
    rows = store.select(
        "SELECT session_id, argMax(tuple(toUnixTimestamp64Nano(start_time), trace_id), "
        "tuple(start_time, trace_id)) AS latest FROM trace_summaries "
        f"WHERE {where.sql} AND session_id IN {{sessions:Array(String)}} GROUP BY session_id",
        {**where.params, "sessions": sessions},
    )
    return {row["session_id"]: list(row["latest"]) for row in rows}


def session_detail(store: Store, request: SessionRequest) -> dict[str, Any]:
    """One session's totals and a page of its traces in time order.

    :class:`NotFound` when no trace of the session is in the window.
    """
    totals = _totals(store, request.window, [request.session_id])
    found = totals.get(request.session_id)
    if found is None:
        raise NotFound(
            f"no trace of session {request.session_id!r} since "
            f"{request.window.since.isoformat()}; check the id, or widen since= (e.g. 90d)"
        )
    position = decode_cursor(request.cursor, "session")
    order = ["start_ns", "trace_id"]
    params = {**request.window.sql_params(), "session": request.session_id}

    def fetch(after: list[Any] | None, n: int) -> list[dict[str, Any]]:
        extra = ""
        bound: dict[str, Any] = {"n": n}
        if after is not None:
            extra = (
                " AND (start_time, trace_id) > (fromUnixTimestamp64Nano({c0:Int64}, 'UTC'), "
                "{c1:String}) AND start_time >= fromUnixTimestamp64Nano({c0:Int64}, 'UTC')"
            )
            bound.update(c0=after[0], c1=after[1])
        return store.select(
            "SELECT toUnixTimestamp64Nano(start_time) AS start_ns, trace_id, version, "
            f"is_deleted FROM session_traces WHERE session_id = {{session:String}} AND {WINDOW}"
            f"{extra} ORDER BY session_id, start_time, trace_id LIMIT {{n:UInt32}}",
            {**params, **bound},
        )

    keys, after = collect(fetch, order, order, position, request.limit)
    rows = rows_at(store, [(key["start_ns"], key["trace_id"]) for key in keys])
    scores = scores_of(store, [row["trace_id"] for row in rows])
    return {
        "session": _session_json(found, _mean_scores(store, [found]).get(request.session_id, {})),
        "traces": [trace_json(row, scores.get(row["trace_id"], {})) for row in rows],
        "next_cursor": encode_cursor("session", after) if after is not None else None,
    }
