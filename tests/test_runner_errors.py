"""run_experiment: failures, timeouts, concurrency, bad input, and LLM calls nesting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_openai import Usage, fake_openai
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from test_sdk_support import attr, by_purpose, children, finished, memory_spans

import evalhouse
from evalhouse import contract
from evalhouse.errors import EvalhouseError


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def test_task_error_marks_the_row_and_scorers_that_take_errors_still_run(
    spans: InMemorySpanExporter,
) -> None:
    seen: list[tuple[Any, Any]] = []

    def task(input: str) -> str:
        if input == "bad":
            raise ValueError("no capital for bad")
        return input.upper()

    def exact(output: Any, expected: Any) -> bool:
        return bool(output == expected)

    def penalise_errors(output: Any, error: str | None) -> float:
        seen.append((output, error))
        return 0.0 if error else 1.0

    data = [{"input": "ok", "expected": "OK"}, {"input": "bad", "expected": "?"}]
    result = evalhouse.run_experiment("errors", data, task, scorers=[exact, penalise_errors])

    good, bad = result.rows
    assert good.error is None and bad.error == "ValueError: no capital for bad"
    assert bad.output is None and len(result.errors) == 1
    assert sorted(seen, key=str) == sorted([("OK", None), (None, bad.error)], key=str)
    assert [s.name for s in bad.scores] == ["penalise_errors"]  # exact skipped the failed row
    assert result.scorers["exact"].count == 1
    assert result.scorers["penalise_errors"].mean == 0.5
    spans_ = finished(spans)
    root = next(r for r in by_purpose(spans_, "eval") if attr(r, contract.INPUT) == '"bad"')
    assert root.status.status_code is StatusCode.ERROR
    assert root.status.description == "ValueError: no capital for bad"
    assert attr(root, contract.OUTPUT) is None
    task_span = next(s for s in children(spans_, root) if s.name == "task")
    assert task_span.status.status_code is StatusCode.ERROR
    exception = next(e for e in task_span.events if e.name == "exception")
    assert (exception.attributes or {}).get("exception.type") == "ValueError"
    assert [s.name for s in children(spans_, root)] == ["task", "penalise_errors"]
    assert "Error in row" in result.format() and "no capital for bad" in result.format()


def test_scorer_failures_are_recorded_never_dropped_never_fatal(
    spans: InMemorySpanExporter,
) -> None:
    def explodes(output: Any) -> float:
        raise RuntimeError("judge unavailable")

    def out_of_range(output: Any) -> float:
        return 7.0

    def fine(output: Any) -> float:
        return 1.0

    result = evalhouse.run_experiment(
        "scorer-errors",
        [{"input": 1}, {"input": 2}],
        lambda x: x,
        scorers=[explodes, out_of_range, fine],
    )

    assert all(row.error is None for row in result.rows)
    assert result.rows[0].scorer_errors == {
        "explodes": "RuntimeError: judge unavailable",
        "out_of_range": "ScorerError: scorer out_of_range returned 7.0; scores must be in [0, 1]",
    }
    assert result.scorers["explodes"].errors == 2 and result.scorers["explodes"].mean is None
    assert result.scorers["fine"].mean == 1.0 and result.scorers["fine"].count == 2
    failed = [s for s in by_purpose(finished(spans), "scorer") if s.name == "explodes"]
    assert len(failed) == 2
    for span in failed:
        assert attr(span, contract.SCORE_ERROR) == "RuntimeError: judge unavailable"
        assert span.status.status_code is StatusCode.ERROR
        assert any(event.name == "exception" for event in span.events)
        assert attr(span, contract.SCORE_VALUE) is None
    assert "Scorer explodes failed on row" in result.format()


def test_timeouts_async_and_sync_tasks(spans: InMemorySpanExporter) -> None:
    async def slow_async(input: float) -> float:
        await asyncio.sleep(input)
        return input

    def slow_sync(input: float) -> float:
        time.sleep(input)
        return input

    def own_timeout(input: float) -> float:
        raise TimeoutError("upstream said so")

    data = [{"input": 0.0}, {"input": 2.0}]
    for task in (slow_async, slow_sync):
        started = time.monotonic()
        result = evalhouse.run_experiment("timeouts", data, task, timeout=0.3)
        assert time.monotonic() - started < 1.5  # did not wait for the 2 s task
        assert result.rows[0].error is None and result.rows[0].output == 0.0
        assert result.rows[1].error == "task timed out after 0.3 s"
        assert 0.25 < result.rows[1].duration_seconds < 1.0
    own = evalhouse.run_experiment("timeouts", [{"input": 0}], own_timeout, timeout=5)
    assert own.rows[0].error == "TimeoutError: upstream said so"
    timed_out = [
        s for s in by_purpose(finished(spans), "task") if s.status.status_code is StatusCode.ERROR
    ]
    messages = sorted(str(s.status.description) for s in timed_out)
    assert messages == [
        "TimeoutError: upstream said so",
        "task timed out after 0.3 s",
        "task timed out after 0.3 s",
    ]


@pytest.mark.parametrize("is_async", [False, True])
def test_concurrency_is_bounded_and_used(spans: InMemorySpanExporter, is_async: bool) -> None:
    lock = threading.Lock()
    running = 0
    peak = 0

    def enter() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)

    def leave() -> None:
        nonlocal running
        with lock:
            running -= 1

    def sync_task(input: int) -> int:
        enter()
        time.sleep(0.05)
        leave()
        return input

    async def async_task(input: int) -> int:
        enter()
        await asyncio.sleep(0.05)
        leave()
        return input

    task: Any = async_task if is_async else sync_task
    data = [{"input": n} for n in range(24)]
    result = evalhouse.run_experiment("bounded", data, task, max_concurrency=4)

    assert [row.output for row in result.rows] == list(range(24))  # results keep data order
    assert peak == 4


def test_bad_input_fails_before_anything_runs(spans: InMemorySpanExporter) -> None:
    calls: list[Any] = []

    def task(input: Any) -> Any:
        calls.append(input)
        return input

    cases: list[tuple[dict[str, Any], str]] = [
        ({"data": [{"input": 1}, {"question": 2}]}, "row 1 has no 'input'"),
        ({"data": {"input": 1}}, "data must be a list"),
        ({"data": [{"input": 1, "metadata": "x"}]}, "'metadata' must be a dict"),
        ({"data": [{"input": 1}], "trials": 0}, "trials must be an integer >= 1"),
        ({"data": [{"input": 1}], "max_concurrency": 0}, "max_concurrency must be"),
        ({"data": [{"input": 1}], "timeout": -1}, "timeout must be"),
        ({"data": [{"input": 1}], "scorers": [42]}, "42 is not a scorer"),
        ({"data": None, "dataset": "qa"}, "load it with evalhouse.dataset"),
    ]
    for kwargs, message in cases:
        with pytest.raises(EvalhouseError, match=message):
            evalhouse.run_experiment("bad", task=task, **kwargs)
    with pytest.raises(EvalhouseError, match="takes no input"):
        evalhouse.run_experiment("bad", [{"input": 1}], lambda: 1)
    with pytest.raises(EvalhouseError, match="needs a name"):
        evalhouse.run_experiment("", [{"input": 1}], task)
    assert calls == [] and finished(spans) == []


@pytest.mark.parametrize("is_async", [False, True])
def test_llm_calls_in_the_task_nest_under_the_task_span(
    spans: InMemorySpanExporter, is_async: bool
) -> None:
    messages = [{"role": "user", "content": "capital?"}]
    data = [{"input": "capital?"}] * 3
    with fake_openai(reply=lambda body: "Paris", usage=Usage(13, 5)) as server:
        if is_async:

            async def main() -> evalhouse.ExperimentResult:
                async with openai.AsyncOpenAI(base_url=server.base_url, api_key="t") as client:

                    async def task(input: str) -> str:
                        reply = await client.chat.completions.create(
                            model="gpt-4o-mini", messages=messages
                        )
                        return reply.choices[0].message.content or ""

                    return await evalhouse.run_experiment_async("llm", data, task)

            result = asyncio.run(main())
        else:
            with openai.OpenAI(base_url=server.base_url, api_key="t") as sync_client:

                def sync_task(input: str) -> str:
                    reply = sync_client.chat.completions.create(
                        model="gpt-4o-mini", messages=messages
                    )
                    return reply.choices[0].message.content or ""

                result = evalhouse.run_experiment("llm", data, sync_task)

    assert [row.output for row in result.rows] == ["Paris"] * 3
    spans_ = finished(spans)
    for task_span in by_purpose(spans_, "task"):
        (llm,) = children(spans_, task_span)
        assert attr(llm, "gen_ai.operation.name") == "chat"
        assert attr(llm, "gen_ai.usage.input_tokens") == 13
        assert attr(llm, "gen_ai.usage.output_tokens") == 5
        assert "capital?" in str(attr(llm, "gen_ai.input.messages"))  # content captured
