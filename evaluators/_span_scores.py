"""Scores that spans reported themselves, read into ``scores`` rows with source ``otlp``.

Read from scorer spans (``evalhouse.score.*``; Braintrust ``braintrust.scores``), from
``gen_ai.evaluation.result`` events on any span of the row, and, for a failed scorer span that
reported no score, its error. The daemon's own scorer spans are skipped: their results are in
``scores`` already, with source ``experiment``. A scorer span's score is a score of the row
(its span is kept as ``scorer_span_id``); an event's is a score of the span it is on.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from evalhouse import contract
from evalhouse.evaluators._traces import Span
from evalhouse.evaluators._tree import Partition
from evalhouse.store import ScoreRecord

if TYPE_CHECKING:
    from evalhouse.evaluators._rows import Row

__all__ = ["span_scores"]


def span_scores(row: Row, part: Partition) -> list[tuple[Any, ...]]:
    """``scores`` rows (source ``otlp``) for the scores the row's spans reported."""
    scores: list[tuple[Any, ...]] = []

    def add(
        span: Span,
        name: str,
        value: float | None,
        error: str,
        explanation: str,
        meta: str,
        *,
        label: str = "",
        on_span: bool = False,
    ) -> None:
        scores.append(
            ScoreRecord(
                experiment_id=row.experiment_id,
                trace_id=row.trace_id,
                row_id=row.row_id,
                trial=row.trial,
                name=name,
                value=value,
                label=label,
                error=error,
                explanation=explanation,
                source="otlp",
                created_at=span.end_ns // 1_000_000,
                metadata=meta,
                target_span_id=span.span_id if on_span else "",
                scorer_span_id="" if on_span else span.span_id,
            ).values()
        )

    scored_spans: set[str] = set()
    for span in part.scorer:
        if span.by_evaluator:
            continue  # the daemon's own runs are in `scores` already (source 'experiment')
        attributes = span.attributes
        name = attributes.get(contract.SCORE_NAME)
        if name:
            value, problem = _score_value(attributes.get(contract.SCORE_VALUE))
            error = attributes.get(contract.SCORE_ERROR) or (
                (span.status_message or span.exception_message or "scorer failed")
                if span.failed
                else problem
            )
            add(
                span,
                name,
                None if error else value,
                error,
                attributes.get(contract.SCORE_EXPLANATION, ""),
                attributes.get(contract.SCORE_METADATA, ""),
            )
            scored_spans.add(span.span_id)
        for bt_name, bt_value in _braintrust_scores(attributes.get("braintrust.scores")):
            add(span, bt_name, bt_value, "", "", "")
            scored_spans.add(span.span_id)
    for span in (*part.task, *part.scorer):
        if span.by_evaluator:
            continue
        for event in span.evaluations:
            name = event.get(contract.EVALUATION_NAME, "")
            if not name:
                continue
            value, problem = _score_value(event.get(contract.EVALUATION_SCORE))
            label = event.get(contract.EVALUATION_LABEL, "")
            add(
                span,
                name,
                value,
                problem if value is None and not label else "",
                event.get(contract.EVALUATION_EXPLANATION, "") or label,
                json.dumps({"label": label}) if label else "",
                label=label,
                on_span=True,
            )
            scored_spans.add(span.span_id)
    for span in part.scorer_spans:
        if span.failed and not span.by_evaluator and span.span_id not in scored_spans:
            message = span.status_message or span.exception_message or "scorer failed"
            add(span, span.name, None, message, "", "")
    return scores


def _score_value(text: str | None) -> tuple[float | None, str]:
    if text is None or text == "":
        return None, ""
    try:
        return float(text), ""
    except ValueError:
        return None, f"score value {text[:50]!r} is not a number"


def _braintrust_scores(text: str | None) -> list[tuple[str, float | None]]:
    if not text:
        return []
    try:
        values = json.loads(text)
    except ValueError:
        return []
    if not isinstance(values, dict):
        return []
    out = []
    for name, value in values.items():
        number = (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )
        out.append((str(name), number))
    return out
