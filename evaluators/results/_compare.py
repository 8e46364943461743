"""Diff mode: a candidate experiment against a baseline, with paired statistics.

Rows are matched by a key: by default ``input_key`` (hash of the input's canonical JSON), or
any SQL expression over the row (``JSONExtractString(metadata, 'case_id')``). Trials are
grouped first: per key and side, each score and metric is the mean over its trials. Then, per
score, over the keys both sides have it: the mean difference (candidate - baseline), its
``1 - alpha`` interval (within [-1, 1], where a difference of two scores lies) and the p-value
of a paired t-test, and per key whether it improved, regressed or stayed within the tolerance.
Metrics (duration, tokens, cost) get the same, lower being better.

The verdict (:func:`~evalhouse.evaluators.results._stats.verdict`) is the only one: the API,
``evalhouse compare``, ``evalhouse eval``, the SDK's summary and the UI print it as it is. It
is ``improved`` / ``regressed`` only when the difference is significant at ``alpha`` and, for
metrics, at least the practical threshold (``_thresholds``). A metric or score that cannot be
compared is still listed, with ``missing`` saying why. ClickHouse does the pairing and the
sums; only the per-score sums come back, and one page of rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._filters import check_expression
from evalhouse.evaluators.results._params import Alpha, Param, Where
from evalhouse.evaluators.results._resolve import choose_baseline
from evalhouse.evaluators.results._sql import METRICS, clean, json_value, query, rows_sql
from evalhouse.evaluators.results._stats import bounded, paired_test, verdict
from evalhouse.evaluators.results._summary import experiment_items
from evalhouse.evaluators.results._thresholds import Thresholds
from evalhouse.evaluators.results._unpriced import unknown_cost_reason
from evalhouse.store import Store

__all__ = ["METRIC_TOLERANCE", "SCORE_TOLERANCE", "compare"]

# Per key: |candidate - baseline| at most this is "unchanged" (scores are in [0, 1]).
SCORE_TOLERANCE = 1e-9
# Metrics: within this fraction of the larger of the two values is "unchanged".
METRIC_TOLERANCE = 0.05
# Metrics shown per row side by side.
_ROW_METRICS = ("task_duration_ms", "total_tokens", "cost_usd")


def _per_key(rows: str, key: str) -> str:
    """Per key and side: trials, mean of each score and metric, the first trial's trace."""
    columns = [
        "countIf(NOT cand) AS b_n",
        "countIf(cand) AS c_n",
        "avgMapIf(scores, NOT cand) AS b_scores",
        "avgMapIf(scores, cand) AS c_scores",
        "argMinIf(trace_id, (trial, trace_id), NOT cand) AS b_trace",
        "argMinIf(trace_id, (trial, trace_id), cand) AS c_trace",
    ]
    # NaN (an average of nothing) marks a metric a side does not have, e.g. an unknown cost.
    for metric in METRICS:
        for side, condition in (("b", "NOT cand"), ("c", "cand")):
            columns.append(
                f"avgIf(toFloat64(assumeNotNull({metric})), {condition} AND {metric} IS NOT NULL)"
                f" AS `{side}.{metric}`"
            )
    return f"""SELECT
        key,
        {", ".join(columns)}
    FROM (
        SELECT {key} AS key, experiment_id = {{candidate:String}} AS cand, *
        FROM ({rows})
    )
    GROUP BY key"""


_PAGE_FIELDS = ("key", "b_n", "c_n", "b_trace", "c_trace", "b_scores", "c_scores")


