"""One page of an experiment's rows: sorted, searched, filtered by SQL, errors only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import ExperimentRef, Param, Where
from evalhouse.evaluators.results._sql import clean, json_value, query, row_source, rows_sql

__all__ = ["ROW_FIELDS", "SORTABLE", "row_json", "rows_page"]

# The fields of each row in the answer (and, with score:<name>, its "columns").
ROW_FIELDS = (
    "trace_id",
    "row_id",
    "trial",
    "input",
    "expected",
    "output",
    "metadata",
    "error",
    "scores",
    "score_errors",
    "task_duration_ms",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cost_usd",
    "cost_provenance",
)
# Columns of experiment_rows a page can be sorted by (checked against this list, never pasted).
SORTABLE = frozenset(
    {
        "row_id",
        "trial",
        "trace_id",
        "started_at",
        "input",
        "expected",
        "output",
        "error",
        "task_duration_ms",
        "offset_ms",
        "llm_duration_ms",
        "ttft_ms",
        "llm_calls",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
        "cost_provenance",
        "judge_cost_usd",
        "judge_duration_ms",
        "span_count",
    }
)
# Equal sort values keep the experiment's order.
_TIES = "started_at, row_id, trial, trace_id"
ERROR_FILTERS = {"only": "error != ''", "scorer_errors": "length(score_errors) > 0"}


def row_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of ``experiment_rows`` as the API shows it: JSON attributes decoded."""
    metadata = json_value(row["metadata"])
    return {
        "trace_id": row["trace_id"],
        "row_id": row["row_id"],
        "trial": int(row["trial"]),
        "input": json_value(row["input"]),
        "expected": json_value(row["expected"]),
        "output": json_value(row["output"]),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "error": row["error"] or None,
        "scores": {k: clean(v) for k, v in sorted(row["scores"].items())},
        "score_errors": dict(sorted(row["score_errors"].items())),
        "task_duration_ms": clean(row["task_duration_ms"]),
        "total_tokens": int(row["total_tokens"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cost_usd": clean(row["cost_usd"]),
        "cost_provenance": row["cost_provenance"],
    }


def _order(sort: str | None, order: str, parameters: dict[str, Any]) -> str:
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order={order!r}: use asc or desc")
    direction = order.upper()
    if sort is None or sort == "":
        return f"started_at {direction}, row_id {direction}, trial {direction}, trace_id"
    if sort.startswith("score:") and len(sort) > len("score:"):
        parameters["sort_score"] = sort.removeprefix("score:")
        # Rows without the score come last whichever way the values go.
        return (
            "mapContains(scores, {sort_score:String}) DESC, "
            f"scores[{{sort_score:String}}] {direction}, {_TIES}"
        )
    if sort not in SORTABLE:
        raise InvalidRequest(
            f"cannot sort by {sort!r}; use score:<name> or one of: {', '.join(sorted(SORTABLE))}"
        )
    return f"{sort} {direction}, {_TIES}"


def rows_page(
    results: Context,
    experiment: ExperimentRef,
    *,
    limit: Annotated[int, Param("Page size.", low=1, high=10_000)] = 100,
    offset: Annotated[int, Param("Rows to skip.", low=0, high=2**62)] = 0,
    sort: Annotated[str | None, Param("A column (task_duration_ms, ...) or score:<name>.")] = None,
    order: Annotated[str, Param("asc or desc.", choices=("asc", "desc"))] = "asc",
    q: Annotated[str | None, Param("Text searched in input, expected, output and error.")] = None,
    where: Where = None,
    errors: Annotated[
        str | None,
        Param(
            "only: rows with a task error; scorer_errors: rows with a scorer error.",
            choices=("only", "scorer_errors"),
        ),
    ] = None,
) -> dict[str, Any]:
    """``{"rows": [...], "total": N, "columns": [...]}``: ``limit`` rows from ``offset``.

    ``q`` searches input, expected, output and error (case-insensitive); ``where`` is a SQL boolean
    over experiment_rows columns; ``errors`` is ``only`` (task errors) or ``scorer_errors``.

    >>> rows_page(Results(store), "exp-1", sort="score:accuracy", limit=5)["total"]
    ... # doctest: +SKIP
    200
    """
    store, aggregates = results.store, results.aggregates
    run = resolve_experiment(store, experiment)
    parameters: dict[str, Any] = {"ids": [run.id], "limit": limit, "offset": offset}
    conditions = ["1"]
    if q:
        parameters["q"] = q
        conditions.append(
            "(positionCaseInsensitiveUTF8(input, {q:String}) > 0 "
            "OR positionCaseInsensitiveUTF8(expected, {q:String}) > 0 "
            "OR positionCaseInsensitiveUTF8(output, {q:String}) > 0 "
            "OR positionCaseInsensitiveUTF8(error, {q:String}) > 0)"
        )
    if errors:
        if errors not in ERROR_FILTERS:
            raise InvalidRequest(f"errors={errors!r}: use only or scorer_errors")
        conditions.append(ERROR_FILTERS[errors])
    order_by = _order(sort, order, parameters)
    rows_of = rows_sql(store, aggregates, where)
    source = f"SELECT * FROM ({rows_of}) WHERE {' AND '.join(conditions)}"
    rows = query(
        store,
        f"SELECT {', '.join(ROW_FIELDS)} FROM ({source}) ORDER BY {order_by} "
        "LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        parameters,
    )
    total = query(store, f"SELECT count() AS n FROM ({source})", parameters)[0]["n"]
    names = query(
        store,
        f"SELECT arraySort(groupUniqArrayArray(mapKeys(scores))) AS names "
        f"FROM ({row_source(aggregates)})",
        {"ids": [run.id]},
    )[0]["names"]
    return {
        "rows": [row_json(row) for row in rows],
        "total": int(total),
        "columns": [*ROW_FIELDS, *(f"score:{name}" for name in names)],
    }
