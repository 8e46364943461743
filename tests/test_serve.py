"""`evalhouse serve`, `collector`, `migrate` and `sql` as a user runs them: subprocesses."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from conftest import ServeProcess, free_port, run_cli, wait_for
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from otlp_builders import span, trace_request

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

# One model-call span per dialect, with the tokens it should normalise to.
DIALECTS: dict[str, tuple[dict[str, Any], tuple[int, int, int, int, int]]] = {
    "otel-new": (
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 20,
            "gen_ai.usage.cache_read.input_tokens": 40,
            "gen_ai.usage.cache_creation.input_tokens": 10,
            "gen_ai.usage.reasoning.output_tokens": 5,
        },
        (100, 20, 40, 10, 5),
    ),
    "otel-old": (
        {
            "gen_ai.system": "openai",
            "gen_ai.usage.prompt_tokens": 30,
            "gen_ai.usage.completion_tokens": 7,
        },
        (30, 7, 0, 0, 0),
    ),
    "openinference": (
        {
            "openinference.span.kind": "LLM",
            "llm.token_count.prompt": 50,
            "llm.token_count.completion": 9,
            "llm.token_count.prompt_details.cache_read": 25,
            "llm.token_count.completion_details.reasoning": 4,
        },
        (50, 9, 25, 0, 4),
    ),
    "vercel": (
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.usage.promptTokens": 60,
            "ai.usage.completionTokens": 12,
        },
        (60, 12, 0, 0, 0),
    ),
}


def sql(serve: ServeProcess, query: str) -> list[list[str]]:
    result = serve.cli("sql", "--format", "TabSeparated", query)
    return [line.split("\t") for line in result.stdout.splitlines()]


def emit_with_sdk(exporter: Any, service: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for name, (attrs, _) in DIALECTS.items():
        with tracer.start_as_current_span(name) as current:
            for key, value in attrs.items():
                current.set_attribute(key, value)
    provider.shutdown()


@pytest.mark.slow
def test_sdk_exporters_to_serve_then_sql_sees_every_span_with_tokens(serve: Any) -> None:
    server = serve()
    printed = server.log.read_text()
    assert f"OTLP/gRPC  127.0.0.1:{server.grpc_port}" in printed
    assert f"Web UI     http://127.0.0.1:{server.ui_port}/" in printed
    emit_with_sdk(GrpcSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True), "g")
    emit_with_sdk(HttpSpanExporter(endpoint=f"http://127.0.0.1:{server.http_port}/v1/traces"), "h")
    expected = str(2 * len(DIALECTS))
    wait_for(lambda: sql(server, "SELECT count() FROM otel_traces") == [[expected]])
    rows = sql(
        server,
        "SELECT SpanName, InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, "
        "ReasoningTokens FROM otel_traces WHERE ServiceName = 'g' ORDER BY SpanName",
    )
    got = {row[0]: tuple(int(v) for v in row[1:]) for row in rows}
    assert got == {name: tokens for name, (_, tokens) in DIALECTS.items()}
    pretty = server.cli("sql", "SELECT count() AS spans FROM otel_traces").stdout
    assert "spans" in pretty and expected in pretty
    refused = server.cli("sql", "DROP TABLE otel_traces", check=False)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "drop is not allowed" in refused.stderr.lower()
    # Read-only user SQL must not make the collector's own inserts read-only.
    emit_with_sdk(GrpcSpanExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True), "g")
    more = str(3 * len(DIALECTS))
    wait_for(lambda: sql(server, "SELECT count() FROM otel_traces") == [[more]])
    assert server.stop() == 0


def _send_until_stopped(
    port: int, stop: threading.Event, acked: list[bytes], sent: list[bytes]
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        while not stop.is_set():
            spans = [span(f"load-{len(sent)}") for _ in range(50)]
            body = trace_request(spans).SerializeToString()
            sent.append(body)
            try:
                export(body, timeout=10)
            except grpc.RpcError:
                return
            acked.extend(s["span_id"] for s in spans)


@pytest.mark.slow
def test_kill_9_under_load_loses_no_acknowledged_span(serve: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "killed"
    server = serve(data_dir)
    stop = threading.Event()
    acked: list[bytes] = []
    sent: list[bytes] = []
    senders = [
        threading.Thread(target=_send_until_stopped, args=(server.grpc_port, stop, acked, sent))
        for _ in range(3)
    ]
    for sender in senders:
        sender.start()
    wait_for(lambda: len(acked) >= 3000, timeout=60)
    server.process.send_signal(signal.SIGKILL)
    server.process.wait()
    stop.set()
    for sender in senders:
        sender.join()
    acknowledged = {span_id.hex() for span_id in acked}
    restarted = serve(data_dir)
    # Clients retry what they sent without an answer: retries must not duplicate.
    with grpc.insecure_channel(f"127.0.0.1:{restarted.grpc_port}") as channel:
        export = channel.unary_unary(TRACES, request_serializer=None, response_deserializer=None)
        for body in sent[-6:]:
            export(body, timeout=10)

    def stored() -> set[str]:
        return {row[0] for row in sql(restarted, "SELECT SpanId FROM otel_traces")}

    # The restart replays the WAL with two writers, in any order: wait for every acked span.
    wait_for(lambda: acknowledged <= stored(), timeout=60)
    time.sleep(1)
    duplicates = sql(restarted, "SELECT count() - uniqExact(SpanId) FROM otel_traces")
    assert duplicates == [["0"]]


@pytest.mark.slow
def test_collector_spools_while_clickhouse_is_unreachable_and_serve_replays_it(
    serve: Any, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    grpc_port, http_port = free_port(), free_port()
    closed = free_port()  # nothing listens here: ClickHouse is "down"
    command = [
        sys.executable,
        "-m",
        "evalhouse.surfaces.cli",
        "collector",
        "--clickhouse",
        f"http://127.0.0.1:{closed}",
        "--spool-dir",
        str(spool),
        "--grpc-port",
        str(grpc_port),
        "--http-port",
        str(http_port),
    ]
    with (tmp_path / "collector.log").open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Ctrl-C to stop." in (tmp_path / "collector.log").read_text(), 60)
        exporter = GrpcSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True)
        emit_with_sdk(exporter, "spooled")

        def spooled() -> bool:
            text = httpx.get(f"http://127.0.0.1:{http_port}/metrics").text
            held = f"evalhouse_collector_spool_spans {len(DIALECTS)}" in text
            return held and "evalhouse_collector_store_up 0" in text

        wait_for(spooled, timeout=30)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    output = (tmp_path / "collector.log").read_text()
    assert "spooling to disk" in output
    server = serve(spool)
    wait_for(lambda: sql(server, "SELECT count() FROM otel_traces") == [[str(len(DIALECTS))]], 60)


def test_cli_failures_are_one_clear_line(tmp_path: Path) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    try:
        result = run_cli(
            "serve",
            "--data-dir",
            str(tmp_path / "d"),
            "--grpc-port",
            str(port),
            "--http-port",
            str(free_port()),
            "--ui-port",
            str(free_port()),
            check=False,
        )
    finally:
        busy.close()
    assert result.returncode != 0
    assert f"cannot listen for OTLP/gRPC on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    unreachable = run_cli(
        "sql", "--clickhouse", f"http://127.0.0.1:{free_port()}", "SELECT 1", check=False
    )
    assert unreachable.returncode != 0
    assert "unreachable" in unreachable.stderr
    assert len(unreachable.stderr.strip().splitlines()) == 1

    missing = run_cli("sql", "--data-dir", str(tmp_path / "nothing"), "SELECT 1", check=False)
    assert missing.returncode != 0 and "no evalhouse data" in missing.stderr

    bad_port = run_cli("serve", "--grpc-port", "99999", check=False)
    assert bad_port.returncode != 0 and "grpc_port" in bad_port.stderr


@pytest.mark.slow
def test_migrate_and_sql_on_a_data_dir_and_lock_while_served(serve: Any, tmp_path: Path) -> None:
    data_dir = tmp_path / "m"
    first = run_cli("migrate", "--data-dir", str(data_dir))
    assert "applied migrations 1, 2, 3, 4, 5" in first.stdout
    again = run_cli("migrate", "--data-dir", str(data_dir))
    assert "up to date" in again.stdout
    bad = run_cli("sql", "--data-dir", str(data_dir), "SELECT nosuchcolumn", check=False)
    assert bad.returncode != 0 and "nosuchcolumn" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    server = serve(data_dir)
    info = json.loads((data_dir / "server.json").read_text())
    assert info["pid"] == server.process.pid
    locked = run_cli("migrate", "--data-dir", str(data_dir), check=False)
    assert locked.returncode != 0
    assert "in use by another evalhouse process" in locked.stderr
    assert sql(server, "SELECT count() FROM otel_traces") == [["0"]]
    assert os.path.exists(data_dir / "server.json")
    server.stop()
    assert not os.path.exists(data_dir / "server.json")
