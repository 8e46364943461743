"""SQL plumbing shared by the results modules: the read-only runner, the row source, values.

Every results query is a SELECT, so all of them run on the store's read-only sessions
(``readonly=1``, time and memory limits): a user's filter or key expression cannot write,
whatever it says.
Values are bound server-side (``{name:Type}`` placeholders), never formatted into the text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from evalhouse.config import AggregateScore
from evalhouse.errors import InvalidRequest
from evalhouse.evaluators.results._aggregate import aggregate_columns
from evalhouse.evaluators.results._filters import check_expression
from evalhouse.store import Store

__all__ = [
    "GROUPS",
    "METRICS",
    "clean",
    "group_expression",
    "iso",
    "json_value",
    "query",
    "raw_query",
    "row_source",
    "rows_sql",
]

# Per-row metrics summarised and compared; all of them are "lower is better".
METRICS: tuple[str, ...] = (
    "task_duration_ms",
    "llm_duration_ms",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
)


def query(store: Store, sql: str, parameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of a read-only query, as dicts (a read-only session, under the SQL limits)."""
    return store.select(sql, dict(parameters))


def raw_query(store: Store, sql: str, parameters: Mapping[str, Any], fmt: str) -> bytes:
    """ClickHouse's own output of a read-only query in format ``fmt``."""
    return store.select_raw(sql, dict(parameters), fmt)


def row_source(aggregates: Mapping[str, AggregateScore], ids: str = "ids") -> str:
    """``experiment_rows`` of the experiments in parameter ``{ids:Array(String)}``, with the
    aggregate scores folded into ``scores`` / ``score_errors`` and the ``input_key`` column
    (stored with each row by migration 8; ClickHouse drops the join when it is not used)."""
    scores, errors = aggregate_columns(aggregates)
    replace = f" REPLACE ({scores} AS scores, {errors} AS score_errors)" if aggregates else ""
    within = f"experiment_id IN {{{ids}:Array(String)}}"
    return (
        f"SELECT *{replace} FROM (SELECT * FROM experiment_rows WHERE {within}) AS r "
        "LEFT JOIN (SELECT trace_id, input_key FROM experiment_row_metrics FINAL "
        f"WHERE {within}) AS k USING (trace_id)"
    )


def clean(value: Any) -> Any:
    """A number fit for JSON: NaN and infinities (an empty avg, a stddev of one) become None."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    return value


def iso(value: Any) -> str | None:
    """A ClickHouse DateTime as ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    if not isinstance(value, datetime):
        return None
    moment: datetime = value.astimezone(UTC) if value.tzinfo is not None else value
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_value(text: Any) -> Any:
    """A wire-contract JSON attribute as its value; text that is not JSON stays text."""
    if not isinstance(text, str) or text == "":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _metadata_value(column: str, param: str) -> str:
    key = f"{{{param}:String}}"
    return (
        f"if(JSONType({column}, {key}) = 'String', JSONExtractString({column}, {key}), "
        f"JSONExtractRaw({column}, {key}))"
    )


GROUPS = "dataset, experiment, trial, metadata.<key>"


def group_expression(
    by: str, param: str = "group_key", *, experiment_first: bool = False
) -> tuple[str, dict[str, Any]]:
    """SQL (and its parameters) of a grouping field: ``dataset``, ``experiment`` (name),
    ``trial`` or ``metadata.<key>``: the row's metadata, else the experiment's (the other way
    round with ``experiment_first``); '' when absent."""
    if by == "dataset":
        return "dataset_name", {}
    if by == "experiment":
        return "experiment_name", {}
    if by == "trial":
        return "toString(trial)", {}
    if by.startswith("metadata.") and len(by) > len("metadata."):
        row = _metadata_value("metadata", param)
        experiment = _metadata_value("experiment_metadata", param)
        first, then, column = (
            (experiment, row, "experiment_metadata")
            if experiment_first
            else (row, experiment, "metadata")
        )
        sql = f"if(JSONHas({column}, {{{param}:String}}), {first}, {then})"
        return sql, {param: by.removeprefix("metadata.")}
    raise InvalidRequest(f"cannot group by {by!r}; group by one of: {GROUPS}")


def rows_sql(
    store: Store, aggregates: Mapping[str, AggregateScore], where: str | None = None
) -> str:
    """:func:`row_source`, narrowed by a user's ``where`` expression (checked first).

    The filter applies to a subquery that holds only the chosen experiments' rows, so even an
    expression that got past the check could not reach another experiment.
    """
    source = row_source(aggregates)
    if where is None or not where.strip():
        return source
    return f"SELECT * FROM ({source}) WHERE ({check_expression(store, where, 'where')})"
