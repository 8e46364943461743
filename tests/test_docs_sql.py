"""Every ```sql example in docs/sql.md runs, read-only, on a store seeded through real ingest.

Each example starts with a ``-- title`` comment line; the tests find examples by that title.
The seed uses the trace id the doc uses, so id-based examples return the seeded trace.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from otlp_builders import log_request, span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.store import OtlpSink, Store, migrate

DOC = Path(__file__).resolve().parent.parent / "docs" / "sql.md"
TRACE_ID = "5b8efff798038103d269b633813fc60c"
EXPERIMENT = "summaries-v2"
MS = 1_000_000


def sql_examples(text: str) -> dict[str, str]:
    """``-- title`` → query, for every ```sql fenced block."""
    examples: dict[str, str] = {}
    for block in re.findall(r"^```sql\n(.*?)^```$", text, flags=re.S | re.M):
        first = block.splitlines()[0]
        assert first.startswith("-- "), f"sql example without a '-- title' line: {block!r}"
        title = first.removeprefix("-- ").strip()
        assert title not in examples, f"two sql examples titled {title!r}"
        examples[title] = block
    return examples


EXAMPLES = sql_examples(DOC.read_text(encoding="utf-8"))


def _seed_support_bot(sink: OtlpSink, now: int) -> None:
    trace = bytes.fromhex(TRACE_ID)
    root = span(
        "POST /answer",
        {"http.request.method": "POST", "http.route": "/answer"},
        trace_id=trace,
        start_ns=now,
        duration_ns=2_000 * MS,
        kind=2,
    )
    parent = root["span_id"]
    wrapper = span(
        "ai.generateText",
        {
            "ai.operationId": "ai.generateText",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": 1500,
            "ai.usage.completionTokens": 200,
        },
        trace_id=trace,
        parent_span_id=parent,
        start_ns=now + 10 * MS,
        duration_ns=1_600 * MS,
    )
    chat = span(
        "ai.generateText.doGenerate",
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "gen_ai.system": "openai.chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.request.temperature": 0.9,
            "gen_ai.usage.input_tokens": 1500,
            "gen_ai.usage.output_tokens": 200,
            "ai.usage.cachedInputTokens": 1024,
        },
        trace_id=trace,
        parent_span_id=wrapper["span_id"],
        start_ns=now + 20 * MS,
        duration_ns=1_500 * MS,
        kind=3,
    )
    tool = span(
        "execute_tool lookup_order",
        {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order"},
        trace_id=trace,
        parent_span_id=parent,
        start_ns=now + 1_700 * MS,
        duration_ns=250 * MS,
    )
    request = trace_request([root, wrapper, chat, tool], service="support-bot")
    failed = request.resource_spans[0].scope_spans[0].spans[3]
    failed.status.code = Status.STATUS_CODE_ERROR
    failed.status.message = "order service timed out"
    event = failed.events.add(name="exception", time_unix_nano=now + 1_900 * MS)
    event.attributes.add(key="exception.type").value.string_value = "TimeoutError"
    event.attributes.add(key="exception.message").value.string_value = "timed out after 250 ms"
    sink.insert_otlp("traces", _length_delimited([request.SerializeToString()]), "seed-1")

    logs = log_request(
        [
            {
                "time": now + 25 * MS,
                "trace_id": trace,
                "span_id": chat["span_id"],
                "event_name": "gen_ai.user.message",
                "body": '{"content":"where is my order?"}',
            }
        ],
        service="support-bot",
    )
    sink.insert_otlp("logs", _length_delimited([logs.SerializeToString()]), "seed-2")


def _seed_experiment(sink: OtlpSink, now: int) -> None:
    trace = uuid.uuid4().bytes
    root = span(
        "eval row-1",
        {
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": EXPERIMENT,
            "evalhouse.experiment.id": "exp-0001",
            "evalhouse.dataset.row_id": "row-1",
            "evalhouse.trial": 1,
            "evalhouse.input": '{"text":"long article"}',
            "evalhouse.output": '"short summary"',
        },
        trace_id=trace,
        start_ns=now,
        duration_ns=400 * MS,
    )
    task = span(
        "task",
        {"evalhouse.span.purpose": "task"},
        trace_id=trace,
        parent_span_id=root["span_id"],
        start_ns=now + MS,
        duration_ns=200 * MS,
    )
    chat = span(
        "chat claude-3-5-haiku",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-3-5-haiku",
            "gen_ai.usage.input_tokens": 300,
            "gen_ai.usage.output_tokens": 40,
            "llm.cost.total": 0.00046,
        },
        trace_id=trace,
        parent_span_id=task["span_id"],
        start_ns=now + 2 * MS,
        duration_ns=180 * MS,
        kind=3,
    )
    scorer = span(
        "score exact_match",
        {
            "evalhouse.span.purpose": "scorer",
            "evalhouse.score.name": "exact_match",
            "evalhouse.score.value": 1.0,
        },
        trace_id=trace,
        parent_span_id=root["span_id"],
        start_ns=now + 210 * MS,
        duration_ns=5 * MS,
    )
    request = trace_request([root, task, chat, scorer], service="eval-runner")
    sink.insert_otlp("traces", _length_delimited([request.SerializeToString()]), "seed-3")


@pytest.fixture(scope="module")
def seeded(chdb_dsn: str) -> Iterator[Store]:
    """Two services, eight spans and one log record, written through the OTLP ingest path.

    Yields a separate store (its own client) for the read-only queries: on chDB the
    ``readonly`` setting of a read-only query stays on its client afterwards.
    """
    database = f"test_docs_{uuid.uuid4().hex[:8]}"
    writer = Store(chdb_dsn, database=database)
    migrate(writer)
    sink = OtlpSink(writer)
    now = time.time_ns() - 60_000 * MS
    _seed_support_bot(sink, now)
    _seed_experiment(sink, now)
    yield Store(chdb_dsn, database=database)
    writer.command(f"DROP DATABASE IF EXISTS {database}")


def run(store: Store, title: str) -> list[dict[str, Any]]:
    """Run a doc example the way `evalhouse sql` does (readonly=1); rows as dicts."""
    output = store.readonly_query(EXAMPLES[title], "JSONEachRow")
    return [json.loads(line) for line in output.decode().splitlines() if line]


def test_doc_has_the_promised_examples() -> None:
    assert len(EXAMPLES) >= 8
    for title in (
        "spans per service",
        "tokens per model per day",
        "slowest LLM calls",
        "whole trace by id",
        "spans of one experiment",
        "attribute lookup",
        "error spans",
    ):
        assert title in EXAMPLES
    model_call_filter = (
        "LlmOperation IN ('chat', 'text_completion', 'generate_content', 'embeddings')"
    )
    assert model_call_filter in EXAMPLES["tokens per model per day"]
    assert "otel_traces_trace_id_ts" in EXAMPLES["whole trace by id"]
    assert TRACE_ID in EXAMPLES["whole trace by id"]


@pytest.mark.parametrize("title", sorted(EXAMPLES))
def test_every_doc_example_runs_read_only(seeded: Store, title: str) -> None:
    run(seeded, title)


def test_spans_per_service_counts_the_seeded_spans(seeded: Store) -> None:
    rows = run(seeded, "spans per service")
    assert {row["ServiceName"]: (int(row["spans"]), int(row["errors"])) for row in rows} == {
        "support-bot": (4, 1),
        "eval-runner": (4, 0),
    }


def test_tokens_per_model_count_model_calls_once(seeded: Store) -> None:
    rows = run(seeded, "tokens per model per day")
    got = {
        (row["LlmProvider"], row["LlmRequestModel"]): (
            int(row["calls"]),
            int(row["input_tokens"]),
            int(row["cache_read_tokens"]),
            int(row["output_tokens"]),
        )
        for row in rows
    }
    assert got == {
        ("openai", "gpt-4o-mini"): (1, 1500, 1024, 200),
        ("anthropic", "claude-3-5-haiku"): (1, 300, 0, 40),
    }


def test_provided_cost_keeps_unknown_cost_apart(seeded: Store) -> None:
    rows = run(seeded, "provided cost per model")
    got = {
        row["LlmRequestModel"]: (row["provided_cost_usd"], int(row["calls_without_cost"]))
        for row in rows
    }
    assert got == {"claude-3-5-haiku": (0.00046, 0), "gpt-4o-mini": (None, 1)}


def test_slowest_llm_calls_come_first(seeded: Store) -> None:
    rows = run(seeded, "slowest LLM calls")
    assert [(row["SpanName"], row["duration_ms"]) for row in rows] == [
        ("ai.generateText.doGenerate", 1500.0),
        ("chat claude-3-5-haiku", 180.0),
    ]


def test_whole_trace_by_id_returns_every_span_of_the_trace(seeded: Store) -> None:
    rows = run(seeded, "whole trace by id")
    assert [row["SpanName"] for row in rows] == [
        "POST /answer",
        "ai.generateText",
        "ai.generateText.doGenerate",
        "execute_tool lookup_order",
    ]
    assert rows[0]["SpanKind"] == "SPAN_KIND_SERVER"


def test_spans_of_one_experiment_include_children_of_the_eval_root(seeded: Store) -> None:
    rows = run(seeded, "spans of one experiment")
    assert [(row["SpanName"], row["Purpose"]) for row in rows] == [
        ("eval row-1", "eval"),
        ("task", "task"),
        ("chat claude-3-5-haiku", ""),
        ("score exact_match", "scorer"),
    ]


def test_experiment_rows_show_task_duration_and_io(seeded: Store) -> None:
    rows = run(seeded, "experiment rows")
    assert len(rows) == 1
    row = rows[0]
    assert (row["row_id"], row["trial"], row["task_ms"]) == ("row-1", 1, 200.0)
    assert (row["input"], row["output"]) == ('{"text":"long article"}', '"short summary"')


def test_scores_from_scorer_spans_are_averaged(seeded: Store) -> None:
    rows = run(seeded, "scores from scorer spans")
    assert [(r["experiment"], r["scorer"], int(r["scored"]), r["mean_score"]) for r in rows] == [
        (EXPERIMENT, "exact_match", 1, 1.0)
    ]


def test_attribute_lookup_reads_the_maps(seeded: Store) -> None:
    rows = run(seeded, "attribute lookup")
    assert [(row["environment"], row["route"], int(row["requests"])) for row in rows] == [
        ("", "/answer", 1)
    ]
    rows = run(seeded, "raw attribute filter on model calls")
    assert [(r["LlmRequestModel"], r["temperature"], int(r["calls"])) for r in rows] == [
        ("gpt-4o-mini", "0.9", 1)
    ]


def test_error_spans_show_status_and_exception(seeded: Store) -> None:
    rows = run(seeded, "error spans")
    assert [
        (r["SpanName"], r["StatusMessage"], r["exception_type"], r["exception_message"])
        for r in rows
    ] == [
        (
            "execute_tool lookup_order",
            "order service timed out",
            "TimeoutError",
            "timed out after 250 ms",
        )
    ]


def test_log_events_of_a_trace_are_found_by_trace_id(seeded: Store) -> None:
    rows = run(seeded, "log events of a trace")
    assert [(row["EventName"], row["Body"]) for row in rows] == [
        ("gen_ai.user.message", '{"content":"where is my order?"}')
    ]
