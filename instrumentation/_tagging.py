"""``evalhouse.task`` and ``evalhouse.scorer``: tag hand-written code as task or scorer work.

Each works as a decorator (sync or async function, with or without arguments) and as a
context manager (``with`` or ``async with``). The span gets ``evalhouse.span.purpose``, the
input (the call's arguments) and the output (the return value) as JSON; a scorer span also
gets its scores. Exceptions are recorded on the span and re-raised unchanged; nothing here
raises an error of its own into the tagged code.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Literal, TypeVar, cast, overload

from opentelemetry import trace
from opentelemetry.trace import Span

from evalhouse import contract
from evalhouse.instrumentation import _tracing
from evalhouse.instrumentation._settings import warn_once
from evalhouse.instrumentation._spans import describe, record_error, record_scores, set_json
from evalhouse.scoring import Score, ScorerError, scores_from

F = TypeVar("F", bound=Callable[..., Any])
Purpose = Literal["task", "scorer"]
_UNSET: Any = object()
# Set on functions wrapped by the decorators; the runner calls the unwrapped function so a
# decorated task or scorer is not traced twice.
TAG_ATTRIBUTE = "__evalhouse_purpose__"


class TaggedSpan:
    """The handle a ``with evalhouse.task(...)`` / ``scorer(...)`` block gets."""

    def __init__(self, span: Span, name: str) -> None:
        self.span = span
        self.name = name

    def set_input(self, value: Any) -> None:
        set_json(self.span, contract.INPUT, value)

    def set_output(self, value: Any) -> None:
        set_json(self.span, contract.OUTPUT, value)

    def score(
        self,
        value: Any,
        *,
        name: str | None = None,
        explanation: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Record scores: a number or bool (named ``name`` or the span's name), a Score, a
        dict, or a list of those. A value that is not a score is logged, not raised."""
        try:
            if isinstance(value, bool | int | float) and (explanation or metadata):
                value = Score(name or self.name, value, explanation, metadata)
            record_scores(self.span, scores_from(name or self.name, value))
        except ScorerError as exc:
            warn_once(f"score:{self.name}", "evalhouse: not a score on %s: %s", self.name, exc)


class _Tag:
    """One tagging helper call: a context manager, or a decorator when applied to a function."""

    def __init__(self, purpose: Purpose, name: str | None, input: Any) -> None:
        self.purpose = purpose
        self.name = name
        self.input = input
        # Open blocks of this helper, per context: one helper object may be entered by
        # several threads or asyncio tasks at once, each closing its own span.
        self._open_blocks: ContextVar[tuple[tuple[TaggedSpan, Any], ...]] = ContextVar(
            "evalhouse_tag", default=()
        )

    def _open(self, name: str, input: Any) -> tuple[TaggedSpan, Any]:
        span = _tracing.tracer().start_span(name, attributes={contract.SPAN_PURPOSE: self.purpose})
        handle = TaggedSpan(span, name)
        if input is not _UNSET:
            handle.set_input(input)
        activation = trace.use_span(span, end_on_exit=True, record_exception=False)
        activation.__enter__()
        return handle, activation

    @staticmethod
    def _close(activation: Any, exc: BaseException | None, handle: TaggedSpan) -> None:
        if exc is not None:
            record_error(handle.span, exc, describe(exc))
        activation.__exit__(None, None, None)

    def __enter__(self) -> TaggedSpan:
        handle, activation = self._open(self.name or self.purpose, self.input)
        self._open_blocks.set((*self._open_blocks.get(), (handle, activation)))
        return handle

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        *outer, (handle, activation) = self._open_blocks.get()
        self._open_blocks.set(tuple(outer))
        self._close(activation, exc, handle)

    async def __aenter__(self) -> TaggedSpan:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, traceback)

    def __call__(self, function: F) -> F:
        name = self.name or str(getattr(function, "__name__", self.purpose))
        purpose = self.purpose

        def finish(handle: TaggedSpan, result: Any) -> None:
            handle.set_output(result)
            if purpose == "scorer":
                handle.score(result)

        if inspect.iscoroutinefunction(function):

            @functools.wraps(function)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                handle, activation = self._open(name, _arguments(function, args, kwargs))
                try:
                    result = await function(*args, **kwargs)
                except BaseException as exc:
                    self._close(activation, exc, handle)
                    raise
                finish(handle, result)
                self._close(activation, None, handle)
                return result

            setattr(async_wrapper, TAG_ATTRIBUTE, purpose)
            return cast(F, async_wrapper)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            handle, activation = self._open(name, _arguments(function, args, kwargs))
            try:
                result = function(*args, **kwargs)
            except BaseException as exc:
                self._close(activation, exc, handle)
                raise
            finish(handle, result)
            self._close(activation, None, handle)
            return result

        setattr(wrapper, TAG_ATTRIBUTE, purpose)
        return cast(F, wrapper)


def _arguments(function: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The call's input: the only argument itself, else a dict of argument names to values."""
    try:
        bound = inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return {"args": list(args), **kwargs} if kwargs else list(args)
    values = {name: value for name, value in bound.arguments.items() if name not in ("self", "cls")}
    if len(values) == 1:
        return next(iter(values.values()))
    return values


@overload
def task(function: F, /) -> F: ...
@overload
def task(label: str | None = None, /, *, name: str | None = None, input: Any = _UNSET) -> _Tag: ...
def task(label: Any = None, /, *, name: str | None = None, input: Any = _UNSET) -> Any:
    """Tag code as the task being evaluated (``evalhouse.span.purpose = task``).

    >>> import evalhouse
    >>> @evalhouse.task
    ... def answer(question: str) -> str:
    ...     return "Paris"
    >>> with evalhouse.task("retrieve", input="capital of France") as span:
    ...     span.set_output(["doc-1"])
    """
    if callable(label):
        return _Tag("task", None, _UNSET)(label)
    return _Tag("task", label or name, input)


@overload
def scorer(function: F, /) -> F: ...
@overload
def scorer(
    label: str | None = None, /, *, name: str | None = None, input: Any = _UNSET
) -> _Tag: ...
def scorer(label: Any = None, /, *, name: str | None = None, input: Any = _UNSET) -> Any:
    """Tag code as scoring work (``evalhouse.span.purpose = scorer``): its LLM calls count as
    judge cost, never as task cost. A decorated function's return value is recorded as its
    score(s); in a ``with`` block, call ``span.score(value)``.

    >>> import evalhouse
    >>> @evalhouse.scorer
    ... def exact(output: str, expected: str) -> bool:
    ...     return output == expected
    >>> with evalhouse.scorer("judge") as span:
    ...     span.score(0.8, explanation="mostly right")
    """
    if callable(label):
        return _Tag("scorer", None, _UNSET)(label)
    return _Tag("scorer", label or name, input)
