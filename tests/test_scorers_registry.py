"""resolve_scorer: built-in names, importable callables, autoevals scorers, unknown names."""

from __future__ import annotations

import asyncio
import doctest
import importlib
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import evalhouse.evaluators.scorers as scorers
from evalhouse.errors import EvalhouseError
from evalhouse.evaluators.scorers import (
    BUILTIN_SCORERS,
    InvalidScorerOptions,
    UnknownScorer,
    resolve_scorer,
)
from evalhouse.scoring import Score, run_scorer


def score(scorer: Any, output: Any, expected: Any = None, **extra: Any) -> list[Score]:
    return asyncio.run(run_scorer(scorer, input="q", output=output, expected=expected, **extra))


# One row per heuristic built-in: options, output, expected, the score it must give.
_BUILTIN_CASES: dict[str, tuple[dict[str, Any], Any, Any, float]] = {
    "exact_match": ({}, "Paris", "Paris", 1.0),
    "normalized_match": ({}, " paris ", "Paris", 1.0),
    "contains": ({"ignore_case": True}, "It is PARIS.", "paris", 1.0),
    "regex": ({"pattern": r"^\d+$"}, "12a", None, 0.0),
    "json_valid": ({}, '{"a": 1}', None, 1.0),
    "json_schema": ({"schema": {"type": "array"}}, "[1]", None, 1.0),
    "json_diff": ({}, {"a": 1, "b": 2}, {"a": 1, "b": 3}, 0.5 + 0.5 * (2 / 3)),
    "levenshtein": ({}, "kitten", "sitting", 1 - 3 / 7),
    "numeric_closeness": ({"rel_tol": 0.05}, "98", 100, 1.0),
    "list_overlap": ({"mode": "recall"}, ["a"], ["a", "b"], 0.5),
}


def test_every_heuristic_builtin_has_a_case() -> None:
    heuristics = {name for name in BUILTIN_SCORERS if not name.startswith("llm_judge")}
    assert heuristics == set(_BUILTIN_CASES)


@pytest.mark.parametrize("name", sorted(_BUILTIN_CASES))
def test_builtin_names_resolve_to_scorers_run_scorer_can_call(name: str) -> None:
    options, output, expected, value = _BUILTIN_CASES[name]
    (result,) = score(resolve_scorer(name, options), output, expected)
    assert result.name == name
    assert result.value == pytest.approx(value)


def test_judge_specs_are_listed_and_resolve_to_their_rubric() -> None:
    judges = [name for name in BUILTIN_SCORERS if name.startswith("llm_judge")]
    assert judges == [
        "llm_judge",
        "llm_judge:correctness",
        "llm_judge:faithfulness",
        "llm_judge:helpfulness",
    ]
    judge = resolve_scorer("llm_judge:faithfulness", {"api_key": "x", "model": "m"})
    assert (judge.name, judge.model, judge.rubric.requires_expected) == ("faithfulness", "m", False)
    assert resolve_scorer("llm_judge", {"api_key": "x"}).name == "correctness"


def test_unknown_name_lists_the_builtins() -> None:
    with pytest.raises(UnknownScorer) as caught:
        resolve_scorer("exact")
    message = str(caught.value)
    assert message.startswith("unknown scorer 'exact'; built-in scorers: exact_match, ")
    assert "levenshtein" in message and "llm_judge:correctness" in message
    assert "'module:function'" in message
    assert caught.value.spec == "exact"
    assert isinstance(caught.value, EvalhouseError)


def test_unknown_rubric_names_the_rubrics() -> None:
    with pytest.raises(UnknownScorer, match="unknown LLM-judge rubric 'tone'; built-in rubrics"):
        resolve_scorer("llm_judge:tone")


@pytest.mark.parametrize("spec", ["", "  "])
def test_empty_spec_is_refused(spec: str) -> None:
    with pytest.raises(UnknownScorer, match="must be a non-empty string"):
        resolve_scorer(spec)


