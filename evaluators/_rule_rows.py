"""The rows the online rules write: a target's decision (``rule_targets``), a scorer run's
scores (``scores``, ``source = 'rule'``), and the scoring item a run is given.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from evalhouse.evaluators._rule_cost import JudgeSpend
from evalhouse.evaluators._rule_targets import Target
from evalhouse.evaluators._rule_values import Values, json_text
from evalhouse.evaluators._rules import StoredRule
from evalhouse.evaluators._scoring import Outcome, ScoringItem
from evalhouse.store import ScoreRecord

__all__ = ["TARGET_COLUMNS", "Key", "Open", "now_ns", "score_records", "scoring_item", "target_row"]

# What a target's row keeps of the values its scorers were given.
_PREVIEW = 2_000

Key = tuple[str, int, str, str, str]  # (rule, version, trace id, span id, session id)

TARGET_COLUMNS = (
    "rule",
    "rule_version",
    "scope",
    "trace_id",
    "span_id",
    "session_id",
    "shard",
    "state",
    "reason",
    "backfill",
    "spans",
    "late_spans",
    "watermark",
    "ready_at",
    "decided_at",
    "scored_at",
    "scorers",
    "errors",
    "judge_cost_usd",
    "estimated_cost_usd",
    "input_preview",
    "output_preview",
    "updated_ns",
)


def now_ns() -> int:
    return time.time_ns()


def preview(value: Any) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json_text(value)
    return text[:_PREVIEW]


@dataclass
class Open:
    """A target being scored: what is left to store, and what it cost so far."""

    rule: StoredRule
    target: Target
    values: Values
    ready_ms: int
    decided_ms: int
    backfill: bool
    estimate: float
    remaining: set[str]
    errors: int = 0
    cost: float | None = None

    def row(self, now_ms: int) -> tuple[Any, ...]:
        return target_row(
            self.rule,
            self.target,
            state="scored",
            reason="",
            backfill=self.backfill,
            ready_ms=self.ready_ms,
            decided_ms=self.decided_ms,
            scored_ms=now_ms,
            scorers=len(self.rule.scorers),
            errors=self.errors,
            cost=self.cost,
            estimate=self.estimate,
            values=self.values,
        )


def target_row(
    rule: StoredRule,
    target: Target,
    *,
    state: str,
    reason: str,
    backfill: bool,
    ready_ms: int,
    decided_ms: int,
    scored_ms: int | None = None,
    scorers: int = 0,
    errors: int = 0,
    cost: float | None = None,
    estimate: float = 0.0,
    values: Values | None = None,
    late: int = 0,
) -> tuple[Any, ...]:
    return (
        rule.name,
        rule.version,
        rule.scope,
        target.trace_id,
        target.span_id,
        target.session_id,
        target.shard,
        state,
        reason,
        int(backfill),
        target.spans,
        late,
        target.watermark_ms,
        ready_ms,
        decided_ms,
        scored_ms,
        scorers,
        errors,
        cost,
        estimate,
        preview(values.input) if values else "",
        preview(values.output) if values else "",
        now_ns(),
    )


def scoring_item(target: Target, values: Values, scorer_id: str) -> ScoringItem:
    return ScoringItem(
        trace_id=target.trace_id,
        shard=target.shard,
        experiment_id="",
        row_id="",
        trial=0,
        root_span_id="",
        input=json_text(values.input),
        expected=json_text(values.expected),
        output=json_text(values.output),
        metadata=json_text(values.metadata),
        scorer_id=scorer_id,
    )


def score_records(
    key: Key, scorer_id: str, outcome: Outcome, used: JudgeSpend, now_ms: int
) -> list[ScoreRecord]:
    rule, version, trace_id, span_id, session_id = key
    base = ScoreRecord(
        name=outcome.name,
        source="rule",
        created_at=now_ms,
        trace_id=trace_id,
        target_span_id=span_id,
        session_id=session_id,
        scorer=scorer_id,
        rule=rule,
        rule_version=version,
        judge_input_tokens=used.input_tokens,
        judge_output_tokens=used.output_tokens,
        judge_cost_usd=used.cost_usd,
        judge_model=used.model,
    )
    if outcome.error:
        return [replace(base, error=outcome.error)]
    if not outcome.scores:
        return [replace(base, error="the scorer returned no score")]
    records = []
    for index, score in enumerate(outcome.scores):
        label = ""
        metadata: Mapping[str, Any] = score.metadata or {}
        choice = metadata.get("choice")
        if isinstance(choice, str):
            label = choice
        record = replace(
            base,
            name=score.name,
            value=score.value,
            label=label,
            explanation=score.explanation or "",
            metadata=json_text(dict(metadata)) if metadata else "",
        )
        if index:  # the judge's usage counts once, on the run's first score
            record = replace(
                record, judge_input_tokens=0, judge_output_tokens=0, judge_cost_usd=None
            )
        records.append(record)
    return records
