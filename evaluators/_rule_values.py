"""What a scorer sees of a rule's target: ``input``, ``output``, ``expected``, ``metadata``.

Defaults, in every dialect the evaluator reads (the value rule of :mod:`._values`, the
messages of :mod:`._messages`, the leaf calls of :mod:`._tree`):

- a **trace**: the root span's value (``evalhouse.input`` / ``input.value`` / ...); without one
  (an auto-instrumented app), the messages the first model call was given and the answer of
  the last one; ``expected`` from the root, ``metadata`` the trace's session, user, tags and
  models;
- a **span**: its own value, else its messages (a chat span: the conversation it was given
  and its answer);
- a **session**: its turns as a conversation (each trace's input and output, as the explorer
  shows them) and the last answer as the output.

A rule's ``mapping`` overrides a field with ``root`` (the trace root's value), ``span`` (the
target span's value), ``messages`` (the model calls' messages), ``none``, or an attribute name
(``attr:`` prefix optional), read on the target span, else the root, else any span of the trace;
an attribute that is nowhere is a mapping failure, which the rule counts.

>>> check_mapping("trace", {"output": "attr:answer.text"})
{'output': 'attr:answer.text'}
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalhouse.errors import InvalidRequest
from evalhouse.evaluators._messages import input_messages, json_or_text, output_messages
from evalhouse.evaluators._summary_rows import MESSAGE_KEYS, MESSAGE_PREFIXES
from evalhouse.evaluators._tree import MODEL_CALLS, CallTree
from evalhouse.evaluators._values import EXPECTED, INPUT, METADATA, OUTPUT, ValueKeys, value_json
from evalhouse.store import Store, in_ids

__all__ = ["FIELDS", "Values", "check_mapping", "json_text", "target_values", "trace_values"]

FIELDS = ("input", "output", "expected", "metadata")
_KEYWORDS = ("root", "span", "messages", "none", "default")
_KEYS = {"input": INPUT, "output": OUTPUT, "expected": EXPECTED, "metadata": METADATA}


@dataclass(frozen=True, slots=True)
class Values:
    """What a scorer is given for one target, or why there is nothing to give (``problem``:
    ``no_output`` or ``mapping_failed`` with ``detail``)."""

    input: Any = None
    output: Any = None
    expected: Any = None
    metadata: Any = None
    problem: str = ""
    detail: str = ""


def check_mapping(scope: str, mapping: Mapping[str, str]) -> dict[str, str]:
    """A rule's mapping, checked; :class:`InvalidRequest` naming a bad field or source."""
    checked = {}
    for name, source in mapping.items():
        if name not in FIELDS:
            raise InvalidRequest(f"mapping field {name!r} is not one of {', '.join(FIELDS)}")
        if not isinstance(source, str) or not source.strip():
            raise InvalidRequest(
                f"mapping {name}: give an attribute name or one of {', '.join(_KEYWORDS)}"
            )
        source = source.strip()
        if scope == "session" and source not in ("none", "default"):
            raise InvalidRequest(
                f"mapping {name}={source!r}: a session rule reads its turns; only none or "
                "default are possible"
            )
        if source == "span" and scope != "span":
            raise InvalidRequest(f"mapping {name}=span: only a span rule has a target span")
        checked[name] = source
    return checked


@dataclass(slots=True)
class _Span:
    span_id: str
    parent_id: str
    operation: str
    start_ns: int
    attributes: Mapping[str, str]
    events: list[dict[str, Any]]


def _keys(keys: Sequence[str]) -> str:
    return ", ".join("'" + key.replace("\\", "\\\\").replace("'", "\\'") + "'" for key in keys)


