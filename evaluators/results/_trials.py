"""Trials: per input, the mean and spread of each score across its trials; flaky inputs.

An input is *flaky* when one of its scores differs between trials by more than a tolerance
(a pass/fail flip is such a difference), or when a scorer failed on some of its trials and
succeeded on others. Inputs are grouped by the comparison key (``input_key``: the hash of the
input's canonical JSON), so trials that carry different row ids still group.
"""

from __future__ import annotations

from typing import Annotated, Any

from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import ExperimentRef, Param, Where
from evalhouse.evaluators.results._sql import clean, json_value, query, rows_sql

__all__ = ["FLAKY_TOLERANCE", "trials"]

FLAKY_TOLERANCE = 1e-9

_TRIALS = """
WITH
    source AS ({rows}),
    per_score AS (
        SELECT
            input_key,
            item.1 AS name,
            countIf(item.3 = 0) AS n,
            avgIf(item.2, item.3 = 0) AS mean,
            stddevSampStableIf(item.2, item.3 = 0) AS sd,
            minIf(item.2, item.3 = 0) AS lo,
            maxIf(item.2, item.3 = 0) AS hi,
            countIf(item.3 = 1) AS errors
        FROM source
        ARRAY JOIN arrayConcat(
            arrayMap((k, v) -> (k, v, 0), mapKeys(scores), mapValues(scores)),
            arrayMap(k -> (k, 0., 1), mapKeys(score_errors))) AS item
        GROUP BY input_key, name
    ),
    per_input AS (
        SELECT input_key, min(row_id) AS row_id, argMin(input, (trial, trace_id)) AS input,
            count() AS trials
        FROM source
        GROUP BY input_key
    ),
    judged AS (
        SELECT
            i.input_key AS input_key,
            any(i.row_id) AS row_id,
            any(i.input) AS input,
            any(i.trials) AS trials,
            groupArrayIf((s.name, s.n, s.mean, s.sd, s.lo, s.hi, s.errors), s.name != '')
                AS scores,
            max(i.trials > 1 AND s.name != ''
                AND ((s.n > 0 AND s.hi - s.lo > {{tolerance:Float64}})
                     OR (s.errors > 0 AND s.n > 0))) AS flaky,
            max(if(s.n > 0, s.hi - s.lo, 0)) AS spread
        FROM per_input AS i
        LEFT JOIN per_score AS s ON s.input_key = i.input_key
        GROUP BY i.input_key
    )
SELECT *, count() OVER () AS total, countIf(flaky) OVER () AS flaky_total
FROM judged
WHERE {{flaky_only:UInt8}} = 0 OR flaky
ORDER BY flaky DESC, spread DESC, row_id, input_key
LIMIT {{limit:UInt64}} OFFSET {{offset:UInt64}}
"""


def _score(item: tuple[Any, ...]) -> dict[str, Any]:
    _, n, mean, sd, lo, hi, errors = item
    return {
        "mean": clean(mean) if n else None,
        "stddev": clean(sd) if n > 1 else None,
        "min": clean(lo) if n else None,
        "max": clean(hi) if n else None,
        "count": int(n),
        "errors": int(errors),
    }


def trials(
    results: Context,
    experiment: ExperimentRef,
    *,
    where: Where = None,
    flaky_only: Annotated[bool, Param("Only flaky inputs.", name="flaky")] = False,
    limit: Annotated[int, Param("Page size.", low=1, high=10_000)] = 1000,
    offset: Annotated[int, Param("Inputs to skip.", low=0, high=2**62)] = 0,
    tolerance: float = FLAKY_TOLERANCE,
) -> dict[str, Any]:
    """``{"inputs": [{row_id, input, trials, scores, flaky}], "total", "flaky"}``, flaky
    inputs first (largest spread first), then by row id.

    >>> trials(Results(store), "exp-1", flaky_only=True)["flaky"]     # doctest: +SKIP
    3
    """
    store = results.store
    run = resolve_experiment(store, experiment)
    rows = query(
        store,
        _TRIALS.format(rows=rows_sql(store, results.aggregates, where)),
        {
            "ids": [run.id],
            "tolerance": tolerance,
            "flaky_only": int(flaky_only),
            "limit": limit,
            "offset": offset,
        },
    )
    inputs = [
        {
            "row_id": row["row_id"],
            "input_key": row["input_key"],
            "input": json_value(row["input"]),
            "trials": int(row["trials"]),
            "scores": {item[0]: _score(item) for item in sorted(row["scores"])},
            "flaky": bool(row["flaky"]),
        }
        for row in rows
    ]
    total = int(rows[0]["total"]) if rows else 0
    flaky = int(rows[0]["flaky_total"]) if rows else 0
    return {"inputs": inputs, "total": total, "flaky": flaky}
