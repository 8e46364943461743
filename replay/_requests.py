"""A recorded request sent again, to another model, through the provider's own client.

The request (:func:`evalhouse.evaluators.recorded_request`) is provider-neutral; this module
writes it in the target's API: OpenAI chat completions (``openai``, also any OpenAI-compatible
server through ``base_url``) or Anthropic messages (``anthropic``, when installed). System
instructions, tool definitions, tool calls with their ids and tool results go as they were
recorded; so do the request parameters the target takes. The call is made with the official
client and traced by the caller itself: one ``chat MODEL`` client span with the OTel GenAI
attributes (provider, request and response model, tokens, finish reasons), a child of the
experiment's task span, so the evaluator prices it like any experiment's call. Nothing is
auto-instrumented: the server that replays keeps its own LLM calls (judges) out of its traces.

>>> openai_messages({"system": "Be brief.", "messages": [{"role": "user", "content": "Hi"}]})
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.trace import SpanKind, Status, StatusCode

from evalhouse.errors import EvalhouseError
from evalhouse.replay._spec import Target

__all__ = ["Answer", "Caller", "openai_messages", "openai_tools"]

_ROLES = {"human": "user", "ai": "assistant", "model": "assistant", "bot": "assistant"}
_OPENAI_PARAMS = (
    "temperature",
    "max_tokens",
    "top_p",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "stop",
    "response_format",
    "tool_choice",
)


@dataclass(frozen=True)
class Answer:
    """What the replayed call answered, as text (tool calls shown as calls), and its usage."""

    text: str
    input_tokens: int
    output_tokens: int
    response_model: str = ""
    cache_read_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reasons: tuple[str, ...] = ()


def _parts(content: Any) -> Any:
    if not isinstance(content, list):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if part.get("type") == "image":
            parts.append({"type": "image_url", "image_url": {"url": part["url"]}})
        else:
            parts.append({"type": "text", "text": part.get("text", "")})
    return parts


def _text_of(content: Any) -> str:
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if p.get("type") == "text")
    return "" if content is None else str(content)


def openai_messages(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The request's messages in OpenAI's chat format, system instructions first; tool calls
    without a recorded id get one, and tool results without one answer the oldest open call.
    """
    messages: list[dict[str, Any]] = []
    if request.get("system"):
        messages.append({"role": "system", "content": request["system"]})
    open_calls: list[str] = []
    for index, message in enumerate(request.get("messages", [])):
        role = _ROLES.get(message["role"], message["role"])
        out: dict[str, Any] = {"role": role}
        if message.get("tool_calls"):
            calls = []
            for number, call in enumerate(message["tool_calls"]):
                call_id = call.get("id") or f"call_{index}_{number}"
                open_calls.append(call_id)
                calls.append(
                    {
                        "id": call_id,
                        "type": "function",
                        "function": {"name": call["name"], "arguments": call["arguments"]},
                    }
                )
            out["content"] = _text_of(message.get("content")) or None
            out["tool_calls"] = calls
        elif role == "tool":
            call_id = message.get("tool_call_id") or (open_calls[0] if open_calls else "call_0")
            if call_id in open_calls:
                open_calls.remove(call_id)
            out["tool_call_id"] = call_id
            out["content"] = _text_of(message.get("content"))
        else:
            out["content"] = _parts(message.get("content"))
        messages.append(out)
    return messages