_PREFIXES = " OR ".join(f"startsWith(k, '{p}')" for p in MESSAGE_PREFIXES)
_VALUE_KEYS = sorted({key for keys in _KEYS.values() for key in (keys.own, *keys.others)})
_SPANS = """
SELECT TraceId, SpanId, ParentSpanId, LlmOperation, toUnixTimestamp64Nano(Timestamp),
    mapFilter((k, v) -> k IN ({values}) OR k IN {{extra:Array(String)}}
        OR (LlmOperation IN ({calls}) AND (k IN ({messages}) OR {prefixes})), SpanAttributes),
    if(LlmOperation IN ({calls}),
       arrayFilter(n -> startsWith(n, 'gen_ai.content.'), Events.Name), []),
    if(LlmOperation IN ({calls}),
       arrayFilter((a, n) -> startsWith(n, 'gen_ai.content.'), Events.Attributes, Events.Name), [])
FROM otel_traces
WHERE {ids_in}
  AND Timestamp >= (SELECT toDateTime64(min(Start), 9, 'UTC') FROM otel_traces_trace_id_ts
                    WHERE {ids_in})
  AND Timestamp < (SELECT toDateTime64(max(End), 9, 'UTC') + INTERVAL 1 SECOND
                   FROM otel_traces_trace_id_ts WHERE {ids_in})
LIMIT 1 BY TraceId, SpanId"""


def _attribute_names(mapping: Mapping[str, str]) -> list[str]:
    return sorted(
        source.removeprefix("attr:") for source in mapping.values() if source not in _KEYWORDS
    )


def target_values(
    store: Store,
    scope: str,
    targets: Sequence[tuple[str, str, Mapping[str, Any]]],
    mapping: Mapping[str, str],
) -> list[Values]:
    """The values of each target (``(trace id, span id, details)``; details as
    ``find_targets`` gives them), in order."""
    if scope == "session":
        return [_session_values(details, mapping) for _, _, details in targets]
    ids = sorted({trace_id for trace_id, _, _ in targets})
    spans: dict[str, list[_Span]] = {}
    if ids:
        sql = _SPANS.format(
            values=_keys(_VALUE_KEYS),
            calls=_keys(sorted(MODEL_CALLS)),
            messages=_keys(MESSAGE_KEYS),
            prefixes=_PREFIXES,
            ids_in=in_ids("TraceId", "ids"),  # a backfill's batch can be long
        )
        params = {"ids": ids, "extra": _attribute_names(mapping)}
        for row in store.query(sql, params):
            events = [
                {"name": name, "attributes": dict(attrs)}
                for name, attrs in zip(row[6], row[7], strict=False)
            ]
            spans.setdefault(row[0], []).append(
                _Span(row[1], row[2], row[3], row[4], dict(row[5]), events)
            )
    out = []
    for trace_id, span_id, details in targets:
        found = spans.get(trace_id, [])
        try:
            out.append(_trace_values(found, span_id, details, mapping, scope))
        except _MappingFailed as exc:
            out.append(Values(problem="mapping_failed", detail=str(exc)))
    return out


class _MappingFailed(Exception):
    pass


def _decoded(keys: ValueKeys, attributes: Mapping[str, str]) -> Any:
    text = value_json(keys, attributes)
    return json_or_text(text) if text else None


def _answer(messages: list[dict[str, str]]) -> str | None:
    text = "\n".join(m["content"] for m in messages if m["content"])
    return text or None


