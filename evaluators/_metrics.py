"""Token, duration and cost totals over a set of leaf model calls, and time to first token.

Tokens follow the normalised columns: input total (cache included), cache read, cache write,
output total (reasoning included), reasoning. Cost comes from ``_cost``: a span's provided cost
wins, otherwise it is inferred from the offline price data at the span's start time; a call of
unknown cost makes the total unknown (``None``), never $0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from evalhouse.evaluators._cost import SpanCost, Usage, row_cost, span_cost
from evalhouse.evaluators._traces import Span

__all__ = ["CallTotals", "call_costs", "time_to_first_token_ms", "totals"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class CallTotals:
    calls: int
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    cost_known_usd: float
    cost_provenance: str

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def call_costs(calls: Sequence[Span]) -> list[SpanCost]:
    """The cost of each model call: provided, else inferred at the call's start time."""
    return [
        span_cost(
            provider=span.provider,
            request_model=span.request_model,
            response_model=span.response_model,
            usage=Usage(
                input_tokens=span.input_tokens,
                output_tokens=span.output_tokens,
                cache_read_tokens=span.cache_read_tokens,
                cache_write_tokens=span.cache_write_tokens,
                reasoning_tokens=span.reasoning_tokens,
            ),
            provided_usd=span.provided_cost_usd,
            at=datetime.fromtimestamp(span.start_ns / 1e9, UTC),
        )
        for span in calls
    ]


def totals(calls: Sequence[Span], costs: Sequence[SpanCost] | None = None) -> CallTotals:
    """Sum usage, duration and cost over leaf model calls (already free of double counts);
    ``costs`` are the calls' :func:`call_costs` when the caller has them already."""
    if costs is None:
        costs = call_costs(calls)
    cost = row_cost(costs)
    return CallTotals(
        calls=len(calls),
        duration_ms=sum(span.duration_ns for span in calls) / 1e6,
        input_tokens=sum(span.input_tokens for span in calls),
        output_tokens=sum(span.output_tokens for span in calls),
        cache_read_tokens=sum(span.cache_read_tokens for span in calls),
        cache_write_tokens=sum(span.cache_write_tokens for span in calls),
        reasoning_tokens=sum(span.reasoning_tokens for span in calls),
        cost_usd=cost.usd,
        cost_known_usd=cost.known_usd,
        cost_provenance=cost.provenance,
    )


def time_to_first_token_ms(calls: Sequence[Span]) -> float | None:
    """Time to first token of the first model call that records it (calls sorted by start).

    Sources: OTel GenAI ``gen_ai.response.time_to_first_chunk`` (seconds), Vercel AI SDK
    ``ai.response.msToFirstChunk`` (ms), Langfuse ``completion_start_time`` (a time), and
    Braintrust ``braintrust.metrics.time_to_first_token`` (seconds).
    """
    for span in calls:
        value = _ttft_ms(span)
        if value is not None:
            return value
    return None


def _ttft_ms(span: Span) -> float | None:
    attributes = span.attributes
    seconds = _number(attributes.get("gen_ai.response.time_to_first_chunk"))
    if seconds is not None:
        return seconds * 1000.0
    millis = _number(attributes.get("ai.response.msToFirstChunk"))
    if millis is not None:
        return millis
    started = attributes.get("langfuse.observation.completion_start_time")
    if started:
        at = _time_ns(started)
        if at is not None and at >= span.start_ns:
            return (at - span.start_ns) / 1e6
    metrics = attributes.get("braintrust.metrics")
    if metrics:
        try:
            value = json.loads(metrics).get("time_to_first_token")
        except (ValueError, AttributeError):
            value = None
        seconds = _number(value)
        if seconds is not None:
            return seconds * 1000.0
    return None


def _number(value: object) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _time_ns(text: str) -> int | None:
    """An ISO 8601 time (``Z`` or offset; naive means UTC) as Unix nanoseconds."""
    text = text.strip().strip('"')
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return (at - _EPOCH) // timedelta(microseconds=1) * 1000
