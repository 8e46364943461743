"""evalhouse.task / evalhouse.scorer as decorators and context managers, sync and async."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_sdk_support import attr, by_purpose, children, finished, json_attr, memory_spans

import evalhouse
from evalhouse import contract


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def test_decorators_record_purpose_input_and_output(spans: InMemorySpanExporter) -> None:
    @evalhouse.task
    def retrieve(query: str) -> list[str]:
        return [f"doc about {query}"]

    @evalhouse.task(name="answer")
    async def generate(question: str, context: list[str]) -> str:
        await asyncio.sleep(0)
        return "Paris"

    @evalhouse.scorer
    def exact(output: str, expected: str) -> bool:
        return output == expected

    @evalhouse.scorer()
    async def judge(output: str) -> dict[str, Any]:
        return {"name": "helpful", "value": 0.8, "comment": "clear"}

    docs = retrieve("France")
    answer = asyncio.run(generate("capital?", docs))
    assert exact(answer, "Paris") is True  # the wrapped function returns what it returned
    assert asyncio.run(judge(answer)) == {"name": "helpful", "value": 0.8, "comment": "clear"}
    assert retrieve.__name__ == "retrieve"

    named = {span.name: span for span in finished(spans)}
    assert attr(named["retrieve"], contract.SPAN_PURPOSE) == "task"
    assert json_attr(named["retrieve"], contract.INPUT) == "France"  # one argument: itself
    assert json_attr(named["retrieve"], contract.OUTPUT) == ["doc about France"]
    assert json_attr(named["answer"], contract.INPUT) == {
        "question": "capital?",
        "context": ["doc about France"],
    }
    assert json_attr(named["answer"], contract.OUTPUT) == "Paris"
    assert attr(named["exact"], contract.SPAN_PURPOSE) == "scorer"
    assert attr(named["exact"], contract.SCORE_NAME) == "exact"
    assert attr(named["exact"], contract.SCORE_VALUE) == 1.0
    assert attr(named["judge"], contract.SCORE_NAME) == "helpful"
    assert attr(named["judge"], contract.SCORE_EXPLANATION) == "clear"


def test_context_managers_nest_and_score(spans: InMemorySpanExporter) -> None:
    with evalhouse.task("pipeline", input={"q": "capital?"}) as pipeline:
        with evalhouse.task("retrieve") as step:
            step.set_output(["doc-1"])
        with evalhouse.scorer("judge") as judging:
            judging.score(0.5, explanation="half right", metadata={"model": "j"})
        with evalhouse.scorer("checks") as checks:
            checks.score([{"name": "a", "value": 1}, {"name": "b", "value": 0}])
            checks.score("not a score")  # logged, never raised into the app
        pipeline.set_output("Paris")

    async def async_block() -> None:
        async with evalhouse.task("async-step") as step:
            step.set_output(1)

    asyncio.run(async_block())

    spans_ = finished(spans)
    named = {span.name: span for span in spans_}
    root = named["pipeline"]
    assert json_attr(root, contract.INPUT) == {"q": "capital?"}
    assert json_attr(root, contract.OUTPUT) == "Paris"
    assert {span.name for span in children(spans_, root)} == {"retrieve", "judge", "checks"}
    judge = named["judge"]
    assert attr(judge, contract.SCORE_VALUE) == 0.5
    assert attr(judge, contract.SCORE_EXPLANATION) == "half right"
    assert json_attr(judge, contract.SCORE_METADATA) == {"model": "j"}
    events = [e.attributes or {} for e in named["checks"].events]
    assert [(e[contract.EVALUATION_NAME], e[contract.EVALUATION_SCORE]) for e in events] == [
        ("a", 1.0),
        ("b", 0.0),
    ]
    assert json_attr(named["async-step"], contract.OUTPUT) == 1
    assert len(by_purpose(spans_, "scorer")) == 2


def test_exceptions_are_recorded_and_re_raised_unchanged(spans: InMemorySpanExporter) -> None:
    class Boom(Exception):
        pass

    @evalhouse.task
    def failing(x: int) -> int:
        raise Boom("broken step")

    @evalhouse.scorer
    async def failing_async(output: str) -> float:
        raise Boom("judge down")

    with pytest.raises(Boom, match="broken step"):
        failing(1)
    with pytest.raises(Boom, match="judge down"):
        asyncio.run(failing_async("x"))
    with pytest.raises(KeyError), evalhouse.task("block"):
        raise KeyError("k")

    named = {span.name: span for span in finished(spans)}
    for name, message in [
        ("failing", "Boom: broken step"),
        ("failing_async", "Boom: judge down"),
        ("block", "KeyError: 'k'"),
    ]:
        span = named[name]
        assert span.status.status_code is StatusCode.ERROR
        assert span.status.description == message
        assert [event.name for event in span.events] == ["exception"]
        assert attr(span, contract.OUTPUT) is None


def test_one_helper_object_entered_by_concurrent_tasks(spans: InMemorySpanExporter) -> None:
    step = evalhouse.task("step")

    async def work(n: int) -> None:
        async with step as span:
            await asyncio.sleep(0.01 * (n + 1))  # the first in is the first out
            span.set_output(n)

    async def main() -> None:
        await asyncio.gather(*(work(n) for n in range(3)))

    asyncio.run(main())

    steps = [span for span in finished(spans) if span.name == "step"]
    assert sorted(json_attr(span, contract.OUTPUT) for span in steps) == [0, 1, 2]
    assert all(span.parent is None for span in steps)  # siblings, not nested in each other
    for span in steps:  # each block ended its own span, when it left
        n = json_attr(span, contract.OUTPUT)
        assert (span.end_time or 0) - (span.start_time or 0) >= 0.01 * (n + 1) * 1e9
