"""The request a model call was given, as it was recorded, complete enough to send again.

:mod:`._messages` reads messages as readable text (the trace page, scorers); a replay needs
more: system instructions, every message with its parts (text, images by reference, tool
calls with their ids and arguments, tool results), the tool definitions and the request
parameters (temperature, max tokens, response format). Dialects read, each from the
attributes the evaluator already reads for messages (``reference/genai-attributes.md``):

- OTel GenAI: ``gen_ai.system_instructions``, ``gen_ai.input.messages`` (parts),
  ``gen_ai.tool.definitions``, ``gen_ai.request.*``, ``gen_ai.output.type``; the older
  ``gen_ai.content.prompt`` event and the per-message ``gen_ai.{role}.message`` events;
- OpenLLMetry: ``gen_ai.prompt.N.*`` (with ``tool_calls.M.*``), ``llm.request.functions.N.*``;
- OpenInference: ``llm.input_messages.N.message.*`` (``contents``, ``tool_calls``),
  ``llm.tools.N.tool.json_schema``, ``llm.invocation_parameters``;
- Vercel AI SDK: ``ai.prompt.messages``, ``ai.prompt.tools``, ``ai.settings.*``.

A call whose messages were not recorded (content capture off) has no request: the reason is
given, never a guess.

>>> request, why = recorded_request({"gen_ai.input.messages":
...     '[{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]'})
>>> request["messages"], why
([{'role': 'user', 'content': 'Hi'}], '')
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from evalhouse.evaluators._messages import json_or_text, output_messages
from evalhouse.evaluators._tree import CallTree

__all__ = ["NO_CONTENT", "leaf_call_ids", "recorded_answer", "recorded_request"]

NO_CONTENT = "no recorded messages (the call was recorded without content capture)"

_PARAMS = {
    "gen_ai.request.temperature": "temperature",
    "gen_ai.request.max_tokens": "max_tokens",
    "gen_ai.request.top_p": "top_p",
    "gen_ai.request.frequency_penalty": "frequency_penalty",
    "gen_ai.request.presence_penalty": "presence_penalty",
    "gen_ai.request.seed": "seed",
    "gen_ai.request.stop_sequences": "stop",
    "ai.settings.temperature": "temperature",
    "ai.settings.maxTokens": "max_tokens",
    "ai.settings.maxOutputTokens": "max_tokens",
    "ai.settings.topP": "top_p",
}
# Invocation parameters (OpenInference) that a replay may keep.
_KEPT = frozenset(
    {"temperature", "max_tokens", "max_completion_tokens", "top_p", "frequency_penalty"}
    | {"presence_penalty", "seed", "stop", "response_format", "tool_choice"}
)


def _arguments(value: Any) -> str:
    """Tool-call arguments as the JSON text providers take."""
    if value is None:
        return "{}"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def _tool_call(part: Mapping[str, Any]) -> dict[str, str]:
    raw = part.get("function")
    function: Mapping[str, Any] = raw if isinstance(raw, dict) else {}
    return {
        "id": str(part.get("id") or part.get("toolCallId") or ""),
        "name": str(function.get("name") or part.get("name") or part.get("toolName") or ""),
        "arguments": _arguments(
            function.get("arguments", part.get("arguments", part.get("args", part.get("input"))))
        ),
    }


def _result_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("type") in ("text", "json") and "value" in value:
        value = value["value"]  # Vercel v5's {type, value} output
        if isinstance(value, str):
            return value
    return json.dumps(value, ensure_ascii=False)


@dataclass
class _Message:
    role: str
    parts: list[dict[str, Any]]
    tool_calls: list[dict[str, str]]
    tool_call_id: str = ""

    def json(self) -> dict[str, Any]:
        texts = [p["text"] for p in self.parts if p["type"] == "text"]
        content: Any = texts[0] if len(texts) == len(self.parts) == 1 else self.parts or None
        if content is None and not self.tool_calls:
            content = ""
        message: dict[str, Any] = {"role": self.role, "content": content}
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        if self.tool_call_id:
            message["tool_call_id"] = self.tool_call_id
        return message


def _add_part(message: _Message, part: Any) -> None:
    """One content part in any dialect's spelling."""
    if part is None:
        return
    if isinstance(part, str):
        message.parts.append({"type": "text", "text": part})
        return
    if not isinstance(part, dict):
        message.parts.append({"type": "text", "text": json.dumps(part, ensure_ascii=False)})
        return
    kind = str(part.get("type", "text"))
    if kind in ("tool_call", "function_call", "tool-call", "function"):
        message.tool_calls.append(_tool_call(part))
    elif kind in ("tool_call_response", "tool-result", "tool_result"):
        message.tool_call_id = str(part.get("id") or part.get("toolCallId") or "")
        result = part.get("response", part.get("result", part.get("output")))
        message.parts.append({"type": "text", "text": _result_text(result)})
    elif kind in ("image_url", "image", "uri", "file", "blob"):
        url = part.get("image_url", part.get("image", part.get("uri", part.get("url"))))
        if isinstance(url, dict):
            url = url.get("url")
        if isinstance(url, str) and url:
            message.parts.append({"type": "image", "url": url})
    elif kind == "reasoning":
        return
    else:
        text = part.get("content", part.get("text"))
        if text is not None:
            message.parts.append({"type": "text", "text": text if isinstance(text, str) else ""})


