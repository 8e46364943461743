"""Writing the wire contract onto OpenTelemetry spans (evalhouse.contract names only).

Shared by the tagging helpers and the experiment runner, so a hand-tagged scorer span and
a runner's scorer span look the same to the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode

from evalhouse import contract
from evalhouse.encoding import encode
from evalhouse.scoring import Score


def set_json(span: Span, key: str, value: Any) -> None:
    span.set_attribute(key, encode(value))


def record_scores(span: Span, scores: Sequence[Score]) -> None:
    """Scores on a scorer span: attributes when there is exactly one, and one
    ``gen_ai.evaluation.result`` event per score, so several scores stay representable."""
    if len(scores) == 1:
        only = scores[0]
        span.set_attribute(contract.SCORE_NAME, only.name)
        if only.value is not None:
            span.set_attribute(contract.SCORE_VALUE, only.value)
        if only.explanation is not None:
            span.set_attribute(contract.SCORE_EXPLANATION, only.explanation)
        if only.metadata is not None:
            set_json(span, contract.SCORE_METADATA, dict(only.metadata))
    for score in scores:
        event: dict[str, Any] = {contract.EVALUATION_NAME: score.name}
        if score.value is not None:
            event[contract.EVALUATION_SCORE] = score.value
        if score.explanation is not None:
            event[contract.EVALUATION_EXPLANATION] = score.explanation
        span.add_event(contract.EVALUATION_EVENT, event)


def describe(exc: BaseException) -> str:
    """One line naming the exception: ``ValueError: bad input``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def record_error(span: Span, exc: BaseException | None, message: str) -> None:
    """Mark ``span`` failed with ``message``; the exception (if any) as an event."""
    if exc is not None:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, message))


def record_scorer_error(span: Span, exc: BaseException) -> str:
    message = describe(exc)
    span.set_attribute(contract.SCORE_ERROR, message)
    record_error(span, exc, message)
    return message
