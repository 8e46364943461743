"""Results in TrainLoop's JSON layout, for users migrating from it.

An experiment is a *suite*, each score a *metric*: ``passed`` counts rows whose score is at
least the pass threshold, ``total`` the rows with that score, ``score`` is ``passed / total``,
and ``details`` lists the rows (event id = trace id, input, output, verdict = the scorer's
explanation). When scorers failed, the answer is TrainLoop's error layout: ``status``,
``error`` and the suites as ``partial_results``. Benchmarks become TrainLoop's benchmark
layout with ``cost_analysis`` per provider and a ``comparison``.

Field lists (TrainLoop's docs, data-formats/results.md): :data:`RESULT_FIELDS` and friends.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import (
    PASS_THRESHOLD,
    ExperimentRef,
    Param,
    PassThreshold,
)
from evalhouse.evaluators.results._sql import clean, iso, json_value, query, rows_sql

__all__ = [
    "BENCHMARK_FIELDS",
    "DETAIL_FIELDS",
    "ERROR_FIELDS",
    "METRIC_FIELDS",
    "RESULT_FIELDS",
    "SUITE_FIELDS",
    "SUMMARY_FIELDS",
    "trainloop_benchmark",
    "trainloop_document",
    "trainloop_results",
]

RESULT_FIELDS = ("timestamp", "duration", "total_events", "suites", "summary", "configuration")
SUITE_FIELDS = ("events_processed", "metrics", "overall_score", "tags", "duration")
METRIC_FIELDS = ("passed", "total", "score", "details")
DETAIL_FIELDS = ("event_id", "passed", "input", "output", "verdict", "metadata")
SUMMARY_FIELDS = (
    "total_suites",
    "overall_score",
    "total_metrics",
    "total_passed",
    "total_evaluated",
    "pass_rate",
)
ERROR_FIELDS = ("timestamp", "duration", "status", "error", "partial_results")
BENCHMARK_FIELDS = ("timestamp", "type", "providers", "total_samples", "results", "comparison")

_ROWS = """
SELECT
    r.trace_id AS trace_id, r.row_id AS row_id, r.input AS input, r.output AS output,
    r.metadata AS metadata, r.scores AS scores, r.score_errors AS score_errors,
    e.explanations AS explanations
FROM ({rows}) AS r
LEFT JOIN (
    SELECT trace_id, CAST(mapFromArrays(groupArray(name), groupArray(explanation)),
        'Map(String, String)') AS explanations
    FROM (
        SELECT trace_id, name, argMax(explanation, created_at) AS explanation
        FROM scores FINAL
        WHERE experiment_id IN {{ids:Array(String)}}
        GROUP BY trace_id, name
    )
    GROUP BY trace_id
) AS e ON e.trace_id = r.trace_id
ORDER BY r.started_at, r.row_id, r.trial, r.trace_id
"""

_SPAN = """
SELECT
    min(started_at) AS started,
    (max(toUnixTimestamp64Milli(started_at) + task_duration_ms)
        - min(toUnixTimestamp64Milli(started_at))) / 1000 AS duration
