"""What a replay would cost, before spending anything (``--dry-run``).

Per model: the cohort's recorded input and output tokens (the stored counts of each call),
priced call by call at today's price of the target model from the bundled price data
(:func:`evalhouse.evaluators.span_cost`, offline). A replayed model tokenises a little
differently and answers at its own length, so this is an estimate; ``benchmarks/replay.py``
and ``tests/test_replay.py`` hold it to what a replay then spent.

>>> estimate(cohort, spec)["models"]["openai:gpt-4o-mini"]["cost_usd"]   # doctest: +SKIP
0.0123
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from evalhouse.evaluators import Usage, span_cost
from evalhouse.replay._cohort import Call, Cohort
from evalhouse.replay._spec import ReplaySpec, Target

__all__ = ["call_cost", "estimate", "target_estimate"]


def call_cost(target: Target, input_tokens: int, output_tokens: int) -> float | None:
    """Today's price of one call to ``target`` with these token counts; None if unpriced."""
    cost = span_cost(
        provider=target.provider,
        request_model=target.model,
        response_model="",
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
        provided_usd=None,
        at=datetime.now(UTC).replace(tzinfo=None),
    )
    return cost.usd


def target_estimate(target: Target, calls: Sequence[Call]) -> dict[str, Any]:
    """``{"calls", "input_tokens", "output_tokens", "cost_usd", "priced"}`` for one model."""
    costs = [call_cost(target, c.input_tokens, c.output_tokens) for c in calls]
    priced = all(cost is not None for cost in costs)
    return {
        "calls": len(calls),
        "input_tokens": sum(c.input_tokens for c in calls),
        "output_tokens": sum(c.output_tokens for c in calls),
        "cost_usd": math.fsum(c for c in costs if c is not None) if priced else None,
        "priced": priced,
    }


def estimate(cohort: Cohort, spec: ReplaySpec) -> dict[str, Any]:
    """The dry run: the cohort's counts, and per model the tokens and the cost it would take.

    ``recorded`` is what the original calls cost as stored (provided, else inferred)."""
    calls = cohort.replayable
    recorded = [
        c.provided_cost_usd
        if c.provided_cost_usd is not None
        else call_cost(Target(c.provider or "openai", c.model), c.input_tokens, c.output_tokens)
        for c in calls
    ]
    return {
        "cohort": cohort.counts(),
        "dataset": spec.dataset,
        "models": {t.label: target_estimate(t, calls) for t in spec.targets},
        "recorded": {
            "input_tokens": sum(c.input_tokens for c in calls),
            "output_tokens": sum(c.output_tokens for c in calls),
            "cost_usd": math.fsum(c for c in recorded if c is not None)
            if all(c is not None for c in recorded)
            else None,
        },
        "budget_usd": spec.budget_usd,
    }
