"""``GET /api/traces/{trace_id}``: every span of one trace, for the web UI's trace page.

Each span comes with its normalised columns (purpose, model, tokens as that span reports
them), its cost (``evaluators._cost.span_cost``: provided, else inferred from the offline
price data, else unknown), its attributes and events, and its input/output messages read
from whichever dialect the span speaks (``shared/reference/genai-attributes.md``): OTel GenAI
``gen_ai.input.messages`` / ``gen_ai.output.messages`` (and the older ``gen_ai.prompt.N`` /
``gen_ai.completion.N``), OpenInference ``llm.input_messages.N.message.*``, the Vercel AI SDK's
``ai.prompt*`` / ``ai.response.text``; evalhouse's ``evalhouse.input`` / ``evalhouse.output``
(and the other dialects' input/output values) come as ``input`` / ``output``.

>>> normalise_trace_id("0AF7651916CD43DD8448EB211C80319C")
'0af7651916cd43dd8448eb211c80319c'
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import QueryError, StoreUnavailable
from evalhouse.evaluators._cost import Usage, span_cost
from evalhouse.store import Store
from evalhouse.surfaces._api_common import error

__all__ = ["MAX_SPANS", "normalise_trace_id", "read_trace", "routes"]

# A trace page with more spans than this is unreadable anyway; the answer says it was cut.
MAX_SPANS = 5_000
# Leaf model calls are the spans whose tokens count (pitfall 1 of genai-attributes.md).
_MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
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
ORDER BY Timestamp, SpanId
LIMIT 1 BY SpanId
LIMIT {limit:UInt32}
"""


def normalise_trace_id(text: str) -> str | None:
    """The trace id as stored (lower-case hex), or None when it is not hex."""
    return text.lower() if _TRACE_ID.fullmatch(text) else None


def read_trace(store: Store, trace_id: str) -> dict[str, Any] | None:
    """The trace as the API returns it; None when no span of it is stored.

    >>> read_trace(store, "0af7651916cd43dd8448eb211c80319c")   # doctest: +SKIP
    {'trace_id': '0af7...', 'spans': [...], 'orphans': 0, ...}
    """
    rows = store.query(_SPANS_SQL, {"trace_id": trace_id, "limit": MAX_SPANS + 1})
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
    if provider or request_model or response_model or operation in _MODEL_CALLS:
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
        if operation in _MODEL_CALLS or provided_cost is not None:
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
    return {
        "span_id": span_id,
        "parent_span_id": parent_id,
        "name": name,
        "service_name": service,
        "purpose": purpose,
        "kind": kind,
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
        "input": _value(attributes, _INPUT_KEYS),
        "output": _value(attributes, _OUTPUT_KEYS),
        "_experiment": {
            "id": experiment_id,
            "name": experiment_name,
            "row_id": row_id,
            "trial": int(trial),
        },
    }


def _mark_counted_calls(spans: list[dict[str, Any]]) -> None:
    """``llm.counted``: a leaf model call, whose tokens count in the row's totals."""
    by_id = {span["span_id"]: span for span in spans}
    has_call_below: set[str] = set()
    for span in spans:
        if span["llm"] is None or span["llm"]["operation"] not in _MODEL_CALLS:
            continue
        seen: set[str] = set()
        parent = by_id.get(span["parent_span_id"])
        while parent is not None and parent["span_id"] not in seen:
            seen.add(parent["span_id"])
            has_call_below.add(parent["span_id"])
            parent = by_id.get(parent["parent_span_id"])
    for span in spans:
        llm = span["llm"]
        if llm is not None and llm["operation"] in _MODEL_CALLS:
            llm["counted"] = span["span_id"] not in has_call_below


# --- input and output values ------------------------------------------------------------------

_INPUT_KEYS = (
    "evalhouse.input",
    "input.value",
    "traceloop.entity.input",
    "langfuse.observation.input",
    "braintrust.input_json",
    "braintrust.input",
)
_OUTPUT_KEYS = (
    "evalhouse.output",
    "output.value",
    "traceloop.entity.output",
    "langfuse.observation.output",
    "braintrust.output_json",
    "braintrust.output",
)


def _value(attributes: Mapping[str, str], keys: Iterable[str]) -> Any:
    """The first present value, JSON-decoded when it is JSON (else the text as is)."""
    for key in keys:
        if key in attributes:
            return _json_or_text(attributes[key])
    return None


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- messages ---------------------------------------------------------------------------------


def _message(role: Any, content: Any) -> dict[str, str]:
    return {"role": str(role or ""), "content": _text(content)}


