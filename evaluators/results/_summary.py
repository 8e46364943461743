"""Experiment summaries: the list (with filters), the trend across runs, and one experiment.

Aggregation happens in ClickHouse: a summary of a 10,000-row experiment reads a few dozen
numbers back, never the rows. List items come from the ``experiments`` view, so the API, the
CLI and a user's own SQL show the same numbers; aggregate scores are added to its means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from evalhouse.config import AggregateScore
from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import Alpha, ExperimentRef, Param, Where
from evalhouse.evaluators.results._sql import (
    METRICS,
    clean,
    group_expression,
    iso,
    json_value,
    query,
    row_source,
    rows_sql,
)
from evalhouse.evaluators.results._stats import score_interval
from evalhouse.store import Store

__all__ = ["experiment_items", "list_experiments", "summary", "trend"]

PROVENANCES = ("provided", "inferred", "partly_unknown", "unknown", "none")
# A change in a score's mean smaller than this between two runs is "flat".
TREND_TOLERANCE = 1e-9

_LIST_COLUMNS = """experiment_id, experiment_name, dataset_name, created_at, rows, errored_rows,
    scores, avg_task_duration_ms, p95_task_duration_ms, total_tokens, total_cost_usd, metadata,
    unique_rows, trials"""


def _item(row: Mapping[str, Any]) -> dict[str, Any]:
    metadata = json_value(row["metadata"])
    return {
        "experiment_id": row["experiment_id"],
        "experiment_name": row["experiment_name"],
        "dataset_name": row["dataset_name"],
        "created_at": iso(row["created_at"]),
        "rows": int(row["rows"]),
        "errored_rows": int(row["errored_rows"]),
        "scores": {name: clean(value) for name, value in sorted(row["scores"].items())},
        "avg_task_duration_ms": clean(row["avg_task_duration_ms"]),
        "p95_task_duration_ms": clean(row["p95_task_duration_ms"]),
        "total_tokens": int(row["total_tokens"]),
        "total_cost_usd": clean(row["total_cost_usd"]),
        "metadata": metadata if isinstance(metadata, dict) else {},
        "unique_rows": int(row["unique_rows"]),
        "trials": int(row["trials"]),
    }


def _with_aggregates(
    store: Store, aggregates: Mapping[str, AggregateScore], items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Add the aggregate scores' means (the view knows only stored scores)."""
    if not aggregates or not items:
        return items
    means = query(
        store,
        f"SELECT experiment_id, avgMap(scores) AS scores FROM ({row_source(aggregates)}) "
        "GROUP BY experiment_id",
        {"ids": [item["experiment_id"] for item in items]},
    )
    by_id = {row["experiment_id"]: row["scores"] for row in means}
    for item in items:
        extra = {k: clean(v) for k, v in by_id.get(item["experiment_id"], {}).items()}
        item["scores"] = dict(sorted({**item["scores"], **extra}.items()))
    return items


_PROVENANCE_COUNTS = f"""
SELECT experiment_id, {", ".join(f"countIf(cost_provenance = '{p}') AS `{p}`" for p in PROVENANCES)}
FROM experiment_row_metrics FINAL
WHERE experiment_id IN {{ids:Array(String)}}
GROUP BY experiment_id
"""


