"""Turn a scorer spec (a built-in name, ``module:attr`` or ``autoevals:Name``) into a scorer."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from evalhouse.errors import EvalhouseError
from evalhouse.evaluators.scorers._values import InvalidScorerOptions

__all__ = ["BUILTIN_SCORERS", "UnknownScorer", "resolve_scorer"]


class UnknownScorer(EvalhouseError):
    """A scorer spec names nothing evalhouse can load."""

    def __init__(self, spec: str, message: str) -> None:
        super().__init__(message)
        self.spec = spec


def _builtins() -> Mapping[str, Callable[..., Any]]:
    from evalhouse.evaluators.scorers._json import JsonDiff, JsonSchema, JsonValid
    from evalhouse.evaluators.scorers._judge import LlmJudge, rubric_names
    from evalhouse.evaluators.scorers._similarity import (
        Levenshtein,
        ListOverlap,
        NumericCloseness,
    )
    from evalhouse.evaluators.scorers._text import Contains, ExactMatch, NormalizedMatch, Regex

    table: dict[str, Callable[..., Any]] = {
        "exact_match": ExactMatch,
        "normalized_match": NormalizedMatch,
        "contains": Contains,
        "regex": Regex,
        "json_valid": JsonValid,
        "json_schema": JsonSchema,
        "json_diff": JsonDiff,
        "levenshtein": Levenshtein,
        "numeric_closeness": NumericCloseness,
        "list_overlap": ListOverlap,
        "llm_judge": LlmJudge,
    }
    for rubric in rubric_names():
        table[f"llm_judge:{rubric}"] = functools.partial(LlmJudge, rubric=rubric)
    return MappingProxyType(table)


BUILTIN_SCORERS: Mapping[str, Callable[..., Any]] = _builtins()
"""Built-in scorer name -> factory taking the scorer's options as keyword arguments."""


def resolve_scorer(spec: str, options: Mapping[str, Any] | None = None) -> Any:
    """The scorer a spec names, configured with ``options``, ready for ``run_scorer``.

    ``spec`` is a built-in name (see :data:`BUILTIN_SCORERS`), ``module:function`` or
    ``module:Class`` (any importable callable; a class is instantiated with ``options``), or
    ``autoevals:Name`` (an autoevals scorer, when the ``autoevals`` package is installed).

    >>> import asyncio
    >>> from evalhouse.scoring import run_scorer
    >>> scorer = resolve_scorer("levenshtein")
    >>> asyncio.run(run_scorer(scorer, input="q", output="kitten", expected="sitten"))[0].value
    0.8333333333333334
    """
    if not isinstance(spec, str) or not spec.strip():
        raise UnknownScorer(str(spec), f"scorer spec must be a non-empty string, got {spec!r}")
    spec = spec.strip()
    kwargs = dict(options or {})
    factory = BUILTIN_SCORERS.get(spec)
    if factory is not None:
        return _construct(spec, factory, kwargs)
    prefix, colon, attribute = spec.partition(":")
    if prefix == "llm_judge":
        raise UnknownScorer(
            spec,
            f"unknown LLM-judge rubric {attribute!r}; built-in rubrics: "
            f"{', '.join(_rubric_specs())}; for your own rubric use 'llm_judge' with the "
            "'prompt' and 'choice_scores' options",
        )
    if prefix == "autoevals" and colon:
        return _autoevals(spec, attribute, kwargs)
    if colon and attribute:
        return _imported(spec, prefix, attribute, kwargs)
    raise UnknownScorer(
        spec,
        f"unknown scorer {spec!r}; built-in scorers: {', '.join(BUILTIN_SCORERS)}; or name "
        "your own as 'module:function' / 'module:Class', or an autoevals one as 'autoevals:Name'",
    )


def _rubric_specs() -> list[str]:
    return [name for name in BUILTIN_SCORERS if name.startswith("llm_judge:")]


def _construct(spec: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    _check_options(spec, factory, kwargs)
    return factory(**kwargs)


def _check_options(spec: str, target: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    try:
        inspect.signature(target).bind_partial(**kwargs)
    except TypeError as exc:
        raise InvalidScorerOptions(
            spec,
            f"does not take options {sorted(kwargs)} ({exc}); "
            "check the option names against its parameters",
        ) from exc


def _autoevals(spec: str, name: str, kwargs: dict[str, Any]) -> Any:
    try:
        module = importlib.import_module("autoevals")
    except ImportError as exc:
        raise UnknownScorer(
            spec,
            f"scorer {spec} needs the autoevals package, which is not installed; "
            "run: pip install autoevals",
        ) from exc
    target = getattr(module, name, None)
    if target is None:
        raise UnknownScorer(
            spec,
            f"autoevals has no scorer {name!r}; check the name against autoevals' "
            "documentation (e.g. autoevals:Levenshtein, autoevals:Factuality)",
        )
    return _instantiate(spec, target, kwargs)


def _imported(spec: str, module_name: str, attribute: str, kwargs: dict[str, Any]) -> Any:
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UnknownScorer(
            spec,
            f"cannot import module {module_name!r} for scorer {spec}: {exc}; "
            "check the name and that the module is on the evaluator's PYTHONPATH",
        ) from exc
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise UnknownScorer(
                spec,
                f"module {module_name!r} has no attribute {attribute!r}; "
                "name a function, a class or a scorer object defined in it",
            )
    return _instantiate(spec, target, kwargs)


def _instantiate(spec: str, target: Any, kwargs: dict[str, Any]) -> Any:
    if inspect.isclass(target):
        return _construct(spec, target, kwargs)
    if not callable(target) and not hasattr(target, "eval_async") and not hasattr(target, "eval"):
        raise UnknownScorer(
            spec, f"{spec} is a {type(target).__name__}, not a function or a scorer class"
        )
    if not kwargs:
        return target
    if not inspect.isroutine(target):
        raise InvalidScorerOptions(
            spec,
            "is an object and takes no options; drop the options, or point the spec at its "
            "class so evalhouse can build it with them",
        )
    _check_options(spec, target, kwargs)
    bound = functools.partial(target, **kwargs)
    # run_scorer names results after __name__; a partial has none of its own.
    bound.__name__ = target.__name__  # type: ignore[attr-defined]
    return bound
