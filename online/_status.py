"""A rule's status (``GET /api/rules/{name}``): what its current version did with the traffic.

Counts come from ``rule_targets`` (one row per target the version matched, with what it
decided), errors from ``scores``, spend from ``rule_spend`` (today, UTC, every version: the
budget is the rule's), lag from the targets scored live in the last day: from the moment a
target was ready (quiet for ``delay_s``) to its last score stored.
"""

from __future__ import annotations

from typing import Any

from evalhouse.evaluators import StoredRule
from evalhouse.store import RULE_SPEND, RULE_TARGETS, Store

__all__ = ["rule_status"]

_COUNTS = f"""
SELECT state, reason, count() AS n, sum(late_spans) AS late, countIf(late_spans > 0) AS late_targets
FROM {RULE_TARGETS} FINAL
WHERE rule = {{rule:String}} AND rule_version = {{version:UInt32}}
GROUP BY state, reason"""
_LAG = f"""
SELECT count() AS n,
    quantileExact(0.5)(lag) AS p50, quantileExact(0.95)(lag) AS p95, max(lag) AS worst
FROM (
    SELECT (toUnixTimestamp64Milli(assumeNotNull(scored_at))
            - toUnixTimestamp64Milli(ready_at)) / 1000 AS lag
    FROM {RULE_TARGETS} FINAL
    WHERE rule = {{rule:String}} AND rule_version = {{version:UInt32}} AND state = 'scored'
      AND backfill = 0 AND scored_at > now64(3) - INTERVAL 1 DAY
)"""
_ERRORS = """
SELECT countIf(error != '') AS errors, count() AS scores,
    groupArrayIf(10)(error, error != '') AS examples
FROM scores FINAL
WHERE source = 'rule' AND rule = {rule:String} AND rule_version = {version:UInt32}"""
_SPEND = f"""
SELECT sum(cost_usd) AS cost, sum(judge_calls) AS calls, sum(input_tokens) AS tokens_in,
    sum(output_tokens) AS tokens_out
FROM {RULE_SPEND}
WHERE rule = {{rule:String}} AND day = toDate(now(), 'UTC')"""


def rule_status(store: Store, rule: StoredRule) -> dict[str, Any]:
    """The status block of a rule's current version.

    >>> rule_status(store, rule)["scored"]        # doctest: +SKIP
    120
    """
    params = {"rule": rule.name, "version": rule.version}
    counts: dict[str, int] = {}
    skipped: dict[str, int] = {"budget": 0, "no_output": 0, "mapping_failed": 0}
    late = late_targets = 0
    for row in store.query_dicts(_COUNTS, params):
        counts[row["state"]] = counts.get(row["state"], 0) + int(row["n"])
        if row["state"] == "skipped":
            skipped[row["reason"]] = skipped.get(row["reason"], 0) + int(row["n"])
        late += int(row["late"])
        late_targets += int(row["late_targets"])
    matched = sum(counts.values())
    sampled_out = counts.get("sampled_out", 0)
    lag = store.query_dicts(_LAG, params)[0]
    errors = store.query_dicts(_ERRORS, params)[0]
    spend = store.query_dicts(_SPEND, {"rule": rule.name})[0]
    budget = rule.budget_usd_per_day
    spent = float(spend["cost"] or 0.0)
    return {
        "version": rule.version,
        "matched": matched,
        "sampled": matched - sampled_out,
        "sampled_out": sampled_out,
        "scored": counts.get("scored", 0),
        "skipped": skipped,
        "pending": counts.get("pending", 0) + counts.get("waiting", 0),
        "waiting_for_root": counts.get("waiting", 0),
        "scorer_errors": int(errors["errors"]),
        "scorer_error_examples": list(errors["examples"]),
        "scores": int(errors["scores"]),
        "late_spans": late,
        "late_targets": late_targets,
        "spend_today_usd": spent,
        "budget_usd_per_day": budget,
        "budget_left_usd": None if budget is None else max(0.0, budget - spent),
        "judge_calls_today": int(spend["calls"] or 0),
        "judge_tokens_today": {
            "input": int(spend["tokens_in"] or 0),
            "output": int(spend["tokens_out"] or 0),
        },
        "lag_seconds": {
            "targets": int(lag["n"]),
            "p50": _seconds(lag["p50"]) if lag["n"] else None,
            "p95": _seconds(lag["p95"]) if lag["n"] else None,
            "max": _seconds(lag["worst"]) if lag["n"] else None,
        },
    }


def _seconds(value: Any) -> float:
    return round(max(0.0, float(value)), 3)
