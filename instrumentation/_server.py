"""What the server knows about an experiment: metrics and the baseline's scores.

Read through ``POST /api/sql`` (read-only SQL) on the ``experiment_rows`` and ``experiments``
views, which the evaluator daemon fills a few seconds after the spans arrive. Nothing here
fails a run: an absent API, missing views or a slow daemon become a status and a message.
The API takes no query parameters, so the two values interpolated (an experiment id and a
name) are quoted as ClickHouse string literals, and the query runs read-only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._api_client import ApiClient, ApiError, ApiUnreachable
from evalhouse.instrumentation._results import (
    BaselineComparison,
    ScoreComparison,
    ScorerSummary,
    ServerSummary,
)

_POLL_SECONDS = 0.5


def literal(value: str) -> str:
    """``value`` as a ClickHouse string literal.

    >>> literal("it's")
    "'it\\\\'s'"
    """
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _select(client: ApiClient, query: str) -> list[dict[str, Any]]:
    answer = client.post("/api/sql", {"query": query, "format": "JSON"})
    data = answer.get("data") if isinstance(answer, dict) else None
    return [row for row in data if isinstance(row, dict)] if isinstance(data, list) else []


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    number = _float(value)
    return 0 if number is None else int(number)


def _why(exc: EvalhouseError) -> str:
    if isinstance(exc, ApiError) and "experiment" in str(exc).lower():
        return (
            f"the server has no experiment views yet ({exc}); "
            "update evalhouse on the server and run 'evalhouse migrate'"
        )
    return str(exc)


def _summary_query(experiment_id: str) -> str:
    # Aliases differ from the column names: ClickHouse would resolve a column to its alias.
    return f"""SELECT count() AS found_rows,
       countIf(ifNull(error, '') != '') AS found_errored,
       avg(task_duration_ms) AS avg_task_ms,
       quantile(0.95)(task_duration_ms) AS p95_task_ms,
       sum(llm_duration_ms) AS llm_ms,
       sum(input_tokens) AS tokens_in,
       sum(output_tokens) AS tokens_out,
       sum(total_tokens) AS tokens_total,
       sum(ifNull(cost_usd, 0)) AS known_cost,
       countIf(cost_usd IS NULL) AS unpriced_rows,
       arraySort(groupUniqArray(toString(cost_provenance))) AS provenance,
       sum(ifNull(judge_cost_usd, 0)) AS judge_cost,
       avgMap(scores) AS score_means
FROM experiment_rows WHERE experiment_id = {literal(experiment_id)}"""


def fetch_summary(
    client: ApiClient, experiment_id: str, expected_rows: int, wait_seconds: float
) -> ServerSummary:
    """Poll until the server has every row (or ``wait_seconds`` pass); never raises."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            found = _select(client, _summary_query(experiment_id))
        except ApiUnreachable as exc:
            return ServerSummary("unavailable", str(exc))
        except EvalhouseError as exc:
            return ServerSummary("unavailable", _why(exc))
        row = found[0] if found else {}
        rows = _int(row.get("found_rows"))
        if rows >= expected_rows:
            return _ready(row)
        if time.monotonic() >= deadline:
            return ServerSummary(
                "pending",
                f"the server had {rows} of {expected_rows} rows after {wait_seconds:g} s; "
                f"see them later with: evalhouse experiments show {experiment_id}",
                rows=rows,
            )
        time.sleep(_POLL_SECONDS)


def _ready(row: Mapping[str, Any]) -> ServerSummary:
    provenance = row.get("provenance")
    means = row.get("score_means")
    unpriced = _int(row.get("unpriced_rows"))
    return ServerSummary(
        "ready",
        rows=_int(row.get("found_rows")),
        errored_rows=_int(row.get("found_errored")),
        avg_task_duration_ms=_float(row.get("avg_task_ms")),
        p95_task_duration_ms=_float(row.get("p95_task_ms")),
        llm_duration_ms=_float(row.get("llm_ms")),
        input_tokens=_int(row.get("tokens_in")),
        output_tokens=_int(row.get("tokens_out")),
        total_tokens=_int(row.get("tokens_total")),
        cost_usd=None if unpriced else _float(row.get("known_cost")),
        unpriced_rows=unpriced,
        cost_provenance=tuple(p for p in provenance if p) if isinstance(provenance, list) else (),
        judge_cost_usd=_float(row.get("judge_cost")),
        scores={
            str(name): value
            for name, raw in (means.items() if isinstance(means, dict) else ())
            if (value := _float(raw)) is not None
        },
    )


def compare_baseline(
    client: ApiClient,
    baseline: str,
    experiment_id: str,
    summaries: Mapping[str, ScorerSummary],
) -> BaselineComparison:
    """This run's score means against the latest earlier experiment named ``baseline``."""
    query = f"""SELECT experiment_id, scores FROM experiments
WHERE experiment_name = {literal(baseline)} AND experiment_id != {literal(experiment_id)}
ORDER BY created_at DESC LIMIT 1"""
    try:
        found = _select(client, query)
    except EvalhouseError as exc:
        return BaselineComparison(baseline, "unavailable", f"cannot compare: {_why(exc)}")
    if not found:
        return BaselineComparison(
            baseline, "not_found", f"no earlier experiment named {baseline!r} on the server"
        )
    means = found[0].get("scores") or {}
    if not isinstance(means, dict):
        means = {}
    compared = tuple(
        ScoreComparison(name, summary.mean, _float(means.get(name)))
        for name, summary in summaries.items()
    )
    return BaselineComparison(
        baseline, "compared", experiment_id=str(found[0].get("experiment_id")), scores=compared
    )
