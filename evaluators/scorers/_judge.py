"""The LLM judge: a rubric prompt sent to an OpenAI-compatible endpoint, its choice scored.

The call goes through the official ``openai`` client, so an app with OpenAI
instrumentation on traces the judge's call like any other (under the scorer span).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from evalhouse.evaluators.scorers._rubrics import answer_format, load_rubric, render
from evalhouse.evaluators.scorers._rubrics import rubric_names as rubric_names
from evalhouse.evaluators.scorers._values import InvalidScorerOptions, require_expected
from evalhouse.scoring import Score, ScorerError

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

__all__ = ["DEFAULT_JUDGE_MODEL", "JudgeError", "LlmJudge", "parse_choice", "rubric_names"]

DEFAULT_JUDGE_MODEL = "gpt-4o-mini"
_TOOL = "select_choice"


class JudgeError(ScorerError):
    """The judge's endpoint failed, or its model answered outside the rubric's choices."""


class LlmJudge:
    """Score an output with an LLM and a rubric whose choices map to scores.

    ``rubric``: a built-in name (``correctness`` - the default -, ``faithfulness``,
    ``helpfulness``) or a ``.toml`` file; or a custom ``prompt`` with ``choice_scores``.
    ``model``, ``base_url`` and ``api_key`` fall back on ``EVALHOUSE_JUDGE_MODEL``
    (default ``gpt-4o-mini``), ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. ``use_cot`` asks
    for reasoning before the choice and keeps it as the explanation; ``use_tools`` asks for
    the choice as a function call. The score's metadata holds the choice, the model and the
    judge's token usage.

    >>> judge = LlmJudge(rubric="helpfulness", api_key="sk-test")
    >>> judge.name, sorted(judge.rubric.choice_scores)
    ('helpfulness', ['A', 'B', 'C', 'D'])
    """

    def __init__(
        self,
        *,
        rubric: str | None = None,
        prompt: str | None = None,
        choice_scores: Mapping[str, Any] | None = None,
        requires_expected: bool | None = None,
        system: str | None = None,
        name: str | None = None,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        use_cot: bool = True,
        use_tools: bool = False,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.rubric = load_rubric(
            rubric,
            prompt=prompt,
            choice_scores=choice_scores,
            requires_expected=requires_expected,
            system=system,
        )
        self.name = name or self.rubric.name
        self.model = model or os.environ.get("EVALHOUSE_JUDGE_MODEL") or DEFAULT_JUDGE_MODEL
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if client is None and not self._api_key:
            raise InvalidScorerOptions(
                self.name,
                "the LLM judge needs an API key: set OPENAI_API_KEY or the 'api_key' option "
                "(any value works for a local endpoint that checks none)",
            )
        self.use_cot = use_cot
        self.use_tools = use_tools
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout
        self.max_retries = max_retries
        self._client = client
        # An AsyncOpenAI client's connection pool belongs to one event loop; building a
        # client costs ~20 ms, so keep one per loop rather than one per call. The lookup and
        # the store in _client_for_loop have no await between them, so concurrent first calls
        # on a loop share one client (tests/test_scorers_judge.py runs eight at once).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:  # never shows the API key
        return f"LlmJudge(name={self.name!r}, model={self.model!r}, base_url={self.base_url!r})"

    async def __call__(
        self, input: Any, output: Any, expected: Any = None, metadata: Any = None
    ) -> Score:
        if self.rubric.requires_expected:
            hint = f", or use a rubric that needs none (e.g. llm_judge:{_other_rubric()})"
            require_expected(f"llm_judge:{self.rubric.name}", expected, hint)
        values = {"input": input, "output": output, "expected": expected, "metadata": metadata}
        response = await self._complete(self._messages(values))
        choice, reasoning = parse_choice(self.name, response, self.rubric.choice_scores)
        return Score(
            self.name,
            self.rubric.choice_scores[choice],
            reasoning or None,
            {
                "choice": choice,
                "rubric": self.rubric.name,
                "model": response.model,
                "usage": _usage(response),
            },
        )

    def prompt(self, values: Mapping[str, Any]) -> list[dict[str, str]]:
        """The messages the judge sends for these values (``input``, ``output``,
        ``expected``, ``metadata``): what an online rule's estimate counts before any call.

        >>> LlmJudge(api_key="k").prompt({"input": "2+2", "output": "4"})[-1]["role"]
        'user'
        """
        return self._messages(values)

    def _messages(self, values: Mapping[str, Any]) -> list[dict[str, str]]:
        texts = _answer_texts()
        choices = ", ".join(self.rubric.choice_scores)
        if self.use_tools:
            instruction = texts["tool"]
        else:
            instruction = texts["reasoning" if self.use_cot else "choice_only"]
        prompt = (
            render(self.rubric.prompt, values) + "\n\n" + render(instruction, {"choices": choices})
        )
        messages = [{"role": "system", "content": self.rubric.system}] if self.rubric.system else []
        return [*messages, {"role": "user", "content": prompt}]

    async def _complete(self, messages: list[dict[str, str]]) -> ChatCompletion:
        import openai
        from openai.types.chat import ChatCompletion

        request: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.temperature is not None:
            request["temperature"] = self.temperature
        if self.max_tokens is not None:
            request["max_tokens"] = self.max_tokens
        if self.use_tools:
            request["tools"] = [self._tool()]
            request["tool_choice"] = {"type": "function", "function": {"name": _TOOL}}
        try:
            # The client's generic POST (its documented way to any endpoint) skips the typed
            # rewrite of the request's parameters that chat.completions.create runs first: a
            # quarter of the client's CPU a call, which judges at concurrency 32 are bound by
            # (benchmarks/README.md, online evaluation). Errors and retries are the same.
            response = await self._client_for_loop().post(
                "/chat/completions", body=request, cast_to=ChatCompletion
            )
        except openai.APIError as exc:
            where = self.base_url or "the OpenAI API"
            raise JudgeError(
                f"LLM judge {self.name}: the call to {where} (model {self.model}) failed: "
                f"{type(exc).__name__}: {exc}; check the endpoint, model name and API key"
            ) from exc
        return response

    def _tool(self) -> dict[str, Any]:
        texts = _answer_texts()
        properties: dict[str, Any] = {}
        if self.use_cot:
            properties["reasoning"] = {
                "type": "string",
                "description": texts["tool_reasoning_description"],
            }
        properties["choice"] = {
            "type": "string",
            "enum": list(self.rubric.choice_scores),
            "description": texts["tool_choice_description"],
        }
        return {
            "type": "function",
            "function": {
                "name": _TOOL,
                "description": texts["tool_description"],
                "parameters": {
                    "type": "object",
                    "properties": properties,
                    "required": list(properties),
                },
            },
        }

    def _client_for_loop(self) -> AsyncOpenAI:
        if self._client is not None:
            return self._client
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            from openai import AsyncOpenAI

            client = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout,
                max_retries=self.max_retries,
            )
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        """Close the HTTP client this judge opened on the running event loop (not a client
        passed in as ``client``). Call it before the loop ends."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.close()