FROM ({rows})
"""


def _suite_metrics(
    rows: list[dict[str, Any]], threshold: float, with_details: bool
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str, str]]]:
    metrics: dict[str, dict[str, Any]] = {}
    failures: list[tuple[str, str, str, str]] = []
    for row in rows:
        metadata = json_value(row["metadata"])
        for name, value in row["scores"].items():
            metric = metrics.setdefault(
                name, {"passed": 0, "total": 0, "score": None, "details": [], "_sum": 0.0}
            )
            passed = value >= threshold
            metric["total"] += 1
            metric["passed"] += int(passed)
            metric["_sum"] += value
            if with_details:
                explanation = (row["explanations"] or {}).get(name, "")
                metric["details"].append(
                    {
                        "event_id": row["trace_id"],
                        "passed": passed,
                        "input": json_value(row["input"]),
                        "output": json_value(row["output"]),
                        "verdict": explanation or f"{name} = {value:.4g}",
                        "metadata": metadata if isinstance(metadata, dict) else {},
                    }
                )
        for name, message in row["score_errors"].items():
            metrics.setdefault(
                name, {"passed": 0, "total": 0, "score": None, "details": [], "_sum": 0.0}
            )
            failures.append((name, row["trace_id"], row["row_id"], message))
    for metric in metrics.values():
        total = metric["total"]
        metric["score"] = metric["passed"] / total if total else None
        metric["mean_score"] = metric.pop("_sum") / total if total else None
    return dict(sorted(metrics.items())), failures


def trainloop_results(
    results: Context,
    experiment: ExperimentRef,
    *,
    pass_threshold: PassThreshold = PASS_THRESHOLD,
    details: Annotated[bool, Param("Include per-row details.")] = True,
) -> dict[str, Any]:
    """One experiment as a TrainLoop results file (the error layout when scorers failed).

    >>> trainloop_results(Results(store), "summaries-v2")["summary"]["pass_rate"]
    ... # doctest: +SKIP
    0.9
    """
    store = results.store
    run = resolve_experiment(store, experiment)
    parameters = {"ids": [run.id]}
    source = rows_sql(store, results.aggregates)
    rows = query(store, _ROWS.format(rows=source), parameters)
    span = query(store, _SPAN.format(rows=source), parameters)[0]
    return trainloop_document(
        run.name or run.id,
        rows,
        timestamp=iso(run.created_at) or "",
        duration=clean(span["duration"]) or 0.0,
        tags=[run.dataset] if run.dataset else [],
        configuration={
            "experiment_id": run.id,
            "dataset": run.dataset or None,
            "pass_threshold": pass_threshold,
        },
        pass_threshold=pass_threshold,
        details=details,
    )


def trainloop_document(
    suite_name: str,
    rows: list[dict[str, Any]],
    *,
    timestamp: str,
    duration: float,
    tags: list[str],
    configuration: Mapping[str, Any],
    pass_threshold: float = PASS_THRESHOLD,
    details: bool = True,
) -> dict[str, Any]:
    """One suite in TrainLoop's results layout (the error layout when scorers failed), from
    rows of ``trace_id`` (the event id), ``row_id``, ``input``, ``output``, ``metadata`` (JSON
    texts), ``scores`` (name -> value), ``score_errors`` (name -> message) and
    ``explanations`` (name -> the scorer's explanation): an experiment's rows, or a rule's
    targets (``evalhouse rules export``).

    >>> trainloop_document("s", [], timestamp="t", duration=0.0, tags=[],
    ...                    configuration={})["summary"]["total_suites"]
    1
    """
    metrics, failures = _suite_metrics(rows, pass_threshold, details)
    scored = [m["score"] for m in metrics.values() if m["score"] is not None]
    overall = sum(scored) / len(scored) if scored else None
    suite: dict[str, Any] = {
        "events_processed": len(rows),
        "metrics": metrics,
        "overall_score": overall,
        "tags": tags,
        "duration": duration,
    }
    passed = sum(m["passed"] for m in metrics.values())
    evaluated = sum(m["total"] for m in metrics.values())
    summary = {
        "total_suites": 1,
        "overall_score": overall,
        "total_metrics": len(metrics),
        "total_passed": passed,
        "total_evaluated": evaluated,
        "pass_rate": passed / evaluated if evaluated else None,
    }
    if failures:
        metric, trace_id, row_id, message = failures[0]
        suite["status"] = "failed"
        suite["error"] = f"{len(failures)} scorer errors"
        return {
            "timestamp": timestamp,
            "duration": duration,
            "status": "error",
            "error": {
                "type": "ScorerError",
                "message": f"{len(failures)} scorer errors; first: metric {metric!r} failed on "
                f"row {row_id!r}: {message}",
                "details": {
                    "metric": metric,
                    "suite": suite_name,
                    "event_id": trace_id,
                    "errors": len(failures),
                },
            },
            "partial_results": {"suites": {suite_name: suite}, "summary": summary},
        }
    return {
        "timestamp": timestamp,
        "duration": duration,
        "total_events": len(rows),
        "suites": {suite_name: suite},
        "summary": summary,
        "configuration": dict(configuration),
    }


def trainloop_benchmark(body: Mapping[str, Any]) -> dict[str, Any]:
    """A :func:`benchmark` answer in TrainLoop's benchmark layout."""
    results = {}
    for group in body["groups"]:
        key = str(group["key"])
        metrics = {
            name: {
                "passed": counts["passed"],
                "total": counts["total"],
                "score": counts["passed"] / counts["total"] if counts["total"] else None,
            }
            for name, counts in group["pass_counts"].items()
        }
        passed = sum(counts["passed"] for counts in group["pass_counts"].values())
        cost = group["cost_total_usd"]
        tokens = group["total_tokens"]
        duration = group["avg_task_duration_ms"]
        results[key] = {
            "metrics": metrics,
            "overall_score": group["score"],
            "cost_analysis": {
                "total_cost": cost,
                "cost_per_token": cost / tokens if cost is not None and tokens else None,
                "cost_per_score": cost / passed if cost is not None and passed else None,
            },
            "performance": {
                "avg_response_time": duration / 1000 if duration is not None else None,
                "total_tokens": tokens,
            },
        }
    savings = body["cost_savings"]
    return {
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "type": "benchmark",
        "providers": [str(group["key"]) for group in body["groups"]],
        "total_samples": max((group["rows"] for group in body["groups"]), default=0),
        "results": results,
        "comparison": {
            "best_overall": body["best_overall"],
            "best_value": body["best_value"],
            "cost_savings": savings["fraction"] if savings else None,
        },
    }