def _json_message(item: Any) -> _Message:
    if not isinstance(item, dict):
        message = _Message("user", [], [])
        _add_part(message, item)
        return message
    message = _Message(str(item.get("role") or "user"), [], [])
    content = item.get("parts", item.get("content"))
    if isinstance(content, str) and content[:1] == "[":
        content = json_or_text(content)
    for part in content if isinstance(content, list) else [content]:
        _add_part(message, part)
    for call in item.get("tool_calls") or ():
        if isinstance(call, dict):
            message.tool_calls.append(_tool_call(call))
    if item.get("tool_call_id"):
        message.tool_call_id = str(item["tool_call_id"])
    return message


def _json_messages(text: str | None) -> list[_Message]:
    if not text:
        return []
    value = json_or_text(text)
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if isinstance(value, str):
        return [_json_message(value)]
    return [_json_message(item) for item in value] if isinstance(value, list) else []


def _indexed(attributes: Mapping[str, str], prefix: str) -> dict[int, dict[str, str]]:
    """``<prefix>.<i>.<rest>`` attributes grouped by ``i``."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.(.+)")
    found: dict[int, dict[str, str]] = {}
    for key, value in attributes.items():
        match = pattern.fullmatch(key)
        if match is not None:
            found.setdefault(int(match.group(1)), {})[match.group(2)] = value
    return dict(sorted(found.items()))


def _flat_message(fields: Mapping[str, str], head: str) -> _Message:
    """One OpenLLMetry (``head`` "") or OpenInference (``head`` "message.") message."""
    message = _Message(fields.get(f"{head}role", "") or "user", [], [])
    contents = _indexed(fields, f"{head}contents")
    for part in contents.values():
        kind = part.get("message_content.type", "text")
        if kind == "image":
            _add_part(
                message, {"type": "image", "url": part.get("message_content.image.image.url")}
            )
        else:
            _add_part(message, part.get("message_content.text", ""))
    if not contents and f"{head}content" in fields:
        content = fields[f"{head}content"]
        parsed = json_or_text(content) if content[:1] == "[" else content
        for item in parsed if isinstance(parsed, list) else [parsed]:
            _add_part(message, item)
    call_prefix = "tool_call." if head else ""
    for call in _indexed(fields, f"{head}tool_calls").values():
        message.tool_calls.append(
            {
                "id": call.get(f"{call_prefix}id", ""),
                "name": call.get(f"{call_prefix}function.name", call.get("name", "")),
                "arguments": call.get(
                    f"{call_prefix}function.arguments", call.get("arguments", "{}")
                ),
            }
        )
    message.tool_call_id = fields.get(f"{head}tool_call_id", "")
    return message


def _event_messages(events: Iterable[Mapping[str, Any]]) -> list[_Message]:
    messages: list[_Message] = []
    for event in events:
        name, attributes = event["name"], event["attributes"]
        if name == "gen_ai.content.prompt" and "gen_ai.prompt" in attributes:
            return _json_messages(attributes["gen_ai.prompt"])
        match = re.fullmatch(r"gen_ai\.(system|user|assistant|tool)\.message", name)
        if match is None:
            continue
        item: dict[str, Any] = {"role": attributes.get("role") or match.group(1)}
        if "content" in attributes:
            item["content"] = json_or_text(attributes["content"])
        if "tool_calls" in attributes:
            item["tool_calls"] = json_or_text(attributes["tool_calls"])
        if "id" in attributes and match.group(1) == "tool":
            item["tool_call_id"] = attributes["id"]
        messages.append(_json_message(item))
    return messages


def _messages(attributes: Mapping[str, str], events: list[dict[str, Any]]) -> list[_Message]:
    if "gen_ai.input.messages" in attributes:
        return _json_messages(attributes["gen_ai.input.messages"])
    indexed = _indexed(attributes, "llm.input_messages")
    if indexed:
        return [_flat_message(fields, "message.") for fields in indexed.values()]
    indexed = _indexed(attributes, "gen_ai.prompt")
    if indexed:
        return [_flat_message(fields, "") for fields in indexed.values()]
    for key in ("ai.prompt.messages", "ai.prompt"):
        if attributes.get(key):
            return _json_messages(attributes[key])
    return _event_messages(events)


def _tool(value: Any) -> dict[str, Any] | None:
    """A tool definition as ``{name, description, parameters}``."""
    if isinstance(value, str):
        value = json_or_text(value)
    if not isinstance(value, dict):
        return None
    nested = value.get("function")
    inner: Mapping[str, Any] = nested if isinstance(nested, dict) else value
    name = inner.get("name")
    if not name:
        return None
    tool: dict[str, Any] = {"name": str(name)}
    if inner.get("description"):
        tool["description"] = str(inner["description"])
    parameters = inner.get("parameters", inner.get("inputSchema", inner.get("input_schema")))
    if isinstance(parameters, str):
        parameters = json_or_text(parameters)
    if isinstance(parameters, dict):
        tool["parameters"] = parameters
    return tool


def _tools(attributes: Mapping[str, str]) -> list[dict[str, Any]]:
    raw: list[Any] = []
    for key in ("gen_ai.tool.definitions", "ai.prompt.tools"):
        value = json_or_text(attributes[key]) if attributes.get(key) else None
        if isinstance(value, list):
            raw = value
            break
    if not raw:
        raw = [f.get("tool.json_schema") for f in _indexed(attributes, "llm.tools").values()]
    if not raw:
        for fields in _indexed(attributes, "llm.request.functions").values():
            raw.append({k: fields[k] for k in ("name", "description", "parameters") if k in fields})
    return [tool for tool in map(_tool, raw) if tool is not None]


def _number(text: str) -> Any:
    value = json_or_text(text)
    return value if isinstance(value, int | float | list) else text


def _params(attributes: Mapping[str, str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    invocation = json_or_text(attributes.get("llm.invocation_parameters", "") or "{}")
    if isinstance(invocation, dict):
        params.update({k: v for k, v in invocation.items() if k in _KEPT})
    for key, name in _PARAMS.items():
        if attributes.get(key):
            params[name] = _number(attributes[key])
    if "max_completion_tokens" in params:
        params.setdefault("max_tokens", params.pop("max_completion_tokens"))
    output_type = attributes.get("gen_ai.output.type", "")
    if output_type == "json" and "response_format" not in params:
        params["response_format"] = {"type": "json_object"}
    return params


def _system(attributes: Mapping[str, str]) -> str:
    value = attributes.get("gen_ai.system_instructions") or attributes.get("ai.prompt.system")
    if not value:
        return ""
    parsed = json_or_text(value)
    message = _Message("system", [], [])
    for part in parsed if isinstance(parsed, list) else [parsed]:
        _add_part(message, part)
    return "\n".join(p["text"] for p in message.parts if p["type"] == "text")


def recorded_request(
    attributes: Mapping[str, str], events: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any] | None, str]:
    """``({"system", "messages", "tools", "params"}, "")`` for a model call, or
    ``(None, reason)`` when the span did not record what it was asked.

    Messages are ``{"role", "content", "tool_calls"?, "tool_call_id"?}``: ``content`` is the
    text, or a list of parts ``{"type": "text", "text"}`` / ``{"type": "image", "url"}``; a
    tool call is ``{"id", "name", "arguments"}`` (arguments as JSON text).

    >>> recorded_request({"gen_ai.request.model": "gpt-4o"})[1]
    'no recorded messages (the call was recorded without content capture)'
    """
    messages = [m.json() for m in _messages(attributes, events or [])]
    if not messages:
        return None, NO_CONTENT
    return {
        "system": _system(attributes),
        "messages": messages,
        "tools": _tools(attributes),
        "params": _params(attributes),
    }, ""


def recorded_answer(
    attributes: Mapping[str, str], events: list[dict[str, Any]] | None = None
) -> str | None:
    """The text a model call answered with (its last output message), None if unrecorded.

    >>> recorded_answer({"ai.response.text": "Sunny"})
    'Sunny'
    """
    found = output_messages(attributes, events)
    return found[-1]["content"] if found else None


@dataclass(frozen=True)
class _Link:
    span_id: str
    parent_id: str
    operation: str


def leaf_call_ids(spans: Iterable[tuple[str, str, str]]) -> set[str]:
    """The leaf model calls among one trace's ``(span_id, parent_id, operation)``: the calls
    that count (``_tree.py``), the ones a replay sends again.

    >>> sorted(leaf_call_ids([("a", "", "chat"), ("b", "a", "chat"), ("c", "", "x")]))
    ['b']
    """
    tree = CallTree([_Link(*span) for span in spans])
    return {span.span_id for span in tree.all_leaf_calls()}