def _other_rubric() -> str:
    return next((name for name in rubric_names() if name != "correctness"), "helpfulness")


@functools.cache
def _answer_texts() -> dict[str, str]:
    return answer_format()


def _usage(response: ChatCompletion) -> dict[str, int]:
    usage = response.usage
    if usage is None:
        return {}
    prompt_details = usage.prompt_tokens_details
    completion_details = usage.completion_tokens_details
    return {
        "input_tokens": usage.prompt_tokens,
        "output_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "cache_read_tokens": (prompt_details.cached_tokens or 0) if prompt_details else 0,
        "reasoning_tokens": (
            (completion_details.reasoning_tokens or 0) if completion_details else 0
        ),
    }


# "Choice: B", "**Answer:** (B)", "Final choice = 'B'"
_LABELLED = re.compile(r"(?im)^[\W_]*(?:final\s+)?(?:choice|answer|verdict)[\W_]*[:=](.*)$")
_TRIM = " \t*_`'\"()[].:!"


def parse_choice(
    name: str, response: ChatCompletion, choices: Mapping[str, float]
) -> tuple[str, str]:
    """The choice a judge's reply names, and the reasoning it gave (empty when none).

    A ``select_choice`` tool call wins; otherwise the text's last ``Choice: X`` line, or a
    reply that is nothing but a choice. Raises :class:`JudgeError` when no choice is found.
    """
    if not response.choices:
        raise JudgeError(f"LLM judge {name}: the endpoint returned no completion; retry later")
    message = response.choices[0].message
    for call in message.tool_calls or ():
        function = getattr(call, "function", None)
        if function is None or function.name != _TOOL:
            continue
        try:
            arguments = json.loads(function.arguments or "{}")
        except ValueError as exc:
            raise JudgeError(
                f"LLM judge {name}: the model's {_TOOL} call has arguments that are not "
                f"JSON ({function.arguments[:200]!r}); use a model with reliable tool calls "
                "or set use_tools=False"
            ) from exc
        raw = arguments.get("choice") if isinstance(arguments, dict) else None
        reasoning = arguments.get("reasoning") if isinstance(arguments, dict) else None
        choice = _match(str(raw), choices) if raw is not None else None
        if choice is None:
            raise _outside(name, f"{_TOOL}(choice={raw!r})", choices)
        return choice, str(reasoning or "").strip()
    text = (message.content or "").strip()
    labelled = list(_LABELLED.finditer(text))
    for found in reversed(labelled):
        choice = _match(found.group(1), choices, labelled=True)
        if choice is not None:
            return choice, text[: found.start()].strip()
    lines = [line for line in text.splitlines() if line.strip()]
    if lines:
        choice = _match(lines[-1], choices)
        if choice is not None:
            return choice, "\n".join(lines[:-1]).strip()
    raise _outside(name, repr(text[-300:]), choices)


def _match(raw: str, choices: Mapping[str, float], *, labelled: bool = False) -> str | None:
    """The choice a short answer names: ``B``, ``(B)``, ``**B**``, ``B) the submission...``.

    After a label (``Choice: B because...``) a choice followed by words counts too, unless
    the words name another choice (``Choice: B or C`` names none).
    """
    candidate = raw.strip().strip(_TRIM).strip()
    folded = {choice.casefold(): choice for choice in choices}
    if candidate.casefold() in folded:
        return folded[candidate.casefold()]
    separators = (")", ".", ":", ",", "-", " ") if labelled else (")", ".", ":")
    for choice in sorted(choices, key=len, reverse=True):
        prefix, rest = candidate[: len(choice)], candidate[len(choice) :]
        if prefix.casefold() != choice.casefold() or rest[:1] not in separators:
            continue
        others = [other for other in choices if other != choice]
        if labelled and any(re.search(rf"\b{re.escape(o)}\b", rest) for o in others):
            return None
        return choice
    return None


def _outside(name: str, answer: str, choices: Mapping[str, float]) -> JudgeError:
    return JudgeError(
        f"LLM judge {name}: the model answered {answer}, which is none of the choices "
        f"{', '.join(choices)}; use a stronger judge model, or use_tools=True so the "
        "endpoint constrains the answer"
    )
