"""Calling the user's task in whichever style it is written.

- ``task(input)``;
- ``task(input, hooks)``: :class:`Hooks` gives the row's expected value, metadata (which the
  task may add to), the task span, trial and ids;
- ``task(*, item, **kwargs)`` (Langfuse / InteractiveAI): ``item`` is the row as given; a
  ``hooks`` keyword parameter receives the hooks too.

Async tasks run on the event loop. Sync tasks run in the runner's thread pool (one thread per
concurrent row), with the OpenTelemetry context copied in, so LLM calls they make nest under
the task span.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Literal

from opentelemetry.trace import Span

from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._rows import Row

Style = Literal["input", "input_hooks", "item"]


@dataclass
class Hooks:
    """What a ``task(input, hooks)`` gets besides the input.

    >>> def task(input, hooks):
    ...     hooks.metadata["model"] = "gpt-4o-mini"   # lands in the row's metadata
    ...     return input.upper()
    """

    input: Any
    expected: Any
    metadata: dict[str, Any]
    span: Span
    trial: int
    row_id: str
    experiment_id: str
    experiment_name: str
    item: Any = field(default=None, repr=False)

    def meta(self, **values: Any) -> None:
        """Add row metadata (Braintrust's ``hooks.meta``)."""
        self.metadata.update(values)


def _style(task: Callable[..., Any]) -> tuple[Style, bool]:
    """How to call ``task``, and whether it takes ``hooks=`` in the item style."""
    try:
        parameters = list(inspect.signature(task).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature take the input
        return "input", False
    names = {p.name for p in parameters}
    if "item" in names:
        return "item", "hooks" in names
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) or len(positional) >= 2:
        return "input_hooks", False
    if len(positional) == 1:
        return "input", False
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return "item", False
    raise EvalhouseError(
        f"task {getattr(task, '__name__', task)!r} takes no input; write it as task(input), "
        "task(input, hooks) or task(*, item, **kwargs)"
    )


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


class TaskCaller:
    """Calls one task for a row; built once per experiment."""

    def __init__(self, task: Callable[..., Any]) -> None:
        if not callable(task):
            raise EvalhouseError(
                f"task must be a function (sync or async), got {type(task).__name__}"
            )
        self.task = task
        self.style, self.item_takes_hooks = _style(task)
        self.is_async = _is_async(task)

    def _arguments(self, row: Row, hooks: Hooks) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if self.style == "input":
            return (row.input,), {}
        if self.style == "input_hooks":
            return (row.input, hooks), {}
        item = row.item if row.item is not None else {"input": row.input}
        return (), ({"item": item, "hooks": hooks} if self.item_takes_hooks else {"item": item})

    async def __call__(self, row: Row, hooks: Hooks, executor: Executor) -> Any:
        args, kwargs = self._arguments(row, hooks)
        if self.is_async:
            return await self.task(*args, **kwargs)
        context = contextvars.copy_context()
        call = functools.partial(context.run, self.task, *args, **kwargs)
        result = await asyncio.get_running_loop().run_in_executor(executor, call)
        if inspect.isawaitable(result):  # a sync callable that returns a coroutine
            return await result
        return result
