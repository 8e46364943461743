"""``GET /api/usage``: traces, LLM calls, tokens, cost, latency percentiles and errors per
time bucket, per model, provider, service or user.

Without a ``where`` and with filter terms on service, model or provider only, buckets come
from ``usage_rollup``: per minute, or per hour when the interval is whole hours (a day then
merges a few hundred latency digests instead of thousands: 296 ms at 20M spans from the
minutes), per hour for users. Hourly buckets count whole hours: the first one may start
before ``since``. Anything else (other terms, ``where``, users per minute) reads the
trace rows of the window, which costs what the window holds.

With ``group_by=user``, the ``top`` users (20 by default) with the most tokens in the window.
Latency is that of the leaf model calls; ``errors`` counts traces with an error span and
``error_rate`` is errors / traces. ``cost_usd`` is null when a call of the bucket has no
known price (``unpriced_calls``), never $0; ``cost_known_usd`` sums the known part.

``scores`` in a bucket: per score name, the mean of the latest value of each trace of the
bucket (and group) that has one: every source (rules, people, experiments, the app's own
evaluation events); errors and label-only scores left out. Scores are read for the traces
the request covers and stored since the window began, never the whole table.
"""

from __future__ import annotations

from typing import Any

from evalhouse.explorer._filters import ROLLUP_TERMS, parse_filter
from evalhouse.explorer._params import UsageRequest
from evalhouse.explorer._query import conditions
from evalhouse.explorer._rows import iso
from evalhouse.store import Store

__all__ = ["usage"]

_GROUP_ROLLUP = {"model": "model", "provider": "provider", "service": "service_name"}
_ROLLUP_FILTER = {
    "service": "service_name = {{{p}:String}}",
    "model": "model = {{{p}:String}}",
    "provider": "provider = {{{p}:String}}",
}
_SUMS = """
    sum(traces) AS traces, sum(llm_calls) AS llm_calls, sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens, sum(total_tokens) AS total_tokens,
    sum(cost_known_usd) AS cost_known_usd, sum(unpriced_calls) AS unpriced_calls,
    sum(errors) AS errors"""


def usage(store: Store, request: UsageRequest) -> dict[str, Any]:
    """Usage buckets in time order (then by group).

    >>> usage(store, UsageRequest.from_params({"group_by": "model"}))   # doctest: +SKIP
    {'buckets': [{'t': '2026-01-31T12:00:00Z', 'group': 'gpt-4o', ...}], 'source': 'rollup'}
    """
    parsed = parse_filter(request.filter)
    keys = parsed.keys()
    by_user = request.group_by == "user"
    rollup = (
        not request.where.strip()
        and keys <= ROLLUP_TERMS
        and (not by_user or (not keys and request.interval_s % 3600 == 0))
    )
    rows = _from_rollup(store, request) if rollup else _from_traces(store, request)
    means = _score_means(store, request)
    return {
        "buckets": [
            {**_bucket(row, request.group_by), "scores": means.get((int(row["t"]), row["g"]), {})}
            for row in rows
        ],
        "source": ("rollup" if rollup else "traces"),
    }


def _bucket(row: dict[str, Any], group_by: str) -> dict[str, Any]:
    traces = int(row["traces"])
    latency = list(row["latency"] or [])
    calls = int(row["llm_calls"])
    known = calls > 0 and latency and all(v == v for v in latency)  # NaN: no sample
    return {
        "t": iso(int(row["t"]) * 1_000_000_000),
        "group": None if group_by == "none" else row["g"],
        "traces": traces,
        "llm_calls": calls,
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "total_tokens": int(row["total_tokens"]),
        "cost_usd": None if int(row["unpriced_calls"]) > 0 else float(row["cost_known_usd"]),
        "cost_known_usd": float(row["cost_known_usd"]),
        "unpriced_calls": int(row["unpriced_calls"]),
        "latency_ms_p50": float(latency[0]) if known else None,
        "latency_ms_p95": float(latency[1]) if known else None,
        "latency_ms_p99": float(latency[2]) if known else None,
        "errors": int(row["errors"]),
        "error_rate": int(row["errors"]) / traces if traces > 0 else None,
    }


def _from_rollup(store: Store, request: UsageRequest) -> list[dict[str, Any]]:
    parsed = parse_filter(request.filter)
    hourly = request.interval_s % 3600 == 0
    if request.group_by == "user":
        level, group = "user", "user_id"
    elif request.group_by in ("model", "provider") or parsed.keys() & {"model", "provider"}:
        level, group = "call", _GROUP_ROLLUP.get(request.group_by, "''")
    else:
        level, group = "trace", _GROUP_ROLLUP.get(request.group_by, "''")
    if hourly and level != "user":
        level += "_hour"
    start = "toStartOfHour" if hourly else "toStartOfMinute"
    params: dict[str, Any] = {
        **request.window.sql_params(),
        "level": level,
        "interval": request.interval_s,
    }
    parts = [
        "level = {level:String}",
        f"bucket >= {start}(fromUnixTimestamp64Nano({{since:Int64}}, 'UTC'))",
        "bucket < fromUnixTimestamp64Nano({until:Int64}, 'UTC')",
    ]
    if request.kind != "all":
        parts.append("kind = {kind:String}")
        params["kind"] = request.kind
    if level == "user":
        # Thousands of users make thousands of series: the top ones by tokens, a cheap
        # sum over the rollup (no latency digest merged).
        parts.append(
            "user_id IN (SELECT user_id FROM usage_rollup WHERE "
            + " AND ".join(parts)
            + " GROUP BY user_id ORDER BY sum(total_tokens) DESC, user_id LIMIT {top:UInt32})"
        )
        params["top"] = request.top
    for i, term in enumerate(parsed.terms):
        name = f"r{i}"
        params[name] = term.value
        sql = _ROLLUP_FILTER[term.key].format(p=name)
        parts.append(f"NOT ({sql})" if term.negated else sql)
    sql = f"""
SELECT toUnixTimestamp(toStartOfInterval(bucket, toIntervalSecond({{interval:UInt32}}), 'UTC'))
        AS t, {group} AS g,{_SUMS},
    quantilesTDigestArrayMerge(0.5, 0.95, 0.99)(latency) AS latency
FROM usage_rollup
WHERE {" AND ".join(parts)}
GROUP BY t, g
HAVING traces != 0 OR llm_calls != 0
ORDER BY t, g"""
    return store.select(sql, params)