def openai_tools(request: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tool definitions in OpenAI's ``tools`` format."""
    tools = []
    for tool in request.get("tools", []):
        function = {k: tool[k] for k in ("name", "description", "parameters") if k in tool}
        tools.append({"type": "function", "function": function})
    return tools


def _shown(name: str, arguments: str) -> str:
    """A tool call as the trace reader shows one (``evaluators/_messages.py``)."""
    return f"→ {name}({arguments})"


class Caller:
    """Sends requests to one target through one thread-safe client (the runner calls it from
    its worker threads); :meth:`close` when done.

    >>> Caller(Target("openai", "gpt-4o-mini"), base_url="http://127.0.0.1:9/v1")  # doctest: +SKIP
    """

    def __init__(
        self, target: Target, *, base_url: str = "", tracer: trace.Tracer | None = None
    ) -> None:
        self.target = target
        self.base_url = base_url
        self.tracer = tracer or trace.get_tracer("evalhouse.replay")
        self._client_obj: Any = None
        self._lock = threading.Lock()
        if target.provider == "anthropic":
            try:
                import anthropic  # noqa: F401
            except ImportError as exc:
                raise EvalhouseError(
                    f"replaying on {target.label} needs the anthropic package: "
                    "pip install 'evalhouse[anthropic]'"
                ) from exc

    def _client(self) -> Any:
        with self._lock:  # one client for every worker thread (a client pools connections)
            if self._client_obj is None:
                self._client_obj = self._new_client()
            return self._client_obj

    def _new_client(self) -> Any:
        if self.target.provider == "anthropic":
            import anthropic

            return anthropic.Anthropic(base_url=self.base_url or None)
        import openai

        key = os.environ.get("OPENAI_API_KEY") or ("unused" if self.base_url else None)
        return openai.OpenAI(base_url=self.base_url or None, api_key=key)

    def close(self) -> None:
        if self._client_obj is not None:
            self._client_obj.close()
            self._client_obj = None

    def call(self, request: Mapping[str, Any]) -> Answer:
        """Send ``request`` to the target and return its answer, traced as one model call."""
        params = request.get("params", {})
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": self.target.provider,
            "gen_ai.request.model": self.target.model,
        }
        for name in ("temperature", "max_tokens", "top_p"):
            if isinstance(params.get(name), int | float):
                attributes[f"gen_ai.request.{name}"] = params[name]
        with (
            self.tracer.start_as_current_span(
                f"chat {self.target.model}",
                kind=SpanKind.CLIENT,
                attributes=attributes,
                record_exception=True,
                set_status_on_exception=True,
            ) as span,
            suppress_instrumentation(),  # an instrumented process would trace it twice
        ):
            answer = (
                self._anthropic(request)
                if self.target.provider == "anthropic"
                else self._openai(request)
            )
            usage: dict[str, str | int] = {
                "gen_ai.response.model": answer.response_model,
                "gen_ai.usage.input_tokens": answer.input_tokens,
                "gen_ai.usage.output_tokens": answer.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": answer.cache_read_tokens,
                "gen_ai.usage.reasoning.output_tokens": answer.reasoning_tokens,
            }
            span.set_attributes({k: v for k, v in usage.items() if v})
            if answer.finish_reasons:
                span.set_attribute("gen_ai.response.finish_reasons", list(answer.finish_reasons))
            if "error" in answer.finish_reasons:
                span.set_status(Status(StatusCode.ERROR, "the model stopped with an error"))
            return answer

    def _openai(self, request: Mapping[str, Any]) -> Answer:
        params = request.get("params", {})
        kwargs: dict[str, Any] = {k: params[k] for k in _OPENAI_PARAMS if k in params}
        tools = openai_tools(request)
        if tools:
            kwargs["tools"] = tools
        else:
            kwargs.pop("tool_choice", None)
        from openai.types.chat import ChatCompletion

        # The client's generic POST, as the LLM judge does: the request is plain JSON already,
        # and create() would first rewrite it by its typed parameters (a quarter of the
        # client's CPU a call; benchmarks/README.md, online evaluation). Same retries, errors.
        body = {"model": self.target.model, "messages": openai_messages(request), **kwargs}
        response = self._client().post("/chat/completions", body=body, cast_to=ChatCompletion)
        message = response.choices[0].message
        texts = [message.content] if message.content else []
        for call in message.tool_calls or ():
            texts.append(_shown(call.function.name, call.function.arguments))
        usage = response.usage
        prompt, completion = (
            getattr(usage, "prompt_tokens_details", None),
            getattr(usage, "completion_tokens_details", None),
        )
        cached = getattr(prompt, "cached_tokens", 0)
        reasoning = getattr(completion, "reasoning_tokens", 0)
        return Answer(
            "\n".join(texts),
            usage.prompt_tokens if usage else 0,
            usage.completion_tokens if usage else 0,
            response_model=response.model or "",
            cache_read_tokens=cached or 0,
            reasoning_tokens=reasoning or 0,
            finish_reasons=tuple(c.finish_reason for c in response.choices if c.finish_reason),
        )

    def _anthropic(self, request: Mapping[str, Any]) -> Answer:
        params = request.get("params", {})
        messages: list[dict[str, Any]] = []
        system = [request["system"]] if request.get("system") else []
        for message in openai_messages({"messages": request.get("messages", [])}):
            role, content = message["role"], message.get("content")
            if role == "system":
                system.append(_text_of(content))
                continue
            blocks: list[dict[str, Any]] = []
            if role == "tool":
                role = "user"
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": message["tool_call_id"],
                        "content": content or "",
                    }
                )
            elif content:
                blocks.append({"type": "text", "text": _text_of(content)})
            for call in message.get("tool_calls", ()):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "input": json.loads(call["function"]["arguments"] or "{}"),
                    }
                )
            messages.append({"role": role, "content": blocks})
        kwargs: dict[str, Any] = {k: params[k] for k in ("temperature", "top_p") if k in params}
        if request.get("tools"):
            kwargs["tools"] = [
                {
                    "name": t["name"],
                    "description": t.get("description", ""),
                    "input_schema": t.get("parameters", {"type": "object"}),
                }
                for t in request["tools"]
            ]
        if system:
            kwargs["system"] = "\n".join(system)
        response = self._client().messages.create(
            model=self.target.model,
            messages=messages,
            max_tokens=int(params.get("max_tokens") or 1024),
            **kwargs,
        )
        texts = []
        for block in response.content:
            if block.type == "text":
                texts.append(block.text)
            elif block.type == "tool_use":
                texts.append(_shown(block.name, json.dumps(block.input, ensure_ascii=False)))
        return Answer(
            "\n".join(texts),
            response.usage.input_tokens,
            response.usage.output_tokens,
            response_model=response.model or "",
            cache_read_tokens=getattr(response.usage, "cache_read_input_tokens", 0) or 0,
            finish_reasons=(response.stop_reason,) if response.stop_reason else (),
        )
