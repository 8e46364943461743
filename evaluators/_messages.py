"""The messages of a model call, read from whichever dialect its span speaks.

OTel GenAI ``gen_ai.input.messages`` / ``gen_ai.output.messages`` and
``gen_ai.system_instructions`` (and the older ``gen_ai.prompt.N`` / ``gen_ai.completion.N``
attributes and ``gen_ai.content.*`` events), OpenInference ``llm.input_messages.N.message.*``,
the Vercel AI SDK's ``ai.prompt*`` / ``ai.response.text``. Each message becomes
``{"role", "content"}`` with the content as readable text: parts joined, tool calls shown as
calls.

>>> output_messages({"ai.response.text": "Sunny"})
[{'role': 'assistant', 'content': 'Sunny'}]
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = ["input_messages", "json_or_text", "output_messages"]


def json_or_text(text: str) -> Any:
    """The JSON value of ``text``, or the text itself when it is not JSON.

    >>> json_or_text('{"a": 1}'), json_or_text("Paris")
    ({'a': 1}, 'Paris')
    """
    try:
        return json.loads(text)
    except ValueError:
        return text


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
    value = json_or_text(text)
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
        messages.append(_message("system", json_or_text(system)))
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