# One pass over the keys, one answer row. Per matched key, the scores both sides have and
# the metrics both sides know go into maps keyed 'score:<name>' / 'metric:<name>' (baseline,
# candidate, difference, improved, regressed); the -Map aggregates then sum them per name.
# The page comes along: the first rows in order (matched keys, largest regression first, then
# keys only the baseline has, then keys only the candidate has).
def _compare_sql(per_key: str, score: str | None) -> str:
    metrics = ", ".join(f"'{m}'" for m in METRICS)
    b_metrics = ", ".join(f"`b.{m}`" for m in METRICS)
    c_metrics = ", ".join(f"`c.{m}`" for m in METRICS)
    worst = (
        "if(has(shared, {score:String}), c_scores[{score:String}] - b_scores[{score:String}], inf)"
        if score
        else "if(empty(shared), inf, arrayMin(arrayMap(k -> c_scores[k] - b_scores[k], shared)))"
    )
    row_metrics = ", ".join(f"`{side}.{m}`" for side in "bc" for m in _ROW_METRICS)
    return f"""
SELECT
    countIf(matched) AS matched_keys,
    countIf(b_n > 0 AND c_n = 0) AS only_baseline,
    countIf(c_n > 0 AND b_n = 0) AS only_candidate,
    countMapIf(d, matched) AS n,
    avgMapIf(bv, matched) AS b_mean,
    avgMapIf(cv, matched) AS c_mean,
    avgMapIf(d, matched) AS d_mean,
    stddevSampStableMapIf(d, matched) AS d_sd,
    sumMapIf(up, matched) AS improvements,
    sumMapIf(down, matched) AS regressions,
    groupArraySorted({{first:UInt64}})(entry) AS page
FROM (
    SELECT
        b_n > 0 AND c_n > 0 AS matched,
        arrayFilter(k -> mapContains(b_scores, k), mapKeys(c_scores)) AS shared,
        [{b_metrics}] AS mb,
        [{c_metrics}] AS mc,
        arrayMap((x, y) -> isFinite(x) AND isFinite(y), mb, mc) AS known,
        arrayConcat(
            arrayMap(k -> concat('score:', k), shared),
            arrayMap(k -> concat('metric:', k), arrayFilter((k, ok) -> ok, [{metrics}], known))
        ) AS names,
        arrayConcat(arrayMap(k -> b_scores[k], shared), arrayFilter((x, ok) -> ok, mb, known))
            AS bs,
        arrayConcat(arrayMap(k -> c_scores[k], shared), arrayFilter((x, ok) -> ok, mc, known))
            AS cs,
        mapFromArrays(names, bs) AS bv,
        mapFromArrays(names, cs) AS cv,
        mapFromArrays(names, arrayMap((x, y) -> y - x, bs, cs)) AS d,
        mapFromArrays(names, arrayMap((k, x, y) -> toUInt64(if(startsWith(k, 'score:'),
            y - x > {{tolerance:Float64}},
            x - y > {{metric_tolerance:Float64}} * greatest(abs(x), abs(y)))), names, bs, cs))
            AS up,
        mapFromArrays(names, arrayMap((k, x, y) -> toUInt64(if(startsWith(k, 'score:'),
            x - y > {{tolerance:Float64}},
            y - x > {{metric_tolerance:Float64}} * greatest(abs(x), abs(y)))), names, bs, cs))
            AS down,
        (multiIf(matched, 0, c_n = 0, 1, 2), {worst}, {", ".join(_PAGE_FIELDS)}, {row_metrics})
            AS entry,
        *
    FROM ({per_key})
)
"""


def _page(answer: Mapping[str, Any], offset: int, limit: int) -> list[dict[str, Any]]:
    """Matched keys (largest regression first), then baseline-only, then candidate-only."""
    entries = answer["page"][offset : offset + limit]
    names = [*_PAGE_FIELDS, *(f"{side}.{m}" for side in "bc" for m in _ROW_METRICS)]
    return [dict(zip(names, entry[2:], strict=True)) for entry in entries]


# The rows a page shows, by trace id (a handful): what went in and came out, and errors.
_DETAILS = """
SELECT trace_id, row_id, input, expected, output, error, score_errors
FROM experiment_rows
WHERE experiment_id IN {ids:Array(String)} AND trace_id IN {traces:Array(String)}
"""


def _diffs(baseline: Mapping[str, float], candidate: Mapping[str, float]) -> dict[str, Any]:
    return {k: clean(candidate[k] - baseline[k]) for k in sorted(candidate) if k in baseline}


