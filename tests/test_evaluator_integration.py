"""The evaluator with the rest of evalhouse: a table the stock OTel Collector exporter created
(upgraded by migrate), and ``evalhouse serve`` / ``score`` / ``reprice`` / ``evaluator`` as a user
runs them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ServeProcess, free_port, wait_for
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_evaluator_rows import _judge, _vercel
from test_evaluator_spans import Trace, eval_root, evaluate, rows, write
from test_migrate_exporter_table import EXPORTER_DDL, EXPORTER_INSERT_COLUMNS

from evalhouse.store import Store, migrate

# Everything a row is made of; ids of the computation itself (version, computed_at) differ.
_COMPARED = (
    "experiment_id, experiment_name, dataset_name, row_id, trial, input, expected, output, "
    "metadata, error, task_duration_ms, offset_ms, llm_duration_ms, ttft_ms, input_tokens, "
    "output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, total_tokens, "
    "cost_usd, cost_provenance, judge_input_tokens, judge_output_tokens, judge_cost_usd, "
    "scores, span_count, orphan_spans"
)


def _experiment_traces() -> list[Trace]:
    traces = []
    for i in range(3):
        t = Trace()
        root = eval_root(t, row_id=f"row-{i}", output="answer" if i else "wrong")
        task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=10, ms=350)
        _vercel(t, task)
        _judge(t, root)
        traces.append(t)
    return traces


def _exporter_rows(traces: list[Trace]) -> list[tuple[Any, ...]]:
    """The spans as the Collector's exporter writes them: attribute values as strings."""
    out = []
    for t in traces:
        for s in t.spans:
            out.append(
                (
                    s["start"],  # integer nanoseconds: exact, as the exporter writes them
                    t.hex,
                    s["span_id"].hex(),
                    s["parent_span_id"].hex(),
                    "",
                    s["name"],
                    "SPAN_KIND_INTERNAL",
                    "eval-runner",
                    {"service.name": "eval-runner"},
                    "tests",
                    "1.0",
                    {k: str(v) for k, v in s["attrs"].items()},
                    s["end"] - s["start"],
                    "STATUS_CODE_UNSET",
                    "",
                    [],
                    [],
                    [],
                    [],
                    [],
                    [],
                    [],
                )
            )
    return out


def test_an_exporter_created_table_gives_the_same_rows_after_migrate(
    bare_store: Store, store: Store
) -> None:
    traces = _experiment_traces()
    for statement in EXPORTER_DDL:
        bare_store.command(statement)
    bare_store.insert_rows("otel_traces", _exporter_rows(traces), EXPORTER_INSERT_COLUMNS)
    migrate(bare_store)
    evaluate(bare_store)
    write(store, *traces)  # the same spans through evalhouse's own ingest
    evaluate(store)
    sql = f"SELECT trace_id, {_COMPARED} FROM experiment_rows ORDER BY row_id"
    from_exporter = bare_store.query_dicts(sql)
    assert len(from_exporter) == 3
    assert from_exporter == store.query_dicts(sql)
    assert from_exporter[1]["input_tokens"] == 350
    assert from_exporter[1]["scores"] == {"factuality": 0.5}


def _send(grpc_port: int) -> str:
    """One experiment row from an app's own OpenTelemetry SDK, over OTLP/gRPC."""
    provider = TracerProvider(resource=Resource.create({"service.name": "qa-app"}))
    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("qa")
    with tracer.start_as_current_span(
        "eval",
        attributes={
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": "qa-serve",
            "evalhouse.experiment.id": "qa-serve-1",
            "evalhouse.dataset.row_id": "r1",
            "evalhouse.input": json.dumps("capital of France?"),
            "evalhouse.expected": json.dumps("Paris"),
            "evalhouse.output": json.dumps("Paris"),
            "evalhouse.scorers": json.dumps(["exact_match"]),
        },
    ) as root:
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 21,
            "gen_ai.usage.output_tokens": 3,
        }
        with (
            tracer.start_as_current_span("task", attributes={"evalhouse.span.purpose": "task"}),
            tracer.start_as_current_span("chat gpt-4o-mini", attributes=chat),
        ):
            pass
        trace_id = format(root.get_span_context().trace_id, "032x")
    provider.shutdown()
    return trace_id