def _matching(condition: str) -> str:
    """The summaries a request covers, narrowed in a subquery of their own: a ``where`` that
    names a column which is also an aggregate's name in the outer query (``llm_calls``,
    ``total_tokens``...) then means the column."""
    return f"SELECT * FROM trace_summaries FINAL WHERE {condition}"


def _from_traces(store: Store, request: UsageRequest) -> list[dict[str, Any]]:
    where = conditions(
        store, request.window, kind=request.kind, filter=request.filter, where=request.where
    )
    bucket = (
        "toUnixTimestamp(toStartOfInterval(start_time, toIntervalSecond({interval:UInt32}), "
        "'UTC')) AS t"
    )
    params = {**where.params, "interval": request.interval_s}
    if request.group_by in ("model", "provider"):
        column = "c.model" if request.group_by == "model" else "c.provider"
        matching = _matching(where.sql)
        sql = f"""
SELECT {bucket}, {column} AS g, sum(c.first) AS traces, count() AS llm_calls,
    sum(c.input_tokens) AS input_tokens, sum(c.output_tokens) AS output_tokens,
    sum(c.total_tokens) AS total_tokens, sum(ifNull(c.cost_usd, 0)) AS cost_known_usd,
    countIf(c.cost_usd IS NULL) AS unpriced_calls, sum(c.first AND status = 'error') AS errors,
    quantilesTDigest(0.5, 0.95, 0.99)(c.duration_ms) AS latency
FROM ({matching}) ARRAY JOIN calls AS c
GROUP BY t, g ORDER BY t, g"""
    else:
        column = {"service": "service_name", "user": "user_id"}.get(request.group_by, "''")
        if request.group_by == "user":
            where.parts.append(
                "user_id IN (SELECT user_id FROM trace_summaries FINAL WHERE "
                + where.sql
                + " GROUP BY user_id ORDER BY sum(total_tokens) DESC, user_id "
                "LIMIT {top:UInt32})"
            )
            params["top"] = request.top
        matching = _matching(where.sql)
        sql = f"""
SELECT {bucket}, {column} AS g, count() AS traces, sum(llm_calls) AS llm_calls,
    sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    sum(total_tokens) AS total_tokens, sum(cost_known_usd) AS cost_known_usd,
    sum(arrayCount(c -> c IS NULL, calls.cost_usd)) AS unpriced_calls,
    countIf(status = 'error') AS errors,
    quantilesTDigestArray(0.5, 0.95, 0.99)(calls.duration_ms) AS latency
FROM ({matching})
GROUP BY t, g ORDER BY t, g"""
    return store.select(sql, params)


def _score_means(store: Store, request: UsageRequest) -> dict[tuple[int, str], dict[str, float]]:
    """(bucket, group) -> score name -> mean: the latest score of each trace, bucketed by the
    trace's start like every other column. Reads the scores stored since the window began
    (the ``created_at`` skip index) and, of the window's traces, only those scored."""
    where = conditions(
        store, request.window, kind=request.kind, filter=request.filter, where=request.where
    )
    if request.group_by in ("model", "provider"):
        column = "model" if request.group_by == "model" else "provider"
        group = f"arrayJoin(arrayDistinct(calls.{column}))"
    else:
        group = {"service": "service_name", "user": "user_id"}.get(request.group_by, "''")
    scored = """
        SELECT trace_id, name, argMax(value, created_at) AS value,
               argMax(error, created_at) AS error
        FROM scores
        WHERE created_at >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') AND trace_id != ''
        GROUP BY trace_id, name"""
    sql = f"""
WITH scored AS ({scored})
SELECT toUnixTimestamp(toStartOfInterval(m.start_time, toIntervalSecond({{interval:UInt32}}),
        'UTC')) AS t, m.g AS g, s.name AS name, avg(s.value) AS mean
FROM scored AS s
INNER JOIN (
    SELECT trace_id, start_time, {group} AS g
    FROM ({_matching(where.sql)})
    WHERE trace_id IN (SELECT trace_id FROM scored)
) AS m ON m.trace_id = s.trace_id
WHERE s.error = '' AND s.value IS NOT NULL
GROUP BY t, g, name
ORDER BY t, g, name"""
    found: dict[tuple[int, str], dict[str, float]] = {}
    for row in store.select(sql, {**where.params, "interval": request.interval_s}):
        found.setdefault((int(row["t"]), row["g"]), {})[row["name"]] = float(row["mean"])
    return found
