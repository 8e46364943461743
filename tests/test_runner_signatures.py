"""run_experiment: every task and scorer signature, sync and async, and the spans they make."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_sdk_support import attr, by_purpose, children, finished, json_attr, memory_spans

import evalhouse
from evalhouse import contract
from evalhouse.scoring import Score

DATA = [
    {"input": "france", "expected": "PARIS", "metadata": {"region": "eu"}},
    {"input": "japan", "expected": "KYOTO", "id": "jp"},
]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def capital(country: str) -> str:
    return {"france": "PARIS", "japan": "TOKYO"}[country]


def exact(output: Any, expected: Any) -> bool:
    return bool(output == expected)


def test_one_trace_per_row_with_root_task_and_scorer_spans(spans: InMemorySpanExporter) -> None:
    result = evalhouse.run_experiment(
        "capitals", DATA, capital, scorers=[exact], metadata={"model": "rules"}
    )

    assert [row.output for row in result.rows] == ["PARIS", "TOKYO"]
    assert result.scorers["exact"].mean == 0.5 and result.scorers["exact"].count == 2
    finished_spans = finished(spans)
    roots = by_purpose(finished_spans, "eval")
    assert len(roots) == 2 and len({root.context.trace_id for root in roots}) == 2
    for root, row in zip(roots, DATA, strict=True):
        assert root.name == "eval" and root.parent is None
        assert attr(root, contract.EXPERIMENT_NAME) == "capitals"
        assert attr(root, contract.EXPERIMENT_ID) == result.experiment_id
        assert json_attr(root, contract.EXPERIMENT_METADATA) == {"model": "rules"}
        assert json_attr(root, contract.INPUT) == row["input"]
        assert json_attr(root, contract.EXPECTED) == row["expected"]
        assert attr(root, contract.TRIAL) == 0
        under = children(finished_spans, root)
        assert sorted(span.name for span in under) == ["exact", "task"]
        task_span = next(span for span in under if span.name == "task")
        assert attr(task_span, contract.SPAN_PURPOSE) == "task"
        assert json_attr(task_span, contract.INPUT) == row["input"]
        scorer_span = next(span for span in under if span.name == "exact")
        assert attr(scorer_span, contract.SPAN_PURPOSE) == "scorer"
        assert attr(scorer_span, contract.SCORE_NAME) == "exact"
        events = [event for event in scorer_span.events if event.name == contract.EVALUATION_EVENT]
        assert len(events) == 1 and events[0].attributes is not None
        assert events[0].attributes[contract.EVALUATION_NAME] == "exact"
    assert json_attr(roots[0], contract.OUTPUT) == "PARIS"
    assert json_attr(roots[0], contract.METADATA) == {"region": "eu"}
    assert attr(by_purpose(finished_spans, "scorer")[0], contract.SCORE_VALUE) in (0.0, 1.0)
    # Row ids: the given id, else a hash of the input that does not change between runs.
    assert attr(roots[1], contract.DATASET_ROW_ID) == "jp"
    rerun = evalhouse.run_experiment("capitals", DATA[:1], capital)
    assert rerun.rows[0].row_id == attr(roots[0], contract.DATASET_ROW_ID)
    assert rerun.experiment_id != result.experiment_id


def test_task_signatures_sync_and_async(spans: InMemorySpanExporter) -> None:
    seen: dict[str, Any] = {}

    def plain(input: str) -> str:
        return input.upper()

    async def plain_async(input: str) -> str:
        await asyncio.sleep(0)
        return input.upper()

    def with_hooks(input: str, hooks: evalhouse.instrumentation.Hooks) -> str:
        seen["hooks"] = (hooks.expected, dict(hooks.metadata), hooks.trial, hooks.row_id)
        hooks.metadata["model"] = "m1"
        hooks.meta(temperature=0)
        hooks.span.set_attribute("custom", "yes")
        return input.upper()

    async def with_hooks_async(input: str, hooks: Any) -> str:
        return f"{input.upper()}:{hooks.expected}"

    def item_style(*, item: Any, **kwargs: Any) -> str:
        seen["item"] = item
        return str(item["input"]).upper()

    async def item_style_async(*, item: Any, hooks: Any) -> str:
        return f"{item['input'].upper()}:{hooks.trial}"

    def kwargs_only(**kwargs: Any) -> str:
        return str(kwargs["item"]["input"]).upper()

    class CallableTask:
        async def __call__(self, input: str) -> str:
            return input.upper()

    data = [{"input": "oslo", "expected": "OSLO", "metadata": {"k": 1}}]
    outputs = {}
    for task in (
        plain,
        plain_async,
        with_hooks,
        with_hooks_async,
        item_style,
        item_style_async,
        kwargs_only,
        CallableTask(),
        lambda input: input.upper(),
    ):
        result = evalhouse.run_experiment("signatures", data, task, scorers=[exact])
        assert result.rows[0].error is None, result.rows[0].error
        outputs[getattr(task, "__name__", "object")] = result.rows[0].output
        if task is with_hooks:
            assert result.rows[0].metadata == {"k": 1, "model": "m1", "temperature": 0}
    assert outputs == {
        "plain": "OSLO",
        "plain_async": "OSLO",
        "with_hooks": "OSLO",
        "with_hooks_async": "OSLO:OSLO",
        "item_style": "OSLO",
        "item_style_async": "OSLO:0",
        "kwargs_only": "OSLO",
        "object": "OSLO",
        "<lambda>": "OSLO",
    }
    assert seen["hooks"][:3] == ("OSLO", {"k": 1}, 0)
    assert seen["item"] is data[0]  # the row exactly as given
    hooked = [s for s in by_purpose(finished(spans), "task") if attr(s, "custom") == "yes"]
    assert len(hooked) == 1
    roots = by_purpose(finished(spans), "eval")
    assert any(
        json_attr(r, contract.METADATA) == {"k": 1, "model": "m1", "temperature": 0} for r in roots
    )


@dataclass
class _EvalsScore:
    name: str
    score: float | None
    metadata: dict[str, Any]
    error: Exception | None = None


class _EvalsScorer:
    """The shape of an autoevals scorer object (eval_async / eval, _name)."""

    def _name(self) -> str:
        return "Levenshtein"

    async def eval_async(self, output: Any, expected: Any = None, **kwargs: Any) -> _EvalsScore:
        return _EvalsScore("Levenshtein", 1.0 if output == expected else 0.25, {"k": 1})

    def eval(self, output: Any, expected: Any = None, **kwargs: Any) -> _EvalsScore:
        raise AssertionError("the async path is used when there is one")


def test_scorer_signatures_and_return_shapes(spans: InMemorySpanExporter) -> None:
    received: dict[str, Any] = {}

    def braintrust(input: Any, output: Any, expected: Any, metadata: Any) -> float:
        received["braintrust"] = (input, output, expected, metadata)
        return 0.75

    def langfuse(*, input: Any, output: Any, expected_output: Any = None, **kwargs: Any) -> Any:
        received["langfuse"] = (input, output, expected_output, kwargs["metadata"])
        return {"name": "match", "value": output == expected_output, "comment": "same"}

    async def judged(output: Any) -> Score:
        await asyncio.sleep(0)
        return Score("judge", 0.5, "half right", {"model": "j"})

    def several(output: Any) -> list[Any]:
        return [Score("fluency", 1.0), {"name": "tone", "value": 0.5}]

    def abstains(output: Any) -> None:
        return None

    data = [{"input": "q", "expected": "A", "metadata": {"m": 2}}]
    result = evalhouse.run_experiment(
        "scorers",
        data,
        lambda input: "A",
        scorers=[braintrust, judged, several, abstains, _EvalsScorer()],
        evaluators=[langfuse, lambda o, e: o == e],
    )

    assert received["braintrust"] == ("q", "A", "A", {"m": 2})
    assert received["langfuse"] == ("q", "A", "A", {"m": 2})
    means = {name: summary.mean for name, summary in result.scorers.items()}
    assert means == {
        "abstains": None,
        "braintrust": 0.75,
        "fluency": 1.0,
        "judge": 0.5,
        "Levenshtein": 1.0,
        "match": 1.0,
        "score": 1.0,
        "tone": 0.5,
    }
    assert result.scorers["abstains"].count == 0
    scorer_spans = {span.name: span for span in by_purpose(finished(spans), "scorer")}
    assert set(scorer_spans) == {
        "braintrust",
        "judged",
        "several",
        "abstains",
        "Levenshtein",
        "langfuse",
        "score",
    }
    judge = scorer_spans["judged"]
    assert attr(judge, contract.SCORE_NAME) == "judge"
    assert attr(judge, contract.SCORE_VALUE) == 0.5
    assert attr(judge, contract.SCORE_EXPLANATION) == "half right"
    assert json_attr(judge, contract.SCORE_METADATA) == {"model": "j"}
    # Several scores from one scorer: no single-score attributes, one event per score.
    multi = scorer_spans["several"]
    assert attr(multi, contract.SCORE_NAME) is None
    events = [e.attributes for e in multi.events if e.name == contract.EVALUATION_EVENT]
    assert [(e or {}).get(contract.EVALUATION_NAME) for e in events] == ["fluency", "tone"]
    assert [(e or {}).get(contract.EVALUATION_SCORE) for e in events] == [1.0, 0.5]
    # A scorer that chose not to score names its score but gives no value.
    assert attr(scorer_spans["abstains"], contract.SCORE_NAME) == "abstains"
    assert attr(scorer_spans["abstains"], contract.SCORE_VALUE) is None


def test_trials_share_the_row_id_and_number_from_zero(spans: InMemorySpanExporter) -> None:
    calls: list[str] = []

    def task(input: str) -> str:
        calls.append(input)
        return input

    result = evalhouse.run_experiment("trials", [{"input": {"q": 1}}], task, trials=3)

    assert len(calls) == 3 and len(result.rows) == 3
    assert [row.trial for row in result.rows] == [0, 1, 2]
    assert len({row.row_id for row in result.rows}) == 1
    roots = by_purpose(finished(spans), "eval")
    assert sorted(attr(root, contract.TRIAL) for root in roots) == [0, 1, 2]
    assert len({root.context.trace_id for root in roots}) == 3
    assert "3 rows (1 inputs x 3 trials)" in result.format()


def test_dataset_objects_labels_and_server_side_scorers(spans: InMemorySpanExporter) -> None:
    @dataclass
    class Item:
        id: str
        input: Any
        expected: Any
        metadata: dict[str, Any]

    class Dataset:
        name = "geo"
        version = 3

        def __iter__(self) -> Iterator[Item]:
            return iter([Item("r1", "chile", "SANTIAGO", {"level": "easy"})])

    result = evalhouse.run_experiment(
        "from-dataset", task=lambda input: input.upper(), dataset=Dataset(), scorers=["factuality"]
    )
    labelled = evalhouse.run_experiment(
        "labelled", [{"input": "x"}], lambda input: input, dataset="adhoc"
    )

    assert result.rows[0].row_id == "r1" and result.rows[0].expected == "SANTIAGO"
    assert result.dataset_name == "geo" and labelled.dataset_name == "adhoc"
    roots = {attr(r, contract.EXPERIMENT_NAME): r for r in by_purpose(finished(spans), "eval")}
    geo = roots["from-dataset"]
    assert attr(geo, contract.DATASET_NAME) == "geo"
    assert attr(geo, contract.DATASET_VERSION) == "3"
    assert json_attr(geo, contract.SCORERS) == ["factuality"]
    assert json_attr(geo, contract.METADATA) == {"level": "easy"}
    assert attr(roots["labelled"], contract.DATASET_NAME) == "adhoc"
    assert attr(roots["labelled"], contract.DATASET_VERSION) is None
    assert "factuality" not in result.scorers  # run by the server, not here


def test_decorated_task_and_scorer_are_not_traced_twice(spans: InMemorySpanExporter) -> None:
    @evalhouse.task
    def answer(input: str) -> str:
        return input

    @evalhouse.scorer
    def same(output: Any, expected: Any) -> bool:
        return bool(output == expected)

    evalhouse.run_experiment("tagged", [{"input": "a", "expected": "a"}], answer, scorers=[same])

    spans_ = finished(spans)
    assert len(by_purpose(spans_, "task")) == 1
    assert len(by_purpose(spans_, "scorer")) == 1
    assert attr(by_purpose(spans_, "scorer")[0], contract.SCORE_VALUE) == 1.0


def test_async_twin_runs_in_the_callers_loop(spans: InMemorySpanExporter) -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def task(input: str) -> str:
        loops.append(asyncio.get_running_loop())
        return input

    async def main() -> tuple[asyncio.AbstractEventLoop, Any]:
        result = await evalhouse.run_experiment_async("async", [{"input": "a"}], task)
        return asyncio.get_running_loop(), result

    loop, result = asyncio.run(main())

    assert loops == [loop] and result.rows[0].output == "a"


def test_sync_runner_works_inside_a_running_loop(spans: InMemorySpanExporter) -> None:
    # As in Jupyter: a running loop in this thread; the sync call must not fail or deadlock.
    async def notebook_cell() -> Any:
        return evalhouse.run_experiment("in-loop", [{"input": 1}, {"input": 2}], lambda x: x * 2)

    result = asyncio.run(notebook_cell())

    assert [row.output for row in result.rows] == [2, 4]
    assert len(by_purpose(finished(spans), "eval")) == 2