def _with_provenance(store: Store, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``cost_provenance`` (rows per provenance) to each item: where its cost comes from."""
    if not items:
        return items
    counts = query(store, _PROVENANCE_COUNTS, {"ids": [item["experiment_id"] for item in items]})
    by_id = {row["experiment_id"]: row for row in counts}
    for item in items:
        row = by_id.get(item["experiment_id"], {})
        item["cost_provenance"] = {p: int(row.get(p, 0)) for p in PROVENANCES}
    return items


def experiment_items(
    store: Store, aggregates: Mapping[str, AggregateScore], ids: Sequence[str]
) -> list[dict[str, Any]]:
    """List items of the given experiments, newest first."""
    rows = query(
        store,
        f"SELECT {_LIST_COLUMNS} FROM experiments WHERE experiment_id IN {{ids:Array(String)}} "
        "ORDER BY created_at DESC, experiment_id DESC",
        {"ids": list(ids)},
    )
    items = _with_aggregates(store, aggregates, [_item(row) for row in rows])
    return _with_provenance(store, items)


def list_experiments(
    results: Context,
    *,
    name: Annotated[str | None, Param("Experiment name.")] = None,
    dataset: Annotated[str | None, Param("Dataset name.")] = None,
    metadata: Annotated[
        Mapping[str, str] | None,
        Param("Experiment metadata value to match, e.g. meta.model=gpt-4o.", prefix="meta."),
    ] = None,
    usable: Annotated[
        bool,
        Param("Only runs that can be a baseline: at least one row whose task did not error."),
    ] = False,
    limit: Annotated[int, Param("Page size.", low=1, high=1000)] = 50,
    offset: Annotated[int, Param("Experiments to skip.", low=0, high=2**62)] = 0,
) -> dict[str, Any]:
    """``{"experiments": [...], "total": N}``, newest first; ``metadata`` matches experiment
    metadata values (compared as text: ``{"model": "gpt-4o"}``, ``{"temperature": "0.2"}``);
    ``usable`` keeps the runs that can be a baseline (not every row errored: the rule of
    :func:`~evalhouse.evaluators.results._resolve.choose_baseline`).

    >>> list_experiments(Results(store), name="summaries", limit=10)    # doctest: +SKIP
    {'experiments': [{'experiment_id': ..., 'scores': {'exact_match': 0.8}, ...}], 'total': 3}
    """
    store, aggregates = results.store, results.aggregates
    where = ["1"]
    parameters: dict[str, Any] = {"limit": limit, "offset": offset}
    if name:
        where.append("experiment_name = {name:String}")
        parameters["name"] = name
    if dataset:
        where.append("dataset_name = {dataset:String}")
        parameters["dataset"] = dataset
    if usable:
        where.append("errored_rows < rows")
    for index, (key, value) in enumerate(sorted((metadata or {}).items())):
        k, v = f"{{mk{index}:String}}", f"{{mv{index}:String}}"
        where.append(
            f"(JSONExtractString(metadata, {k}) = {v} OR JSONExtractRaw(metadata, {k}) = {v})"
        )
        parameters[f"mk{index}"], parameters[f"mv{index}"] = key, value
    rows = query(
        store,
        f"SELECT {_LIST_COLUMNS}, count() OVER () AS total FROM experiments "
        f"WHERE {' AND '.join(where)} ORDER BY created_at DESC, experiment_id DESC "
        "LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
        parameters,
    )
    total = int(rows[0]["total"]) if rows else 0
    if not rows and offset:
        counted = query(
            store, f"SELECT count() AS n FROM experiments WHERE {' AND '.join(where)}", parameters
        )
        total = int(counted[0]["n"])
    items = _with_aggregates(store, aggregates, [_item(row) for row in rows])
    return {"experiments": _with_provenance(store, items), "total": total}


def trend(
    results: Context,
    *,
    name: Annotated[str | None, Param("Experiment name.")] = None,
    dataset: Annotated[str | None, Param("Dataset name (instead of name).")] = None,
    limit: Annotated[int, Param("Latest runs to include.", low=2, high=1000)] = 100,
) -> dict[str, Any]:
    """The last ``limit`` runs of an experiment name (or of a dataset), oldest first, and per
    score the change of its mean from the previous run that has it.

    >>> trend(Results(store), name="summaries")["trend"]             # doctest: +SKIP
    {'exact_match': {'change': 0.05, 'direction': 'improving'}}
    """
    store, aggregates = results.store, results.aggregates
    if bool(name) == bool(dataset):
        raise InvalidRequest("give exactly one of name= (an experiment name) or dataset=")
    column, value = ("experiment_name", name) if name else ("dataset_name", dataset)
    rows = query(
        store,
        f"SELECT * FROM (SELECT {_LIST_COLUMNS} FROM experiments WHERE {column} = {{v:String}} "
        "ORDER BY created_at DESC, experiment_id DESC LIMIT {limit:UInt64}) "
        "ORDER BY created_at, experiment_id",
        {"v": value, "limit": limit},
    )
    items = _with_provenance(
        store, _with_aggregates(store, aggregates, [_item(row) for row in rows])
    )
    runs = [
        {
            "experiment_id": item["experiment_id"],
            "created_at": item["created_at"],
            "scores": item["scores"],
            "avg_task_duration_ms": item["avg_task_duration_ms"],
            "avg_cost_usd": None
            if item["total_cost_usd"] is None or not item["rows"]
            else item["total_cost_usd"] / item["rows"],
            "cost_provenance": item["cost_provenance"],
        }
        for item in items
    ]
    return {"runs": runs, "trend": score_trends(runs)}


def score_trends(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per score: change of the latest mean from the previous run's, and its direction."""
    names = sorted({name for run in runs for name in run["scores"]})
    trends = {}
    for name in names:
        values = [run["scores"][name] for run in runs if run["scores"].get(name) is not None]
        change = values[-1] - values[-2] if len(values) >= 2 else None
        direction = "flat"
        if change is not None and change > TREND_TOLERANCE:
            direction = "improving"
        elif change is not None and change < -TREND_TOLERANCE:
            direction = "declining"
        trends[name] = {"change": change, "direction": direction}
    return trends


# --- one experiment -----------------------------------------------------------------------


def _metric_columns() -> str:
    parts = []
    for metric in METRICS:
        parts.append(f"avg({metric}) AS `{metric}.mean`")
        parts.append(f"quantiles(0.5, 0.95)({metric}) AS `{metric}.q`")
    return ",\n    ".join(parts)


_FIGURES = f"""
SELECT
    {{group}} AS g,
    count() AS rows,
    countIf(error != '') AS errored_rows,
    {_metric_columns()},
    if(countIf(cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(cost_usd))) AS total_usd,
    sum(cost_known_usd) AS known_usd,
    if(countIf(judge_cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(judge_cost_usd)))
        AS judge_usd,
    {", ".join(f"countIf(cost_provenance = '{p}') AS `prov.{p}`" for p in PROVENANCES)},
    arrayStringConcat(arraySort(groupUniqArrayIf(price_data_version, price_data_version != '')),
        ', ') AS price_data_version,
    sum(span_count) - sum(evaluator_spans) AS received,
    sum(orphan_spans) AS orphans,
    sum(late_spans) AS late,
    sum(length(score_errors)) AS scorer_errors
FROM ({{rows}})
GROUP BY g
ORDER BY g
"""

# Values and failures of every score in one pass: (name, value, failed) items.
_SCORES = """
SELECT
    g,
    item.1 AS name,
    countIf(item.3 = 0) AS count,
    avgIf(item.2, item.3 = 0) AS mean,
    stddevSampStableIf(item.2, item.3 = 0) AS stddev,
    countIf(item.3 = 0 AND item.2 NOT IN (0, 1)) AS fractional,
    countIf(item.3 = 1) AS errors
FROM (SELECT {group} AS g, scores, score_errors FROM ({rows}))
ARRAY JOIN arrayConcat(
    arrayMap((k, v) -> (k, v, 0), mapKeys(scores), mapValues(scores)),
    arrayMap(k -> (k, 0., 1), mapKeys(score_errors))) AS item
GROUP BY g, name
ORDER BY g, name
"""


def _metrics(row: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for metric in METRICS:
        q = row[f"{metric}.q"]
        out[metric] = {
            "mean": clean(row[f"{metric}.mean"]),
            "p50": clean(q[0]) if q else None,
            "p95": clean(q[1]) if q else None,
        }
    return out


def _score_stats(rows: Sequence[Mapping[str, Any]], alpha: float) -> dict[str, dict[str, Any]]:
    stats = {}
    for row in rows:
        count, mean = int(row["count"]), clean(row["mean"])
        stddev = clean(row["stddev"]) if count > 1 else None
        pass_fail = int(row["fractional"]) == 0
        interval = score_interval(count, mean, stddev, alpha, pass_fail=pass_fail)
        stats[row["name"]] = {
            "mean": mean if count else None,
            "count": count,
            "errors": int(row["errors"]),
            "stddev": stddev,
            "ci_low": interval.low,
            "ci_high": interval.high,
            "ci_method": interval.method,
        }
    return stats


def _figures(
    store: Store, sql_rows: str, parameters: dict[str, Any], group: str, alpha: float
) -> tuple[list[dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
    figures = query(store, _FIGURES.format(group=group, rows=sql_rows), parameters)
    score_rows = query(store, _SCORES.format(group=group, rows=sql_rows), parameters)
    scores: dict[str, list[dict[str, Any]]] = {}
    for row in score_rows:
        scores.setdefault(row["g"], []).append(row)
    return figures, {g: _score_stats(rows, alpha) for g, rows in scores.items()}


def _empty_figures() -> dict[str, Any]:
    figures: dict[str, Any] = {"rows": 0, "errored_rows": 0, "total_usd": None, "known_usd": 0.0}
    figures.update({f"{m}.mean": None for m in METRICS})
    figures.update({f"{m}.q": [] for m in METRICS})
    figures.update({f"prov.{p}": 0 for p in PROVENANCES})
    figures.update(
        judge_usd=None, price_data_version="", received=0, orphans=0, late=0, scorer_errors=0
    )
    return figures


def summary(
    results: Context,
    experiment: ExperimentRef,
    *,
    group_by: Annotated[str | None, Param("dataset, experiment, trial or metadata.<key>.")] = None,
    where: Where = None,
    alpha: Alpha = None,
) -> dict[str, Any]:
    """Everything about one experiment (id, or name for its latest run): score statistics
    with ``1 - alpha`` intervals across rows (within [0, 1]: Wilson for pass/fail scores, see
    :func:`~evalhouse.evaluators.results._stats.score_interval`), metric means and
    percentiles, cost, span
    accounting and errors; optionally grouped, and over the rows ``where`` selects.

    >>> summary(Results(store), "summaries-v2")["scores"]["exact_match"]  # doctest: +SKIP
    {'mean': 0.8, 'count': 10, 'errors': 0, 'stddev': 0.42, 'ci_low': 0.49, 'ci_high': 0.94,
     'ci_method': 'wilson'}
    """
    store, aggregates = results.store, results.aggregates
    alpha = results.significance(alpha)
    run = resolve_experiment(store, experiment)
    items = experiment_items(store, aggregates, [run.id])
    sql_rows = rows_sql(store, aggregates, where)
    parameters: dict[str, Any] = {"ids": [run.id]}
    figures, scores = _figures(store, sql_rows, parameters, "''", alpha)
    top = figures[0] if figures else _empty_figures()
    rows = int(top["rows"])
    total = clean(top["total_usd"])
    body: dict[str, Any] = {
        "experiment": items[0] if items else None,
        "rows": rows,
        "alpha": alpha,
        "scores": scores.get("", {}),
        "metrics": _metrics(top),
        "cost": {
            "total_usd": total,
            "known_usd": clean(top["known_usd"]),
            "per_row_usd": total / rows if total is not None and rows else None,
            "judge_usd": clean(top["judge_usd"]),
            "provenance": {p: int(top[f"prov.{p}"]) for p in PROVENANCES},
            "price_data_version": top["price_data_version"] or None,
        },
        "spans": {
            "received": int(top["received"]),
            "used": int(top["received"]) - int(top["orphans"]),
            "orphans": int(top["orphans"]),
            "late": int(top["late"]),
        },
        "errors": {"rows": int(top["errored_rows"]), "scorer_errors": int(top["scorer_errors"])},
    }
    if where:
        body["where"] = where.strip()
    if group_by:
        group, extra = group_expression(group_by)
        grouped, grouped_scores = _figures(store, sql_rows, {**parameters, **extra}, group, alpha)
        body["group_by"] = {
            "by": group_by,
            "groups": [
                {
                    "key": row["g"] or None,
                    "rows": int(row["rows"]),
                    "scores": grouped_scores.get(row["g"], {}),
                    "metrics": _metrics(row),
                }
                for row in grouped
            ],
        }
    return body