def _text(content: Any) -> str:
    """Message content as readable text: parts joined, tool calls shown as calls."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(text for text in (_text(part) for part in content) if text)
    if isinstance(content, dict):
        kind = content.get("type")
        if kind in ("tool_call", "function_call", "tool-call") or "arguments" in content:
            name = content.get("name") or content.get("toolName") or "tool"
            arguments = content.get("arguments", content.get("args", ""))
            if not isinstance(arguments, str):
                arguments = json.dumps(arguments, ensure_ascii=False)
            return f"→ {name}({arguments})"
        if kind in ("tool_call_response", "tool-result"):
            return f"← {_text(content.get('response', content.get('result')))}"
        for key in ("content", "text", "parts"):
            if key in content:
                return _text(content[key])
    return json.dumps(content, ensure_ascii=False)


def _json_messages(text: str | None) -> list[dict[str, str]]:
    """Messages from a JSON list of ``{role, parts | content}`` (OTel GenAI, Vercel)."""
    if not text:
        return []
    value = _json_or_text(text)
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, str):
        return [_message("", value)]
    if not isinstance(value, list):
        return [_message("", value)]
    messages = []
    for item in value:
        if isinstance(item, dict):
            content = item.get("parts", item.get("content"))
            messages.append(_message(item.get("role"), content))
        else:
            messages.append(_message("", item))
    return messages


def _indexed_messages(attributes: Mapping[str, str], prefix: str, suffix: str) -> list[Any]:
    """Messages flattened as ``<prefix>.<i><suffix>.role`` / ``.content`` attributes."""
    found: dict[int, dict[str, str]] = {}
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+){re.escape(suffix)}\.(.+)")
    for key, value in attributes.items():
        match = pattern.fullmatch(key)
        if match is None:
            continue
        index, field = int(match.group(1)), match.group(2)
        message = found.setdefault(index, {"role": "", "content": ""})
        if field == "role":
            message["role"] = value
        elif field == "content":
            message["content"] = value
        elif field.endswith(".text") and field.startswith("contents."):
            message["content"] = "\n".join(t for t in (message["content"], value) if t)
        elif field.endswith("function.name") and field.startswith("tool_calls."):
            message["content"] = "\n".join(t for t in (message["content"], f"→ {value}()") if t)
    return [found[index] for index in sorted(found)]


def _event_messages(events: list[dict[str, Any]], names: tuple[str, ...], key: str) -> list[Any]:
    for event in events:
        if event["name"] in names and key in event["attributes"]:
            return _json_messages(event["attributes"][key])
    return []


def input_messages(
    attributes: Mapping[str, str], events: list[dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """The messages a model call was given, in whichever dialect the span carries them.

    >>> input_messages({"gen_ai.input.messages":
    ...     '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]'})
    [{'role': 'user', 'content': 'Hi'}]
    """
    messages: list[dict[str, str]] = []
    system = attributes.get("gen_ai.system_instructions")
    if system:
        messages.append(_message("system", _json_or_text(system)))
    if "gen_ai.input.messages" in attributes:
        return messages + _json_messages(attributes["gen_ai.input.messages"])
    for found in (
        _indexed_messages(attributes, "llm.input_messages", ".message"),
        _indexed_messages(attributes, "gen_ai.prompt", ""),
        _json_messages(attributes.get("ai.prompt.messages")),
        _json_messages(attributes.get("ai.prompt")),
        _event_messages(events or [], ("gen_ai.content.prompt",), "gen_ai.prompt"),
    ):
        if found:
            return messages + found
    return messages


def output_messages(
    attributes: Mapping[str, str], events: list[dict[str, Any]] | None = None
) -> list[dict[str, str]]:
    """The messages a model call answered with, in whichever dialect the span carries them.

    >>> output_messages({"llm.output_messages.0.message.role": "assistant",
    ...                  "llm.output_messages.0.message.content": "Paris"})
    [{'role': 'assistant', 'content': 'Paris'}]
    """
    if "gen_ai.output.messages" in attributes:
        return _json_messages(attributes["gen_ai.output.messages"])
    for found in (
        _indexed_messages(attributes, "llm.output_messages", ".message"),
        _indexed_messages(attributes, "gen_ai.completion", ""),
        _event_messages(events or [], ("gen_ai.content.completion",), "gen_ai.completion"),
    ):
        if found:
            return found
    text = attributes.get("ai.response.text")
    return [_message("assistant", text)] if text else []


# --- route ------------------------------------------------------------------------------------


def routes(store: Store, settings: Settings) -> list[Route]:
    async def trace(request: Request) -> Response:
        raw = request.path_params["trace_id"]
        trace_id = normalise_trace_id(raw)
        if trace_id is None:
            return error(
                400,
                f"{raw!r} is not a trace id: expected hex digits "
                "(32 of them, as in the experiment rows' trace_id)",
            )
        try:
            found = await run_in_threadpool(read_trace, store, trace_id)
        except QueryError as exc:
            return error(500, f"reading trace {trace_id} failed: {exc}; run 'evalhouse migrate'")
        except StoreUnavailable as exc:
            return error(503, str(exc))
        if found is None:
            return error(
                404,
                f"no span of trace {trace_id} is stored; check the id, and that the app sends "
                "its spans to this evalhouse (recent spans can take a moment to arrive)",
            )
        return JSONResponse(found)

    return [Route("/api/traces/{trace_id}", trace, methods=["GET"])]
