"""Benchmark view: experiments sharing a dataset, grouped by a field such as the model.

Per group: the score (the mean of the chosen score, or the mean of every score's mean), total
and per-row cost, mean task latency and tokens. ``best_overall`` has the highest score;
``best_value`` the most score per dollar (score / cost per row); ``cost_savings`` is what the
best value saves per row against the best overall, and the score it gives up.

Every cost says where it comes from (``cost_provenance``: rows per provided / inferred /
unknown..., ``price_data_version``), and an unknown cost says why (``cost_missing``: the
models with no price).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from evalhouse.errors import ExperimentNotFound
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import PASS_THRESHOLD, Param, PassThreshold
from evalhouse.evaluators.results._sql import clean, group_expression, query, rows_sql
from evalhouse.evaluators.results._summary import PROVENANCES
from evalhouse.evaluators.results._trainloop import trainloop_benchmark
from evalhouse.evaluators.results._unpriced import unknown_cost_reason
from evalhouse.store import Store

__all__ = ["benchmark"]

_GROUPS = """
SELECT
    {group} AS key,
    arraySort(groupUniqArray(experiment_id)) AS experiment_ids,
    count() AS rows,
    avgMap(scores) AS means,
    countMap(scores) AS scored,
    sumMap(mapApply((k, v) -> (k, toUInt64(v >= {{threshold:Float64}})), scores)) AS passed,
    if(countIf(cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(cost_usd))) AS cost_total_usd,
    countIf(cost_usd IS NULL) AS cost_unknown_rows,
    {provenance},
    arrayStringConcat(arraySort(groupUniqArrayIf(price_data_version, price_data_version != '')),
        ', ') AS price_data_version,
    avg(task_duration_ms) AS avg_task_duration_ms,
    sum(total_tokens) AS total_tokens
FROM ({rows})
GROUP BY key
ORDER BY key
"""


_PROVENANCE = ", ".join(f"countIf(cost_provenance = '{p}') AS `prov.{p}`" for p in PROVENANCES)


def _group(store: Store, row: Mapping[str, Any], score: str | None) -> dict[str, Any]:
    means = {k: clean(v) for k, v in sorted(row["means"].items())}
    known = [v for v in means.values() if v is not None]
    value = means.get(score) if score else (sum(known) / len(known) if known else None)
    rows = int(row["rows"])
    total = clean(row["cost_total_usd"])
    per_row = total / rows if total is not None and rows else None
    return {
        "key": row["key"] or None,
        "experiments": len(row["experiment_ids"]),
        "experiment_ids": list(row["experiment_ids"]),
        "rows": rows,
        "score": value,
        "scores": means,
        "pass_counts": {
            name: {"passed": int(row["passed"].get(name, 0)), "total": int(count)}
            for name, count in sorted(row["scored"].items())
        },
        "cost_total_usd": total,
        "cost_per_row_usd": per_row,
        "cost_unknown_rows": int(row["cost_unknown_rows"]),
        "cost_missing": None
        if total is not None
        else unknown_cost_reason(store, list(row["experiment_ids"])),
        "cost_provenance": {p: int(row[f"prov.{p}"]) for p in PROVENANCES},
        "price_data_version": row["price_data_version"] or None,
        "score_per_usd": None
        if value is None or per_row is None or per_row == 0
        else value / per_row,
        "avg_task_duration_ms": clean(row["avg_task_duration_ms"]),
        "total_tokens": int(row["total_tokens"]),
    }


def _value(group: Mapping[str, Any]) -> float:
    """Score per dollar per row; free (cost 0) scoring groups come first, unknown cost last."""
    score, per_row = group["score"], group["cost_per_row_usd"]
    if score is None or per_row is None:
        return -math.inf
    if per_row == 0:
        return math.inf if score > 0 else -math.inf
    return float(score / per_row)


def _savings(groups: Sequence[Mapping[str, Any]], best: Any, value: Any) -> dict[str, Any] | None:
    if best is None or value is None or best == value:
        return None
    overall = next(g for g in groups if g["key"] == best)
    cheap = next(g for g in groups if g["key"] == value)
    a, b = overall["cost_per_row_usd"], cheap["cost_per_row_usd"]
    if a is None or b is None:
        return None
    return {
        "best_overall": best,
        "best_value": value,
        "per_row_usd": a - b,
        "total_usd": (a - b) * cheap["rows"],
        "fraction": (a - b) / a if a else None,
        "score_difference": None
        if cheap["score"] is None or overall["score"] is None
        else cheap["score"] - overall["score"],
    }


def benchmark(
    results: Context,
    *,
    dataset: Annotated[str, Param("Dataset name.")],
    by: Annotated[str, Param("metadata.<key>, experiment or trial.")] = "metadata.model",
    score: Annotated[str | None, Param("Score to rank by (default: mean of all scores).")] = None,
    pass_threshold: PassThreshold = PASS_THRESHOLD,
    layout: Annotated[
        str, Param("evalhouse or trainloop.", choices=("evalhouse", "trainloop"))
    ] = "evalhouse",
) -> dict[str, Any]:
    """``{"groups": [...], "best_overall", "best_value", "cost_savings"}`` for ``dataset``;
    ``layout="trainloop"`` gives TrainLoop's benchmark layout instead.

    ``by`` is ``metadata.<key>`` (experiment metadata first, then row metadata),
    ``experiment`` or ``trial``.

    >>> benchmark(Results(store), dataset="qa", by="metadata.model")["best_value"]
    ... # doctest: +SKIP
    'gpt-4o-mini'
    """
    store = results.store
    ids = [
        row["experiment_id"]
        for row in query(
            store,
            "SELECT DISTINCT experiment_id FROM experiment_row_metrics FINAL "
            "WHERE dataset_name = {dataset:String}",
            {"dataset": dataset},
        )
    ]
    if not ids:
        raise ExperimentNotFound(
            dataset,
            f"no experiment ran on dataset {dataset!r}; list datasets with experiments with "
            "'evalhouse experiments list' (the dataset column)",
        )
    group, extra = group_expression(by, experiment_first=True)
    rows = query(
        store,
        _GROUPS.format(
            group=group, rows=rows_sql(store, results.aggregates), provenance=_PROVENANCE
        ),
        {"ids": ids, "threshold": pass_threshold, **extra},
    )
    groups = [_group(store, row, score) for row in rows]
    scored = [g for g in groups if g["score"] is not None]
    best = max(scored, key=lambda g: (g["score"], -(g["cost_per_row_usd"] or 0)), default=None)
    valued = [g for g in scored if _value(g) > -math.inf]
    value = max(valued, key=lambda g: (_value(g), g["score"]), default=None)
    best_key = best["key"] if best else None
    value_key = value["key"] if value else None
    body = {
        "dataset": dataset,
        "by": by,
        "score": score,
        "groups": groups,
        "best_overall": best_key,
        "best_value": value_key,
        "cost_savings": _savings(groups, best_key, value_key),
    }
    return trainloop_benchmark(body) if layout == "trainloop" else body