def _side(
    row: Mapping[str, Any], side: str, details: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any] | None:
    if not row[f"{side}_n"]:
        return None
    trace_id = row[f"{side}_trace"]
    detail = details.get(trace_id, {})
    return {
        "trace_id": trace_id,
        "row_id": detail.get("row_id"),
        "trials": int(row[f"{side}_n"]),
        "input": json_value(detail.get("input")),
        "expected": json_value(detail.get("expected")),
        "output": json_value(detail.get("output")),
        "error": detail.get("error") or None,
        "scores": {k: clean(v) for k, v in sorted(row[f"{side}_scores"].items())},
        "score_errors": dict(sorted(detail.get("score_errors", {}).items())),
        "metrics": {m: clean(row[f"{side}.{m}"]) for m in _ROW_METRICS},
    }


def _comparison(
    answer: Mapping[str, Any],
    name: str,
    alpha: float,
    *,
    score: bool,
    thresholds: Thresholds,
    missing: str | None = None,
) -> dict[str, Any]:
    n = int(answer["n"].get(name, 0))
    diff = clean(answer["d_mean"].get(name))
    baseline_mean = clean(answer["b_mean"].get(name))
    test = paired_test(n, diff, clean(answer["d_sd"].get(name)), alpha) if n else None
    if test is not None and score:
        test = bounded(test, -1.0, 1.0)
    improvements = int(answer["improvements"].get(name, 0))
    regressions = int(answer["regressions"].get(name, 0))
    p_value = test.p_value if test else None
    metric = name.removeprefix("metric:")
    min_change = None if score else thresholds.for_metric(metric).min_change(baseline_mean)
    return {
        "baseline_mean": baseline_mean,
        "candidate_mean": clean(answer["c_mean"].get(name)),
        "diff": diff,
        "ci_low": test.low if test else None,
        "ci_high": test.high if test else None,
        "p_value": p_value,
        "improvements": improvements,
        "regressions": regressions,
        "unchanged": n - improvements - regressions,
        "matched": n,
        "min_change": min_change,
        "verdict": verdict(n, diff, p_value, alpha, higher_is_better=score, min_change=min_change),
        "missing": missing,
    }


def _scores(
    answer: Mapping[str, Any],
    alpha: float,
    thresholds: Thresholds,
    baseline: Mapping[str, Any] | None,
    candidate: Mapping[str, Any] | None,
) -> dict[str, dict[str, Any]]:
    """Scores compared on matched rows, and those one side lacks (with ``missing`` saying so)."""
    compared = {n.removeprefix("score:") for n in answer["n"] if n.startswith("score:")}
    in_base = set((baseline or {}).get("scores") or {})
    in_cand = set((candidate or {}).get("scores") or {})
    out = {}
    for name in sorted(compared | in_base | in_cand):
        missing = None
        if name not in compared:
            if name not in in_cand:
                missing = "only the baseline has this score (the candidate was not scored with it)"
            elif name not in in_base:
                missing = "only the candidate has this score (the baseline was not scored with it)"
            else:
                missing = "no matched row has this score on both sides"
        out[name] = _comparison(
            answer, f"score:{name}", alpha, score=True, thresholds=thresholds, missing=missing
        )
    return out


def _cost_missing(
    store: Store, answer: Mapping[str, Any], ids: Mapping[str, str], matched: int
) -> str | None:
    """Why the cost comparison lacks keys: which side's cost is unknown, and for what."""
    compared = int(answer["n"].get("metric:cost_usd", 0))
    if matched == 0 or compared == matched:
        return None
    reasons = {side: unknown_cost_reason(store, [id_]) for side, id_ in ids.items()}
    parts = [f"{side}: {why}" for side, why in reasons.items() if why]
    sides = " and ".join(side for side, why in reasons.items() if why) or "one side"
    what = f"unknown for {sides}"
    detail = f" ({'; '.join(parts)})" if parts else ""
    if compared == 0:
        return f"{what}{detail}; no matched row has a known cost on both sides"
    return f"{what}{detail}; compared over the {compared} of {matched} matched rows priced on both"


