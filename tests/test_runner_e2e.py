"""End to end: an experiment whose task calls the real `openai` client,
instrumented by the official OpenTelemetry OpenAI instrumentation, against a local
OpenAI-compatible server; spans go over OTLP to a real `evalhouse serve` and land in
ClickHouse as one root, one task, one LLM and one scorer span per row."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
from conftest import ServeProcess, wait_for
from fake_openai import Usage, fake_openai
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_sdk_support import api_sql, memory_spans

import evalhouse

CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Peru": "Lima"}


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def heartbeat(api: str, seconds: float = 5.0) -> bool:
    """True once an evaluator worker in serve has reported in (within ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if int(api_sql(api, "SELECT count() AS n FROM evaluator_workers")[0]["n"]):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_openai_experiment_lands_in_clickhouse_with_tokens_and_scores(
    spans: InMemorySpanExporter, serve: Callable[..., ServeProcess]
) -> None:
    server = serve()
    api = f"http://127.0.0.1:{server.ui_port}"
    tracing = evalhouse.init(endpoint=f"127.0.0.1:{server.grpc_port}")
    assert tracing.error is None and "openai" in tracing.instrumented
    # The evaluator daemon in serve computes the run's metrics: the result then carries them.
    # Without one, the result must say they are pending (or unavailable, without the views).
    tables = {row["name"] for row in api_sql(api, "SHOW TABLES")}
    daemon = "evaluator_workers" in tables and heartbeat(api)

    def reply(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        return next(city for country, city in CAPITALS.items() if country in question)

    def exact(output: str, expected: str) -> float:
        return 1.0 if output == expected else 0.0

    with (
        fake_openai(reply=reply, usage=Usage(prompt_tokens=11, completion_tokens=7)) as llm,
        openai.OpenAI(base_url=llm.base_url, api_key="test") as client,
    ):

        def task(country: str) -> str:
            answer = client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": f"Capital of {country}?"}],
            )
            return answer.choices[0].message.content or ""

        data = [{"input": country, "expected": city} for country, city in CAPITALS.items()]
        data[2]["expected"] = "Cusco"  # one wrong expectation: a 0 score
        result = evalhouse.run_experiment(
            "capitals-e2e",
            data,
            task,
            scorers=[exact],
            api_url=api,
            summary_timeout=60 if daemon else 1,
        )

    assert [row.output for row in result.rows] == ["Paris", "Tokyo", "Lima"]
    assert result.scorers["exact"].mean == pytest.approx(2 / 3)
    query = f"""
        SELECT TraceId, SpanId, ParentSpanId, Purpose, SpanName, LlmOperation, InputTokens,
               OutputTokens, SpanAttributes['evalhouse.score.value'] AS score
        FROM otel_traces
        WHERE TraceId IN (SELECT TraceId FROM otel_traces
                          WHERE ExperimentId = '{result.experiment_id}')
        ORDER BY TraceId, Timestamp"""
    stored = wait_for(lambda: (rows := api_sql(api, query)) and len(rows) >= 12 and rows)
    assert len(stored) == 12
    traces: dict[str, list[dict[str, Any]]] = {}
    for span in stored:
        traces.setdefault(span["TraceId"], []).append(span)
    assert len(traces) == 3
    scores = []
    for spans_of_row in traces.values():
        by_kind = {(s["Purpose"] or s["LlmOperation"]): s for s in spans_of_row}
        assert sorted(by_kind) == ["chat", "eval", "scorer", "task"]
        root, task_span, llm_span, scorer = (by_kind[k] for k in ("eval", "task", "chat", "scorer"))
        assert root["ParentSpanId"] == "" and root["SpanName"] == "eval"
        assert task_span["ParentSpanId"] == root["SpanId"]
        assert llm_span["ParentSpanId"] == task_span["SpanId"]  # nested through the thread
        assert (int(llm_span["InputTokens"]), int(llm_span["OutputTokens"])) == (11, 7)
        assert scorer["ParentSpanId"] == root["SpanId"] and scorer["SpanName"] == "exact"
        assert int(root["InputTokens"]) == 0 and int(task_span["InputTokens"]) == 0
        scores.append(float(scorer["score"]))
    assert sorted(scores) == [0.0, 1.0, 1.0]

    # serve runs the evaluator daemon: the result carries the server-computed metrics.
    assert daemon, "evalhouse serve should run the evaluator daemon"
    assert result.summary.status == "ready", result.summary.message
    assert (result.summary.input_tokens, result.summary.output_tokens) == (33, 21)
    assert result.summary.scores == {"exact": pytest.approx(2 / 3)}

    # A second run of the same experiment compares with the first through the results API.
    rerun = evalhouse.run_experiment(
        "capitals-e2e",
        data,
        lambda country: CAPITALS[country],
        scorers=[exact],
        api_url=api,
        summary_timeout=60,
    )
    assert rerun.summary.status == "ready", rerun.summary.message
    compared = rerun.compare()
    assert compared["baseline"]["experiment_id"] == result.experiment_id
    assert compared["matched_rows"] == 3
    accuracy = compared["scores"]["exact"]
    assert (accuracy["baseline_mean"], accuracy["candidate_mean"]) == (
        pytest.approx(2 / 3),
        pytest.approx(2 / 3),
    )
    assert (accuracy["improvements"], accuracy["regressions"], accuracy["unchanged"]) == (0, 0, 3)
    assert accuracy["verdict"] == "no significant change"
