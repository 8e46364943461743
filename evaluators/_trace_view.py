"""One trace as the web UI's trace page shows it: every span, its cost, its messages.

Each span comes with its normalised columns (purpose, model, tokens as that span reports
them), its cost (provided, else inferred from the offline price data, else unknown: the
evaluator's pricing), its attributes and events, its input/output messages
(:mod:`._messages`) and its ``input`` / ``output`` values. Which spans are model calls, which
of them count (leaf calls, :mod:`._tree`) and which attribute gives a value (:mod:`._values`)
follow the same rules as the experiment rows, so the page and the rows never disagree.

>>> normalise_trace_id("0AF7651916CD43DD8448EB211C80319C")
'0af7651916cd43dd8448eb211c80319c'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalhouse.errors import EvalhouseError, QueryError
from evalhouse.evaluators._cost import Usage, span_cost
from evalhouse.evaluators._messages import input_messages, json_or_text, output_messages
from evalhouse.evaluators._tree import MODEL_CALLS, CallTree
from evalhouse.evaluators._values import INPUT, OUTPUT, ValueKeys, value_json
from evalhouse.store import Store

__all__ = ["MAX_SPANS", "normalise_trace_id", "read_trace"]

# A trace page with more spans than this is unreadable anyway; the answer says it was cut.
MAX_SPANS = 5_000
_TRACE_ID = re.compile(r"[0-9a-fA-F]{1,64}")

_SPANS_SQL = """
SELECT
    SpanId, ParentSpanId, SpanName, ServiceName, Purpose,
    toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration,
    StatusCode, StatusMessage, SpanKind, ScopeName,
    SpanAttributes, ResourceAttributes,
    arrayMap(t -> toUnixTimestamp64Nano(t), Events.Timestamp) AS event_ns,
    Events.Name, Events.Attributes,
    ExperimentId, ExperimentName, RowId, Trial,
    LlmProvider, LlmRequestModel, LlmResponseModel, LlmOperation,
    InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, ReasoningTokens,
    ProvidedCostUsd
FROM otel_traces
WHERE TraceId = {trace_id:String}
  -- The trace's time range from the trace-id lookup (ordered by TraceId): the bloom filter on
  -- TraceId alone reads every granule's filter (373 ms at 20M spans against 37 ms at 2M,
  -- benchmarks/README.md); a trace the lookup does not know is read without the range.
  AND Timestamp >= (SELECT toDateTime64(min(Start), 9, 'UTC') FROM otel_traces_trace_id_ts
                    WHERE TraceId = {trace_id:String})
  AND Timestamp < (SELECT if(count() = 0, toDateTime64('2200-01-01', 9, 'UTC'),
                             toDateTime64(max(End), 9, 'UTC') + INTERVAL 1 SECOND)
                   FROM otel_traces_trace_id_ts WHERE TraceId = {trace_id:String})
