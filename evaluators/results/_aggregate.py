"""Aggregate scores (``[aggregate_scores]`` in evalhouse.toml) as SQL over a row's ``scores``.

Each aggregate becomes one more entry of the row's ``scores`` map, so summaries, rows,
comparisons, trials, benchmarks and exports all show it like any other score. A row gets it
only when it has every named score; when one of them failed, ``score_errors`` says so under
the aggregate's name. Aggregates are computed from the stored scores, not from each other.

>>> from evalhouse.config import AggregateScore
>>> scores, errors = aggregate_columns({"worst": AggregateScore(method="min", scores=["a"])})
>>> "arrayMin" in scores
True
"""

from __future__ import annotations

from collections.abc import Mapping

from evalhouse.config import AggregateScore

__all__ = ["aggregate_columns", "sql_string"]


def sql_string(value: str) -> str:
    """A ClickHouse string literal (backslash and quote escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _array(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def _value(aggregate: AggregateScore) -> str:
    names = list(aggregate.scores)
    values = [f"scores[{sql_string(name)}]" for name in names]
    if aggregate.method == "min":
        return f"arrayMin({_array(values)})"
    if aggregate.method == "max":
        return f"arrayMax({_array(values)})"
    weights = [float(aggregate.scores[name]) for name in names]
    terms = " + ".join(
        f"{value} * {weight!r}" for value, weight in zip(values, weights, strict=True)
    )
    return f"({terms}) / {sum(weights)!r}"


def aggregate_columns(aggregates: Mapping[str, AggregateScore]) -> tuple[str, str]:
    """SQL for ``scores`` and ``score_errors`` with the aggregates added (the columns as they
    are when there are none)."""
    if not aggregates:
        return "scores", "score_errors"
    names, values, present, failed, messages = [], [], [], [], []
    for name, aggregate in aggregates.items():
        parts = _array([sql_string(part) for part in aggregate.scores])
        names.append(sql_string(name))
        values.append(_value(aggregate))
        present.append(f"hasAll(mapKeys(scores), {parts})")
        failed.append(f"hasAny(mapKeys(score_errors), {parts})")
        messages.append(
            f"concat('needs ', arrayStringConcat(arrayFilter(k -> mapContains(score_errors, k), "
            f"{parts}), ', '), ', which failed')"
        )
    scores = (
        f"mapUpdate(scores, mapFromArrays("
        f"arrayFilter((k, ok) -> ok, {_array(names)}, {_array(present)}), "
        f"arrayFilter((v, ok) -> ok, {_array(values)}, {_array(present)})))"
    )
    errors = (
        f"mapUpdate(score_errors, mapFromArrays("
        f"arrayFilter((k, bad) -> bad, {_array(names)}, {_array(failed)}), "
        f"arrayFilter((m, bad) -> bad, {_array(messages)}, {_array(failed)})))"
    )
    return scores, errors
