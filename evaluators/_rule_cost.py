"""What a rule's LLM judges cost: spent (from the usage each judge reports) and foreseen (from
the targets' stored tokens and the judge's price), for the budget and the estimate.

A judge call's input is its rubric prompt plus the target's values: the prompt is rendered
once with empty values and counted at ``CHARS_PER_TOKEN`` characters a token (OpenAI's rule
of thumb for English text); the values are counted from the tokens stored on the target's
model calls (a trace's first call's input and last call's output; a span's own), or from the
text when it is at hand. Its output is the judge's reply: ``REASONING_TOKENS`` with
reasoning (``use_cot``, the default), ``CHOICE_TOKENS`` without, unless the rule's own judge
calls of the last days say otherwise. Prices are the evaluator's (:mod:`._cost`: the bundled
genai-prices data); a judge whose model has no price makes the cost unknown, never $0.

>>> plan = judge_plan('llm_judge{"api_key":"k","model":"gpt-4o-mini"}')
>>> plan.model, plan.output_tokens
('gpt-4o-mini', 150)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from evalhouse.evaluators._cost import Usage, span_cost
from evalhouse.evaluators._scorer_refs import ScorerRef
from evalhouse.scoring import Score

__all__ = [
    "CHARS_PER_TOKEN",
    "JudgePlan",
    "JudgeSpend",
    "judge_plan",
    "judge_spend",
    "text_tokens",
]

CHARS_PER_TOKEN = 4
REASONING_TOKENS = 150
CHOICE_TOKENS = 8


def text_tokens(text: str) -> int:
    """Tokens of ``text`` at ``CHARS_PER_TOKEN`` characters a token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


@dataclass(frozen=True)
class JudgePlan:
    """One LLM-judge scorer of a rule, as the estimate sees it."""

    scorer_id: str
    model: str
    prompt_tokens: int  # the rubric prompt, values left empty
    output_tokens: int

    def usd(self, input_tokens: int, output_tokens: int) -> float | None:
        """The price of ``input_tokens`` / ``output_tokens`` on this judge's model."""
        cost = span_cost(
            provider="",
            request_model=self.model,
            response_model="",
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            provided_usd=None,
            at=datetime.now(UTC),
        )
        return cost.usd

    def call(self, value_tokens: int) -> tuple[int, int, float | None]:
        """(input tokens, output tokens, USD) of one call on values of ``value_tokens``."""
        tokens_in = self.prompt_tokens + value_tokens
        return tokens_in, self.output_tokens, self.usd(tokens_in, self.output_tokens)


@lru_cache(maxsize=256)
def judge_plan(scorer_id: str) -> JudgePlan | None:
    """The plan of an evalhouse LLM judge (``llm_judge``, ``llm_judge:RUBRIC``); None for any
    other scorer (no judge, or one whose prompt evalhouse cannot see)."""
    ref = ScorerRef.from_id(scorer_id)
    if ref.problem is not None or not ref.spec.startswith("llm_judge"):
        return None
    from evalhouse.evaluators.scorers import LlmJudge, resolve_scorer

    options = dict(ref.options or {})
    options.setdefault("api_key", "estimate")  # never called: only its prompt is rendered
    try:
        judge = resolve_scorer(ref.spec, options)
    except Exception:  # a judge that cannot be built is reported by the scorer run itself
        return None
    if not isinstance(judge, LlmJudge):
        return None
    empty = {"input": "", "output": "", "expected": "", "metadata": ""}
    prompt = sum(text_tokens(m["content"]) for m in judge.prompt(empty))
    return JudgePlan(
        scorer_id=scorer_id,
        model=judge.model,
        prompt_tokens=prompt,
        output_tokens=REASONING_TOKENS if judge.use_cot else CHOICE_TOKENS,
    )


@dataclass(frozen=True)
class JudgeSpend:
    """What the judges behind one scorer run used and cost (cost None: unpriced model)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    model: str = ""
    calls: int = 0


def judge_spend(scores: tuple[Score, ...]) -> JudgeSpend:
    """The usage a scorer's results report (the LLM judge puts its model and usage in each
    score's metadata), priced like any model call."""
    tokens_in = tokens_out = calls = 0
    total: float | None = None
    model = ""
    for score in scores:
        metadata: Mapping[str, Any] = score.metadata or {}
        usage = metadata.get("usage")
        if not isinstance(usage, Mapping):
            continue
        found_in = _count(usage.get("input_tokens"))
        found_out = _count(usage.get("output_tokens"))
        model = str(metadata.get("model") or "")
        cost = span_cost(
            provider=str(metadata.get("provider") or ""),
            request_model=model,
            response_model=model,
            usage=Usage(
                input_tokens=found_in,
                output_tokens=found_out,
                cache_read_tokens=_count(usage.get("cache_read_tokens")),
                reasoning_tokens=_count(usage.get("reasoning_tokens")),
            ),
            provided_usd=None,
            at=datetime.now(UTC),
        )
        tokens_in += found_in
        tokens_out += found_out
        calls += 1
        if cost.usd is not None:
            total = (total or 0.0) + cost.usd
    return JudgeSpend(tokens_in, tokens_out, total, model, calls)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
