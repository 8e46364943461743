"""What a trace is, as the explorer lists it: one summary computed from its spans.

The rules are the experiments' own, imported rather than restated: which spans are model
calls and which of them count (:mod:`._tree`, leaf calls only), their cost (:mod:`._metrics`
over :mod:`._cost`: provided wins, else the bundled price data, else unknown and never $0),
which attribute holds an input or output (:mod:`._values`) and the messages of a model call
(:mod:`._messages`). Session, user and tags are read from any span of the trace (an app need
not propagate them to every span), in every dialect of ``docs/sql.md`` ("Traces").

>>> tags_of({"evalhouse.tags": "beta, vip"})
['beta', 'vip']
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse import contract
from evalhouse.evaluators._messages import input_messages, json_or_text, output_messages
from evalhouse.evaluators._metrics import call_costs, totals
from evalhouse.evaluators._traces import Span
from evalhouse.evaluators._tree import CallTree
from evalhouse.evaluators._values import INPUT, OUTPUT, value_json

__all__ = [
    "MESSAGE_KEYS",
    "MESSAGE_PREFIXES",
    "PREVIEW_CHARS",
    "SESSION_KEYS",
    "TAG_KEYS",
    "USER_KEYS",
    "Call",
    "Link",
    "Summary",
    "TraceSpans",
    "summarize",
    "tags_of",
]

# The first of these found on any span (the root first, then by start time) wins.
SESSION_KEYS = (
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.session.id",
    "traceloop.association.properties.session_id",
    "ai.telemetry.metadata.sessionId",
    "ai.telemetry.metadata.session_id",
)
USER_KEYS = (
    "user.id",
    "enduser.id",
    "langfuse.user.id",
    "traceloop.association.properties.user_id",
    "ai.telemetry.metadata.userId",
    "ai.telemetry.metadata.user_id",
)
# Every span's tags are collected: a JSON array, or a comma-separated list.
TAG_KEYS = (contract.TAGS, "langfuse.trace.tags", "tag.tags", "ai.telemetry.metadata.tags")
# Where model calls keep their messages (read on model-call spans only: they are large).
MESSAGE_KEYS = (
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.system_instructions",
    "ai.prompt",
    "ai.prompt.messages",
    "ai.response.text",
)
MESSAGE_PREFIXES = (
    "llm.input_messages.",
    "llm.output_messages.",
    "gen_ai.prompt.",
    "gen_ai.completion.",
)

PREVIEW_CHARS = 500
# What text search reads of a trace: its input and output, capped so that one huge prompt
# cannot make the row (and the text index) heavy. Parsing every model call's messages too
# halved the summarizer's throughput (benchmarks/explorer.py).
SEARCH_PART_CHARS = 4_000
SEARCH_CHARS = 16_000


@dataclass(frozen=True, slots=True)
class Link:
    """A span's place in its trace and its operation: all the leaf rule reads."""

    span_id: str
    parent_id: str
    operation: str


