"""Scores and scorers: one calling convention for every scorer style users bring.

The experiment runner (in the app) and the evaluator daemon (on the server) both call
scorers through :func:`run_scorer`, so a scorer behaves the same wherever it runs. Accepted:

- Braintrust / autoevals style functions ``(input, output, expected, metadata)``;
- Langfuse / InteractiveAI style ``(*, input, output, expected_output=None, metadata=None,
  **kwargs)``;
- autoevals scorer objects (anything with ``eval_async`` or ``eval``);
- sync or async; sync scorers run in a worker thread.

A scorer may return a number, a bool, ``None`` (nothing to score), a :class:`Score`, a dict
(``name``, ``value`` or ``score``, ``comment`` / ``explanation`` / ``reason``, ``metadata``),
an object with ``score`` and ``name`` attributes (autoevals), or a list of those.

>>> import asyncio
>>> def exact(output, expected):
...     return output == expected
>>> asyncio.run(run_scorer(exact, input="q", output="a", expected="a"))
[Score(name='exact', value=1.0, explanation=None, metadata=None)]
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evalhouse.errors import EvalhouseError

__all__ = ["Score", "ScorerError", "run_scorer", "scorer_name", "scores_from"]

_KNOWN_ARGUMENTS = ("input", "output", "expected", "metadata")


class ScorerError(EvalhouseError):
    """A scorer returned something that is not a score."""


@dataclass(frozen=True)
class Score:
    """One named score in [0, 1]; ``value`` is None when the scorer chose not to score."""

    name: str
    value: float | None
    explanation: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ScorerError(f"a score needs a non-empty name, got {self.name!r}")
        if self.value is not None:
            value = _as_float(self.name, self.value)
            object.__setattr__(self, "value", value)


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float):
        raise ScorerError(
            f"scorer {name} returned {type(value).__name__} {value!r}; "
            "return a number in [0, 1], a bool, a dict with 'value', or a Score"
        )
    number = float(value)
    if math.isnan(number) or not 0.0 <= number <= 1.0:
        raise ScorerError(f"scorer {name} returned {number}; scores must be in [0, 1]")
    return number


def scorer_name(scorer: Any) -> str:
    """The name a scorer's results carry when its return value names none."""
    name = getattr(scorer, "name", None)
    if isinstance(name, str) and name:
        return name
    private = getattr(scorer, "_name", None)  # autoevals scorers name themselves this way
    if callable(private):
        try:
            named = private()
        except Exception:  # a broken _name() must not break scoring
            named = None
        if isinstance(named, str) and named:
            return named
    function_name = getattr(scorer, "__name__", None)
    if isinstance(function_name, str) and function_name != "<lambda>":
        return function_name
    return type(scorer).__name__ if not inspect.isfunction(scorer) else "score"


async def run_scorer(
    scorer: Any,
    *,
    input: Any,
    output: Any,
    expected: Any = None,
    metadata: Mapping[str, Any] | None = None,
    **extra: Any,
) -> list[Score]:
    """Call ``scorer`` in whatever style it takes and return its scores.

    Exceptions raised by the scorer propagate unchanged (callers record them as scorer
    errors); a return value that is not a score raises :class:`ScorerError`.
    """
    name = scorer_name(scorer)
    arguments = {
        "input": input,
        "output": output,
        "expected": expected,
        "expected_output": expected,
        "metadata": dict(metadata) if metadata is not None else {},
        **extra,
    }
    result = await _call(scorer, arguments)
    return _normalise(name, result)


async def _call(scorer: Any, arguments: dict[str, Any]) -> Any:
    evaluate_async = getattr(scorer, "eval_async", None)
    if evaluate_async is not None and not inspect.isfunction(scorer):
        return await evaluate_async(
            arguments["output"], arguments["expected"], input=arguments["input"]
        )
    evaluate = getattr(scorer, "eval", None)
    if evaluate is not None and not callable(scorer):
        return await asyncio.to_thread(
            evaluate, arguments["output"], arguments["expected"], input=arguments["input"]
        )
    if not callable(scorer):
        raise ScorerError(f"{scorer!r} is not a scorer: pass a function or a scorer object")
    args, kwargs = _bind(scorer, arguments)
    if _is_async(scorer):
        return await scorer(*args, **kwargs)
    result = await asyncio.to_thread(scorer, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _is_async(function: Any) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)  # noqa: B004 - objects with an async __call__
    )


def _bind(function: Any, arguments: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    """Keyword arguments for the parameters a scorer names; positional when it names others."""
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return [arguments[name] for name in _KNOWN_ARGUMENTS], {}
    takes_any_keyword = any(p.kind is p.VAR_KEYWORD for p in parameters)
    named = [p for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown_required = [
        p
        for p in parameters
        if p.default is p.empty
        and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        and p.name not in arguments
    ]
    if unknown_required:
        # A scorer written as ``lambda o, e: ...``: pass the known arguments in order.
        positional = [
            p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        order = ("output", "expected") if len(positional) <= 2 else _KNOWN_ARGUMENTS
        return [arguments[name] for name in order[: len(positional)]], {}
    if takes_any_keyword:
        return [], dict(arguments)
    return [], {p.name: arguments[p.name] for p in named if p.name in arguments}


def scores_from(name: str, result: Any) -> list[Score]:
    """The scores a scorer's return value stands for (``name`` when it names none).

    >>> scores_from("exact", True)
    [Score(name='exact', value=1.0, explanation=None, metadata=None)]
    """
    return _normalise(name, result)


def _normalise(name: str, result: Any) -> list[Score]:
    if result is None:
        return [Score(name, None)]
    if isinstance(result, Score):
        return [result]
    if isinstance(result, list | tuple):
        return [score for item in result for score in _normalise(name, item)]
    if isinstance(result, Mapping):
        return [_from_mapping(name, result)]
    if isinstance(result, bool | int | float):
        return [Score(name, _as_float(name, result))]
    if hasattr(result, "score"):
        own_name = getattr(result, "name", None) or name
        error = getattr(result, "error", None)
        if error is not None:
            raise ScorerError(f"scorer {own_name} failed: {error}")
        metadata = getattr(result, "metadata", None)
        return [
            Score(
                own_name,
                None if result.score is None else _as_float(own_name, result.score),
                _explanation(metadata) if isinstance(metadata, Mapping) else None,
                metadata if isinstance(metadata, Mapping) else None,
            )
        ]
    raise ScorerError(
        f"scorer {name} returned {type(result).__name__}; "
        "return a number in [0, 1], a bool, a dict with 'value', a Score or a list of them"
    )


def _explanation(mapping: Mapping[str, Any]) -> str | None:
    for key in ("comment", "explanation", "reason", "rationale"):
        value = mapping.get(key)
        if value is not None:
            return str(value)
    return None


def _from_mapping(name: str, mapping: Mapping[str, Any]) -> Score:
    own_name = mapping.get("name") or name
    if "value" in mapping:
        raw = mapping["value"]
    elif "score" in mapping:
        raw = mapping["score"]
    else:
        raise ScorerError(f"scorer {own_name} returned a dict without 'value' or 'score'")
    metadata = mapping.get("metadata")
    return Score(
        str(own_name),
        None if raw is None else _as_float(str(own_name), raw),
        _explanation(mapping),
        metadata if isinstance(metadata, Mapping) else None,
    )