def _sql(serve: ServeProcess, query: str) -> list[dict[str, Any]]:
    out = serve.cli("sql", "--format", "JSONEachRow", query).stdout
    return [json.loads(line) for line in out.splitlines() if line]


@pytest.mark.slow
def test_serve_turns_spans_into_scored_rows_and_the_cli_works_on_them(
    serve: Any, tmp_path: Path
) -> None:
    server = serve(
        tmp_path / "data",
        env={"EVALHOUSE_EVALUATOR_QUIET_SECONDS": "0.3", "EVALHOUSE_EVALUATOR_POLL_SECONDS": "0.2"},
    )
    assert "Evaluator" in server.log.read_text()
    trace_id = _send(server.grpc_port)

    def scored() -> list[dict[str, Any]]:
        found = _sql(
            server,
            "SELECT trace_id, input_tokens, output_tokens, cost_provenance, scores "
            "FROM experiment_rows",
        )
        # Each span is its own request and two writers store them in any order: the row may
        # be computed once before the chat span lands, and is recomputed when it does.
        return found if found and found[0]["scores"] and found[0]["input_tokens"] else []

    row = wait_for(scored, timeout=30)[0]
    assert row == {
        "trace_id": trace_id,
        "input_tokens": 21,
        "output_tokens": 3,
        "cost_provenance": "inferred",
        "scores": {"exact_match": 1},
    }
    # While serve runs, score and reprice go through it (tests/test_evaluator_api.py).
    assert server.stop() == 0

    scored_now = server.cli("score", "qa-serve", "--scorer", "contains", "--scorer", "exact_match")
    assert "1 rows, 1 scorer runs (0 errors), 1 already scored" in scored_now.stdout
    repriced = server.cli("reprice", "qa-serve-1")
    assert "1 rows repriced with genai-prices" in repriced.stdout
    once = server.cli("evaluator", "--once")
    assert "0 scorer runs stored" in once.stdout
    result = server.cli(
        "sql", "--format", "JSONEachRow", "SELECT scores, computations FROM experiment_rows"
    )
    assert json.loads(result.stdout) == {
        "scores": {"contains": 1, "exact_match": 1},
        "computations": 2,
    }
    missing = server.cli("score", "nope", "--scorer", "contains", check=False)
    # The one experiment resolver's message (evaluators/_experiments.py).
    assert missing.returncode == 1 and "no experiment with id or name 'nope'" in missing.stderr


def test_each_experiment_has_its_own_rows_and_summary_line(store: Store) -> None:
    # Two experiments in one database: each row belongs to its own experiment.
    a, b = Trace(), Trace()
    eval_root(a, experiment="a")
    eval_root(b, experiment="b")
    write(store, a, b)
    evaluate(store)
    found = rows(store)
    assert {found[a.hex]["experiment_name"], found[b.hex]["experiment_name"]} == {"a", "b"}
    summary = store.query("SELECT experiment_name, rows FROM experiments ORDER BY 1")
    assert summary == [("a", 1), ("b", 1)]


@pytest.mark.slow
def test_the_daemon_waits_while_clickhouse_is_unreachable() -> None:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "evalhouse.surfaces.cli",
            "evaluator",
            "--clickhouse",
            f"http://127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(process.stdout.readline, "")))
    reader.start()
    try:
        wait_for(lambda: any("unreachable" in line for line in lines), timeout=60)
        assert any("Ctrl-C to stop." in line for line in lines)
        time.sleep(1.0)
        assert process.poll() is None  # still waiting, not crashed
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
        reader.join(timeout=5)
        assert process.stdout is not None
        process.stdout.close()
    assert code == 0
    warnings = [line for line in lines if "unreachable" in line]
    assert len(warnings) == 1  # said once, not once per retry
    assert f"127.0.0.1:{port}" in warnings[0]