ORDER BY Timestamp, SpanId
LIMIT 1 BY SpanId
LIMIT {limit:UInt32}
"""


def normalise_trace_id(text: str) -> str | None:
    """The trace id as stored (lower-case hex), or None when it is not hex.

    >>> normalise_trace_id("not-hex") is None
    True
    """
    return text.lower() if _TRACE_ID.fullmatch(text) else None


def read_trace(store: Store, trace_id: str) -> dict[str, Any] | None:
    """The trace as the API returns it; None when no span of it is stored.

    The query is evalhouse's own, so ClickHouse refusing it means the schema is older than
    the code: that is raised as a server-side :class:`EvalhouseError` naming the fix, not as
    a ``QueryError`` (which the API answers as the caller's mistake).

    >>> read_trace(store, "0af7651916cd43dd8448eb211c80319c")   # doctest: +SKIP
    {'trace_id': '0af7...', 'spans': [...], 'orphans': 0, ...}
    """
    try:
        rows = store.query(_SPANS_SQL, {"trace_id": trace_id, "limit": MAX_SPANS + 1})
    except QueryError as exc:
        raise EvalhouseError(
            f"reading trace {trace_id} failed: {exc}; run 'evalhouse migrate'"
        ) from exc
    if not rows:
        return None
    truncated = len(rows) > MAX_SPANS
    spans = [_span(row) for row in rows[:MAX_SPANS]]
    ids = {span["span_id"] for span in spans}
    orphans = 0
    for span in spans:
        span["orphan"] = bool(span["parent_span_id"]) and span["parent_span_id"] not in ids
        orphans += span["orphan"]
    _mark_counted_calls(spans)
    start = min(span["start_ns"] for span in spans)
    end = max(span["end_ns"] for span in spans)
    root = next((s for s in spans if s["purpose"] == "eval"), None) or next(
        (s for s in spans if not s["parent_span_id"]), spans[0]
    )
    experiment = next((s["_experiment"] for s in spans if s["_experiment"]["id"]), None)
    for span in spans:
        del span["_experiment"]
    return {
        "trace_id": trace_id,
        "root_span_id": root["span_id"],
        "start_ns": start,
        "end_ns": end,
        "duration_ms": (end - start) / 1e6,
        "experiment": experiment,
        "spans": spans,
        "orphans": orphans,
        "truncated": truncated,
    }


def _span(row: tuple[Any, ...]) -> dict[str, Any]:
    (
        span_id,
        parent_id,
        name,
        service,
        purpose,
        start_ns,
        duration_ns,
        status_code,
        status_message,
        kind,
        scope,
        attributes,
        resource,
        event_ns,
        event_names,
        event_attributes,
        experiment_id,
        experiment_name,
        row_id,
        trial,
        provider,
        request_model,
        response_model,
        operation,
        input_tokens,
        output_tokens,
        cache_read,
        cache_write,
        reasoning,
        provided_cost,
    ) = row
    attributes = dict(attributes)
    events = [
        {"name": n, "time_ns": int(t), "attributes": dict(a)}
        for t, n, a in zip(event_ns, event_names, event_attributes, strict=False)
    ]
    llm = None
    if provider or request_model or response_model or operation in MODEL_CALLS:
        llm = {
            "provider": provider,
            "request_model": request_model,
            "response_model": response_model,
            "operation": operation,
            "input_tokens": int(input_tokens),
            "output_tokens": int(output_tokens),
            "cache_read_tokens": int(cache_read),
            "cache_write_tokens": int(cache_write),
            "reasoning_tokens": int(reasoning),
            "cost_usd": None,
            "cost_provenance": "none",
            "counted": False,
        }
        if operation in MODEL_CALLS or provided_cost is not None:
            cost = span_cost(
                provider=provider,
                request_model=request_model,
                response_model=response_model,
                usage=Usage(
                    input_tokens=int(input_tokens),
                    output_tokens=int(output_tokens),
                    cache_read_tokens=int(cache_read),
                    cache_write_tokens=int(cache_write),
                    reasoning_tokens=int(reasoning),
                ),
                provided_usd=provided_cost,
                at=datetime.fromtimestamp(int(start_ns) / 1e9, UTC),
            )
            llm["cost_usd"] = cost.usd
            llm["cost_provenance"] = cost.provenance
    start_ns = int(start_ns)
    end_ns = start_ns + int(duration_ns)
    model_call = operation in MODEL_CALLS
    return {
        "span_id": span_id,
        "parent_span_id": parent_id,
        "name": name,
        "service_name": service,
        "purpose": purpose,
        "kind": kind,
        # What the page draws the span as, by the rows' rules: its purpose (eval, task,
        # scorer), else a model call, a tool call (the stored LlmOperation), or a plain span.
        "operation": operation,
        "model_call": model_call,
        "category": purpose
        or ("llm" if model_call else "tool" if operation == "execute_tool" else "span"),
        "scope": scope,
        "start_ns": start_ns,
        "end_ns": end_ns,
        "duration_ms": int(duration_ns) / 1e6,
        "status_code": status_code,
        "status_message": status_message,
        "attributes": attributes,
        "resource": dict(resource),
        "events": events,
        "llm": llm,
        "input_messages": input_messages(attributes, events),
        "output_messages": output_messages(attributes, events),
        "input": _value(INPUT, attributes),
        "output": _value(OUTPUT, attributes),
        "_experiment": {
            "id": experiment_id,
            "name": experiment_name,
            "row_id": row_id,
            "trial": int(trial),
        },
    }


def _value(keys: ValueKeys, attributes: dict[str, str]) -> Any:
    """The span's value by the rows' rule, decoded (text that is not JSON stays text)."""
    text = value_json(keys, attributes)
    return json_or_text(text) if text else None


@dataclass(frozen=True, slots=True)
class _Link:
    span_id: str
    parent_id: str
    operation: str


def _mark_counted_calls(spans: list[dict[str, Any]]) -> None:
    """``llm.counted``: a leaf model call, whose tokens count in the row's totals."""
    tree = CallTree(
        [
            _Link(s["span_id"], s["parent_span_id"], s["llm"]["operation"] if s["llm"] else "")
            for s in spans
        ]
    )
    counted = {call.span_id for call in tree.all_leaf_calls()}
    for span in spans:
        llm = span["llm"]
        if llm is not None and llm["operation"] in MODEL_CALLS:
            llm["counted"] = span["span_id"] in counted