@dataclass(slots=True)
class TraceSpans:
    """One trace as the summarizer reads it: totals ClickHouse computed, the links of every
    span, and only the spans whose content matters (the root, model calls, spans naming a
    session, user or tags), so a trace costs a handful of Python objects."""

    trace_id: str
    start_ns: int
    end_ns: int
    span_count: int
    error_count: int
    inserted_ms: int
    experimental: bool
    experiment_id: str
    root_span_id: str
    root_name: str
    root_service: str
    root_attributes: Mapping[str, str]
    # Attributes naming a session, user or tags, the root's first, then by start time.
    marks: list[Mapping[str, str]]
    links: list[Link]
    calls: list[Span]  # model-call spans, with their messages' attributes
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Call:
    """One leaf model call, as usage by model adds it up."""

    span_id: str
    provider: str
    model: str
    duration_ms: float
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """One trace's row of ``trace_summaries`` (without its bookkeeping columns)."""

    trace_id: str
    start_ns: int
    end_ns: int
    kind: str
    root_span_id: str
    root_name: str
    service_name: str
    session_id: str
    user_id: str
    tags: list[str]
    span_count: int
    error_count: int
    models: list[str]
    providers: list[str]
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    cost_usd: float | None
    cost_known_usd: float
    cost_provenance: str
    input_preview: str
    output_preview: str
    search_text: str
    experiment_id: str
    calls: list[Call]
    inserted_ms: int

    @property
    def status(self) -> str:
        return "error" if self.error_count else "ok"

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def summarize(trace: TraceSpans) -> Summary:
    """The summary of one trace.

    >>> summarize(trace).total_tokens   # doctest: +SKIP
    1234
    """
    calls = {span.span_id: span for span in trace.calls}
    if len(calls) > 1:
        leaf_ids = {link.span_id for link in CallTree(trace.links).all_leaf_calls()}
        leaves = [span for span in calls.values() if span.span_id in leaf_ids]
    else:
        leaves = list(calls.values())
    leaves.sort(key=lambda s: (s.start_ns, s.span_id))
    costs = call_costs(leaves)
    total = totals(leaves, costs)
    input_text = _value_text(value_json(INPUT, trace.root_attributes))
    output_text = _value_text(value_json(OUTPUT, trace.root_attributes))
    # Without values on the root (an auto-instrumented app), the conversation is the trace's
    # input and output: the first call's last user message, the last call's answer.
    if not input_text and leaves:
        first = leaves[0]
        asked = input_messages(first.attributes, trace.events.get(first.span_id))
        input_text = _last_user_text(asked)
    if not output_text and leaves:
        last = leaves[-1]
        output_text = _text(output_messages(last.attributes, trace.events.get(last.span_id)))
    return Summary(
        trace_id=trace.trace_id,
        start_ns=trace.start_ns,
        end_ns=trace.end_ns,
        kind="experiment" if trace.experimental else "production",
        root_span_id=trace.root_span_id,
        root_name=trace.root_name,
        service_name=trace.root_service,
        session_id=_first(trace.marks, SESSION_KEYS),
        user_id=_first(trace.marks, USER_KEYS),
        tags=_distinct(tag for attrs in trace.marks for tag in tags_of(attrs)),
        span_count=trace.span_count,
        error_count=trace.error_count,
        models=_distinct(call.request_model or call.response_model for call in leaves),
        providers=_distinct(call.provider for call in leaves),
        input_tokens=total.input_tokens,
        output_tokens=total.output_tokens,
        cache_read_tokens=total.cache_read_tokens,
        cache_write_tokens=total.cache_write_tokens,
        reasoning_tokens=total.reasoning_tokens,
        cost_usd=total.cost_usd,
        cost_known_usd=total.cost_known_usd,
        cost_provenance=total.cost_provenance,
        input_preview=input_text[:PREVIEW_CHARS],
        output_preview=output_text[:PREVIEW_CHARS],
        search_text=_search_text([input_text, output_text]),
        experiment_id=trace.experiment_id,
        calls=[
            Call(
                span_id=call.span_id,
                provider=call.provider,
                model=call.request_model or call.response_model,
                duration_ms=call.duration_ns / 1e6,
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cost_usd=cost.usd,
            )
            for call, cost in zip(leaves, costs, strict=True)
        ],
        inserted_ms=trace.inserted_ms,
    )


def tags_of(attributes: Mapping[str, str]) -> list[str]:
    """The tags one span carries, in any dialect: a JSON array or a comma-separated list.

    >>> tags_of({"tag.tags": '["a", "b"]', "langfuse.trace.tags": "c"})
    ['c', 'a', 'b']
    """
    found: list[str] = []
    for key in TAG_KEYS:
        text = attributes.get(key, "").strip()
        if not text:
            continue
        value = json_or_text(text) if text.startswith("[") else text
        items = value if isinstance(value, list) else str(value).split(",")
        found += [str(item).strip() for item in items if str(item).strip()]
    return found


def _first(attributes: Sequence[Mapping[str, str]], keys: Sequence[str]) -> str:
    for key in keys:
        for attrs in attributes:
            value = attrs.get(key, "").strip()
            if value:
                return value
    return ""


def _distinct(values: Any) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _value_text(text: str) -> str:
    """A value (a JSON text) as people read it: a JSON string unquoted, the rest as JSON."""
    if not text:
        return ""
    value = json_or_text(text)
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _last_user_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user" and message["content"]:
            return message["content"]
    return _text(messages[-1:])


def _text(messages: list[dict[str, str]]) -> str:
    return "\n".join(m["content"] for m in messages if m["content"])


def _search_text(parts: list[str]) -> str:
    text = "\n".join(part[:SEARCH_PART_CHARS] for part in parts if part)
    return text[:SEARCH_CHARS]