def _trace_values(
    spans: list[_Span],
    span_id: str,
    details: Mapping[str, Any],
    mapping: Mapping[str, str],
    scope: str,
) -> Values:
    if not spans:
        return Values(problem="mapping_failed", detail="no span of the trace is stored")
    ordered = sorted(spans, key=lambda s: (s.start_ns, s.span_id))
    root = next((s for s in ordered if not s.parent_id), ordered[0])
    target = next((s for s in spans if s.span_id == span_id), None) if span_id else root
    if target is None:
        return Values(problem="mapping_failed", detail=f"span {span_id} is not stored")
    calls = sorted(CallTree(spans).all_leaf_calls(), key=lambda s: (s.start_ns, s.span_id))
    if scope == "span":
        calls = [target] if target.operation in MODEL_CALLS else []

    def messages(name: str) -> Any:
        if not calls:
            return None
        if name == "input":
            return input_messages(calls[0].attributes, calls[0].events) or None
        if name == "output":
            return _answer(output_messages(calls[-1].attributes, calls[-1].events))
        return None

    def default(name: str) -> Any:
        own = _decoded(_KEYS[name], target.attributes)
        if own is not None:
            return own
        if name == "metadata":
            return _metadata(scope, target, details)
        return messages(name)

    def attribute(key: str) -> Any:
        for span in (target, root, *ordered):
            if key in span.attributes and span.attributes[key] != "":
                return json_or_text(span.attributes[key])
        raise _MappingFailed(key)

    values: dict[str, Any] = {}
    for name in FIELDS:
        source = mapping.get(name, "default")
        if source == "default":
            values[name] = default(name)
        elif source == "none":
            values[name] = None
        elif source == "root":
            values[name] = _decoded(_KEYS[name], root.attributes)
        elif source == "span":
            values[name] = _decoded(_KEYS[name], target.attributes)
        elif source == "messages":
            values[name] = messages(name)
        else:
            try:
                values[name] = attribute(source.removeprefix("attr:"))
            except _MappingFailed:
                return Values(
                    problem="mapping_failed",
                    detail=f"{name}: attribute {source.removeprefix('attr:')!r} is on no span",
                )
    if values["output"] in (None, "", [], {}):
        return Values(**values, problem="no_output", detail="the target has no output")
    return Values(**values)


def _metadata(scope: str, target: _Span, details: Mapping[str, Any]) -> dict[str, Any]:
    if scope == "span":
        return {"span_id": target.span_id, **{k: v for k, v in details.items() if v}}
    keys = ("session_id", "user_id", "tags", "models", "root_name", "service_name")
    return {key: details[key] for key in keys if details.get(key)}


def _session_values(details: Mapping[str, Any], mapping: Mapping[str, str]) -> Values:
    turns: list[tuple[str, str]] = list(details.get("turns") or [])
    conversation: list[dict[str, str]] = []
    for asked, answered in turns[:-1]:
        conversation += _turn(asked, answered)
    if turns:
        conversation += _turn(turns[-1][0], "")
    output = turns[-1][1] if turns else ""
    values: dict[str, Any] = {
        "input": conversation or None,
        "output": output or None,
        "expected": None,
        "metadata": {k: details[k] for k in ("user_id", "traces") if details.get(k)},
    }
    for name, source in mapping.items():
        if source == "none":
            values[name] = None
    if not values["output"]:
        return Values(**values, problem="no_output", detail="the last turn has no output")
    return Values(**values)


def _turn(asked: str, answered: str) -> list[dict[str, str]]:
    turn = [{"role": "user", "content": asked}] if asked else []
    return turn + ([{"role": "assistant", "content": answered}] if answered else [])


def json_text(value: Any) -> str:
    """A value as the scorer pool takes it: JSON text ("" for none)."""
    return "" if value is None else json.dumps(value, ensure_ascii=False, default=str)


_DETAILS = f"""
SELECT trace_id, session_id, user_id, tags, models, root_name, service_name
FROM trace_summaries FINAL WHERE {in_ids("trace_id", "ids")}"""


def trace_values(
    store: Store, trace_ids: Sequence[str], mapping: Mapping[str, str] | None = None
) -> list[Values]:
    """The values of whole traces by the rules' value rule (a dataset made of production
    traces reads them the same way a rule's scorer sees them), in order.

    >>> trace_values(store, ["0af7651916cd43dd8448eb211c80319c"])[0].input   # doctest: +SKIP
    [{'role': 'user', 'content': 'What is the capital of France?'}]
    """
    checked = check_mapping("trace", mapping or {})
    details: dict[str, dict[str, Any]] = {}
    if trace_ids:
        for row in store.query_dicts(_DETAILS, {"ids": list(trace_ids)}):
            details[row.pop("trace_id")] = row
    return target_values(store, "trace", [(t, "", details.get(t, {})) for t in trace_ids], checked)
