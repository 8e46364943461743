"""The one scorer calling convention shared by the runner and the evaluator daemon."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from evalhouse.scoring import Score, ScorerError, run_scorer, scorer_name


def score(scorer: Any, **kwargs: Any) -> list[Score]:
    arguments = {"input": "q", "output": "Paris", "expected": "Paris", "metadata": {"k": 1}}
    arguments.update(kwargs)
    return asyncio.run(run_scorer(scorer, **arguments))


def test_braintrust_style_function_gets_arguments_by_name() -> None:
    seen: dict[str, Any] = {}

    def accuracy(input: Any, output: Any, expected: Any, metadata: Any) -> float:
        seen.update(input=input, output=output, expected=expected, metadata=metadata)
        return 0.5

    assert score(accuracy) == [Score("accuracy", 0.5)]
    assert seen == {"input": "q", "output": "Paris", "expected": "Paris", "metadata": {"k": 1}}


def test_langfuse_style_keyword_evaluator_returns_named_dict() -> None:
    def evaluator(*, input: Any, output: Any, expected_output: Any = None, **kwargs: Any) -> Any:
        assert "metadata" in kwargs
        return {"name": "match", "value": output == expected_output, "comment": "same city"}

    assert score(evaluator) == [Score("match", 1.0, "same city")]


def test_positional_lambda_gets_output_and_expected() -> None:
    assert score(lambda o, e: o == e, expected="Rome") == [Score("score", 0.0)]


def test_async_scorer_is_awaited_and_sync_scorer_runs_in_a_worker_thread() -> None:
    main = threading.get_ident()
    threads: list[int] = []

    async def judged(output: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        return {"score": 1, "reason": "fine"}

    def sync(output: Any) -> bool:
        threads.append(threading.get_ident())
        return True

    assert score(judged) == [Score("judged", 1.0, "fine")]
    assert score(sync) == [Score("sync", 1.0)]
    assert threads and threads[0] != main


def test_list_of_scores_and_none_for_not_scored() -> None:
    def several(output: Any) -> list[Any]:
        return [Score("a", 1.0), {"name": "b", "value": 0.25}, 0.75]

    assert score(several) == [Score("a", 1.0), Score("b", 0.25), Score("several", 0.75)]
    assert score(lambda output: None) == [Score("score", None)]


@dataclass
class _AutoevalsLikeScore:
    name: str
    score: float | None
    metadata: dict[str, Any]
    error: Exception | None = None


class _AutoevalsLikeScorer:
    """The shape of an autoevals scorer object: eval/eval_async and a _name()."""

    def _name(self) -> str:
        return "Levenshtein"

    async def eval_async(self, output: Any, expected: Any = None, **kwargs: Any) -> Any:
        assert kwargs["input"] == "q"
        return _AutoevalsLikeScore(self._name(), 0.8, {"rationale": "close"})

    def __call__(self, output: Any, expected: Any = None, **kwargs: Any) -> Any:
        raise AssertionError("the async path is preferred")


def test_autoevals_style_object_is_called_through_eval_async() -> None:
    assert scorer_name(_AutoevalsLikeScorer()) == "Levenshtein"
    assert score(_AutoevalsLikeScorer()) == [
        Score("Levenshtein", 0.8, "close", {"rationale": "close"})
    ]


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (1.5, "must be in [0, 1]"),
        (float("nan"), "must be in [0, 1]"),
        ("good", "return a number in [0, 1]"),
        ({"name": "x"}, "without 'value' or 'score'"),
        (object(), "return a number in [0, 1]"),
    ],
)
def test_values_that_are_not_scores_raise_a_clear_error(returned: Any, message: str) -> None:
    with pytest.raises(ScorerError, match=message.replace("[", r"\[").replace("]", r"\]")):
        score(lambda output: returned)


def test_scorer_exceptions_propagate_unchanged() -> None:
    def broken(output: Any) -> float:
        raise ValueError("judge unreachable")

    with pytest.raises(ValueError, match="judge unreachable"):
        score(broken)