def _metrics(
    store: Store,
    answer: Mapping[str, Any],
    alpha: float,
    thresholds: Thresholds,
    ids: Mapping[str, str],
    matched: int,
) -> dict[str, dict[str, Any]]:
    """Every metric, compared or not: one that cannot be compared says why."""
    out = {}
    for metric in METRICS:
        missing = None
        if matched == 0:
            missing = "no row of the candidate matches a row of the baseline"
        elif metric == "cost_usd":
            missing = _cost_missing(store, answer, ids, matched)
        out[metric] = _comparison(
            answer,
            f"metric:{metric}",
            alpha,
            score=False,
            thresholds=thresholds,
            missing=missing,
        )
    return out


def compare(
    results: Context,
    candidate: Annotated[str, Param("Candidate experiment id or name.")],
    baseline: Annotated[
        str | None,
        Param(
            "Baseline id or name (default: the previous run of the same name, "
            "else of the same dataset)."
        ),
    ] = None,
    *,
    key: Annotated[
        str | None, Param("SQL expression matching rows (default: the input's hash).")
    ] = None,
    where: Where = None,
    alpha: Alpha = None,
    tolerance: Annotated[
        float, Param("Per-row score change counted as unchanged.", low=0)
    ] = SCORE_TOLERANCE,
    metric_tolerance: Annotated[
        float, Param("Per-row metric change (fraction) counted as unchanged.", low=0)
    ] = METRIC_TOLERANCE,
    score: Annotated[str | None, Param("Order rows by this score's difference.")] = None,
    limit: Annotated[int, Param("Page size.", low=1, high=10_000)] = 100,
    offset: Annotated[int, Param("Rows to skip.", low=0, high=2**62)] = 0,
) -> dict[str, Any]:
    """The comparison as the API and ``evalhouse compare --json`` give it (keys documented in
    docs/results-api.md and kept stable); metrics use the context's practical thresholds.

    >>> body = compare(Results(store), "summaries-v3", "summaries-v2")   # doctest: +SKIP
    >>> body["scores"]["exact_match"]["verdict"]
    'regressed'
    """
    store, aggregates, thresholds = results.store, results.aggregates, results.thresholds
    alpha = results.significance(alpha)
    cand = resolve_experiment(store, candidate)
    choice = choose_baseline(store, cand, baseline)
    base = choice.experiment
    key_sql = "input_key" if not key else f"toString({check_expression(store, key, 'key')})"
    rows = rows_sql(store, aggregates, where)
    parameters: dict[str, Any] = {
        "ids": [base.id, cand.id],
        "candidate": cand.id,
        "tolerance": tolerance,
        "metric_tolerance": metric_tolerance,
        "first": offset + limit,
    }
    if score:
        parameters["score"] = score
    answer = query(store, _compare_sql(_per_key(rows, key_sql), score), parameters)[0]
    page = _page(answer, offset, limit)
    traces = [row[f"{side}_trace"] for row in page for side in "bc" if row[f"{side}_n"]]
    found = query(store, _DETAILS, {"ids": [base.id, cand.id], "traces": traces}) if traces else []
    details = {row["trace_id"]: row for row in found}
    items = experiment_items(store, aggregates, [base.id, cand.id])
    by_id = {item["experiment_id"]: item for item in items}
    matched = int(answer["matched_keys"])
    only_baseline, only_candidate = int(answer["only_baseline"]), int(answer["only_candidate"])
    return {
        "baseline": by_id.get(base.id),
        "candidate": by_id.get(cand.id),
        "baseline_reason": choice.reason,
        "key": key.strip() if key else "input",
        "alpha": alpha,
        "practical_thresholds": thresholds.as_json(METRICS),
        "matched_rows": matched,
        "unmatched": {"baseline": only_baseline, "candidate": only_candidate},
        "scores": _scores(answer, alpha, thresholds, by_id.get(base.id), by_id.get(cand.id)),
        "metrics": _metrics(
            store, answer, alpha, thresholds, {"baseline": base.id, "candidate": cand.id}, matched
        ),
        "rows": [
            {
                "key": row["key"],
                "baseline": _side(row, "b", details),
                "candidate": _side(row, "c", details),
                "diffs": _diffs(row["b_scores"], row["c_scores"]),
            }
            for row in page
        ],
        "rows_total": matched + only_baseline + only_candidate,
    }