def test_options_a_builtin_does_not_take_are_refused_by_name() -> None:
    with pytest.raises(InvalidScorerOptions, match=r"levenshtein: does not take options \['tol'\]"):
        resolve_scorer("levenshtein", {"tol": 1})


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module of user scorers, importable under a fresh name."""
    name = f"user_scorers_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import asyncio


            def starts_with_capital(output):
                return str(output)[:1].isupper()


            def within(output, expected, *, margin=0.0):
                return {"name": "within", "value": abs(output - expected) <= margin}


            async def judged_async(input, output):
                await asyncio.sleep(0)
                return {"score": 0.25, "reason": f"looked at {input}"}


            class Threshold:
                def __init__(self, minimum=0.5, name="threshold"):
                    self.minimum = minimum
                    self.name = name

                def __call__(self, output):
                    return 1.0 if output >= self.minimum else 0.0


            class Scorers:
                @staticmethod
                def shouting(output):
                    return output.isupper()


            ready_made = Threshold(minimum=10, name="ten_or_more")
            NOT_A_SCORER = 42
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_module_function_is_resolved_and_called(user_module: str) -> None:
    assert score(resolve_scorer(f"{user_module}:starts_with_capital"), "Paris") == [
        Score("starts_with_capital", 1.0)
    ]
    assert score(resolve_scorer(f"{user_module}:judged_async"), "x") == [
        Score("judged_async", 0.25, "looked at q")
    ]
    assert score(resolve_scorer(f"{user_module}:Scorers.shouting"), "HEY") == [
        Score("shouting", 1.0)
    ]


def test_module_function_with_options_gets_them_as_keywords(user_module: str) -> None:
    scorer = resolve_scorer(f"{user_module}:within", {"margin": 0.5})
    assert score(scorer, 3.4, 3) == [Score("within", 1.0)]
    assert score(resolve_scorer(f"{user_module}:within"), 3.4, 3) == [Score("within", 0.0)]
    with pytest.raises(InvalidScorerOptions, match=r"capital: does not take options \[.margin.\]"):
        resolve_scorer(f"{user_module}:starts_with_capital", {"margin": 1})


def test_module_class_is_instantiated_with_options(user_module: str) -> None:
    scorer = resolve_scorer(f"{user_module}:Threshold", {"minimum": 0.8, "name": "high"})
    assert score(scorer, 0.9) == [Score("high", 1.0)]
    assert score(scorer, 0.7) == [Score("high", 0.0)]
    assert score(resolve_scorer(f"{user_module}:Threshold"), 0.7) == [Score("threshold", 1.0)]
    with pytest.raises(InvalidScorerOptions, match=r"does not take options \['maximum'\]"):
        resolve_scorer(f"{user_module}:Threshold", {"maximum": 1})


def test_module_scorer_object_is_used_as_it_is(user_module: str) -> None:
    assert score(resolve_scorer(f"{user_module}:ready_made"), 12) == [Score("ten_or_more", 1.0)]
    with pytest.raises(InvalidScorerOptions, match="is an object and takes no options"):
        resolve_scorer(f"{user_module}:ready_made", {"minimum": 1})


def test_module_specs_that_name_nothing_say_what_is_wrong(user_module: str) -> None:
    with pytest.raises(UnknownScorer, match="cannot import module 'no_such_module_h4'"):
        resolve_scorer("no_such_module_h4:score")
    with pytest.raises(UnknownScorer, match=f"module '{user_module}' has no attribute 'missing'"):
        resolve_scorer(f"{user_module}:missing")
    with pytest.raises(UnknownScorer, match="is a int, not a function or a scorer class"):
        resolve_scorer(f"{user_module}:NOT_A_SCORER")


def test_autoevals_scorer_by_name() -> None:
    pytest.importorskip("autoevals")  # a dev dependency; optional at run time
    (result,) = score(resolve_scorer("autoevals:Levenshtein"), "kitten", "sitten")
    assert result.name == "Levenshtein"
    assert result.value == pytest.approx(5 / 6)
    (numeric,) = score(resolve_scorer("autoevals:NumericDiff"), 90, 100)
    assert numeric.value == pytest.approx(1 - 10 / 190)  # autoevals divides by |a| + |b|
    with pytest.raises(UnknownScorer, match="autoevals has no scorer 'Levenstein'"):
        resolve_scorer("autoevals:Levenstein")


def test_autoevals_missing_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "autoevals", None)  # what an uninstalled package looks like
    with pytest.raises(UnknownScorer, match="run: pip install autoevals"):
        resolve_scorer("autoevals:Levenshtein")


def test_public_surface_is_exactly_all() -> None:
    public = {name for name in vars(scorers) if not name.startswith("_")}
    imported_modules = {"annotations"}
    assert public - imported_modules == set(scorers.__all__)


@pytest.mark.parametrize(
    "module", ["", "._registry", "._text", "._json", "._similarity", "._rubrics", "._judge"]
)
def test_docstring_examples_hold(module: str) -> None:
    imported = importlib.import_module(f"evalhouse.evaluators.scorers{module}")
    failed, attempted = doctest.testmod(imported, optionflags=doctest.ELLIPSIS)
    assert attempted > 0
    assert failed == 0
