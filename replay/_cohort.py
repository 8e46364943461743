"""The cohort of a replay: recorded production model calls, each with its request.

Which calls: the leaf model calls (the calls whose tokens count, ``evaluators/_tree.py``) of
production traces (never an experiment's) that started in the window, newest first, at most
``limit``; ``filter`` (the explorer's language) chooses their traces on ``trace_summaries``
like the Traces page does, ``where`` (one ClickHouse boolean) chooses the spans on
``otel_traces``. Each call's request is read by the evaluator's trace reader
(:func:`evalhouse.evaluators.recorded_request`); a call without one (content capture off),
without a recorded answer or without a model is kept out of the replay, counted with the
reason.

>>> cohort = select_cohort(store, ReplaySpec.from_json({"filter": "tag:support",
...                                                     "models": ["openai:gpt-4o"]}))
... # doctest: +SKIP
>>> cohort.counts()
{'calls': 40, 'replayable': 38, 'not_replayable': {'no recorded messages ...': 2}}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.evaluators import (
    MODEL_CALLS,
    leaf_call_ids,
    recorded_answer,
    recorded_request,
)
from evalhouse.explorer import Window, parse_filter
from evalhouse.replay._spec import ReplaySpec
from evalhouse.store import EVALUATOR_SCOPE, Store

__all__ = ["Call", "Cohort", "select_cohort"]

_CALLS = ", ".join(f"'{op}'" for op in sorted(MODEL_CALLS))
_CANDIDATES = (
    """
SELECT TraceId, SpanId
FROM otel_traces
WHERE Timestamp >= fromUnixTimestamp64Nano({{since:Int64}}, 'UTC')
  AND Timestamp < fromUnixTimestamp64Nano({{until:Int64}}, 'UTC')
  AND LlmOperation IN ("""
    + _CALLS
    + """) AND Purpose = '' AND ExperimentId = ''
  AND ExperimentName = '' AND ScopeName != '"""
    + EVALUATOR_SCOPE
    + """'
  AND {traces} AND ({where})
ORDER BY Timestamp DESC, SpanId
LIMIT {{limit:UInt32}}"""
)
_FILTERED = """TraceId IN (
    SELECT trace_id FROM trace_summaries FINAL
    WHERE start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') - INTERVAL 1 HOUR
      AND start_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')
      AND kind = 'production' AND (%s))"""
_LINKS = """
SELECT TraceId, SpanId, ParentSpanId, LlmOperation FROM otel_traces
WHERE TraceId IN {traces:Array(String)}
  AND TraceId NOT IN (SELECT TraceId FROM experiment_traces
                      WHERE TraceId IN {traces:Array(String)})"""
_DETAILS = """
SELECT TraceId, SpanId, LlmOperation, LlmProvider, LlmRequestModel, LlmResponseModel,
    InputTokens, OutputTokens, CacheReadTokens, ProvidedCostUsd,
    toUnixTimestamp64Nano(Timestamp), Duration, ServiceName, SpanAttributes,
    Events.Name, Events.Attributes
FROM otel_traces
WHERE TraceId IN {traces:Array(String)} AND SpanId IN {spans:Array(String)}
LIMIT 1 BY TraceId, SpanId"""


@dataclass
class Call:
    """One recorded model call: what it cost, what it was asked and what it answered."""

    trace_id: str
    span_id: str
    operation: str
    provider: str
    model: str
    request_model: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    provided_cost_usd: float | None
    start_ns: int
    duration_ns: int
    service: str
    request: dict[str, Any] | None
    answer: str | None
    reason: str = ""


@dataclass
class Cohort:
    """The calls found, in the order replayed (newest first), replayable or not."""

    calls: list[Call] = field(default_factory=list)

    @property
    def replayable(self) -> list[Call]:
        return [call for call in self.calls if not call.reason]

    def counts(self) -> dict[str, Any]:
        """``{"calls", "replayable", "not_replayable": {reason: count}}``."""
        reasons = Counter(call.reason for call in self.calls if call.reason)
        return {
            "calls": len(self.calls),
            "replayable": len(self.replayable),
            "not_replayable": dict(sorted(reasons.items())),
        }


def _where(store: Store, where: str) -> str:
    if not where:
        return "1"
    try:
        canonical = store.check_expression(where)
        store.query(f"SELECT 1 FROM otel_traces WHERE ({canonical}) LIMIT 0")
    except QueryError as exc:
        raise InvalidRequest(
            f"invalid where: {exc}; give one ClickHouse boolean over the otel_traces columns "
            "(SpanName, LlmRequestModel, SpanAttributes['key'], ...; docs/sql.md)"
        ) from exc
    return canonical


def _reason(operation: str, request: dict[str, Any] | None, why: str, answer: str | None) -> str:
    if operation == "embeddings":
        return "an embeddings call (no answer to compare)"
    if request is None:
        return why
    if answer is None:
        return "no recorded answer (the output was recorded without content)"
    return ""


def _call(row: Sequence[Any]) -> Call:
    (trace_id, span_id, operation, provider, request_model, response_model) = row[:6]
    attributes = dict(row[13])
    events = [
        {"name": name, "attributes": dict(attrs)}
        for name, attrs in zip(row[14], row[15], strict=False)
    ]
    request, why = recorded_request(attributes, events)
    answer = recorded_answer(attributes, events)
    model = request_model or response_model
    reason = _reason(operation, request, why, answer)
    if not reason and not model:
        reason = "no model recorded"
    return Call(
        trace_id=trace_id,
        span_id=span_id,
        operation=operation,
        provider=provider,
        model=response_model or request_model,
        request_model=model,
        input_tokens=int(row[6]),
        output_tokens=int(row[7]),
        cache_read_tokens=int(row[8]),
        provided_cost_usd=row[9],
        start_ns=int(row[10]),
        duration_ns=int(row[11]),
        service=row[12],
        request=request,
        answer=answer,
        reason=reason,
    )


def select_cohort(store: Store, spec: ReplaySpec) -> Cohort:
    """The calls ``spec`` chooses (see the module's docstring); :class:`InvalidRequest` for a
    bad filter, where or window."""
    window = Window.from_params({"since": spec.since, "until": spec.until}, default_since="7d")
    parsed = parse_filter(spec.filter, prefix="r")
    traces = _FILTERED % parsed.sql if parsed.terms else "1"
    params: dict[str, Any] = {**window.sql_params(), **parsed.params}
    # Twice the limit: a framework span around a model call (not a leaf) is dropped below.
    sql = _CANDIDATES.format(traces=traces, where=_where(store, spec.where))
    found = store.query(sql, {**params, "limit": 2 * spec.limit + 10})
    if not found:
        return Cohort()
    trace_ids = sorted({row[0] for row in found})
    links = store.query(_LINKS, {"traces": trace_ids})
    leaves = leaf_call_ids((row[1], row[2], row[3]) for row in links)
    chosen = [(t, s) for t, s in found if s in leaves][: spec.limit]
    if not chosen:
        return Cohort()
    rows = store.query(
        _DETAILS,
        {"traces": sorted({t for t, _ in chosen}), "spans": [s for _, s in chosen]},
    )
    by_key = {(row[0], row[1]): _call(row) for row in rows}
    return Cohort([by_key[key] for key in chosen if key in by_key])
