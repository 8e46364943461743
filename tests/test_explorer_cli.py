"""``evalhouse traces|sessions|usage`` against a real ``evalhouse serve`` (served: through its
HTTP API), then on the same data directory once it stopped (direct: the store opened by the
command). Spans arrive over OTLP/gRPC from the OpenTelemetry SDK's own exporter, and the
daemon inside serve summarizes them: the trace must show in the list within seconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from conftest import ServeProcess, run_cli, wait_for
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

QUICK = {"EVALHOUSE_EXPLORER_QUIET_SECONDS": "0.5", "EVALHOUSE_EVALUATOR_POLL_SECONDS": "0.2"}


def _send(grpc_port: int) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "cli-app"}))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{grpc_port}", insecure=True))
    )
    tracer = provider.get_tracer("tests.explorer_cli")
    for turn in range(3):
        with (
            tracer.start_as_current_span(
                "cli-agent",
                attributes={
                    "session.id": "cli-session",
                    "user.id": "cli-user",
                    "input.value": f"question {turn}",
                    "output.value": f"answer {turn}",
                },
            ),
            tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.usage.output_tokens": 10,
                },
            ),
        ):
            pass
    provider.shutdown()


def _json(result: Any) -> Any:
    return json.loads(result.stdout)


@pytest.mark.slow
def test_commands_served_then_direct(serve: Callable[..., ServeProcess]) -> None:
    server = serve(env=QUICK)
    sent = time.monotonic()
    _send(server.grpc_port)

    def listed() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = _json(server.cli("traces", "list", "--json"))["traces"]
        return rows if len(rows) == 3 else []

    rows = wait_for(listed, timeout=30, interval=0.3)
    assert time.monotonic() - sent < 15  # shows within seconds of arriving
    assert {row["input_preview"] for row in rows} == {"question 0", "question 1", "question 2"}
    assert all(row["total_tokens"] == 110 and row["models"] == ["gpt-4o"] for row in rows)

    served = {
        "list": _json(server.cli("traces", "list", "--json", "--filter", "model:gpt-4o")),
        "show": _json(server.cli("traces", "show", rows[0]["trace_id"], "--json")),
        "sessions": _json(server.cli("sessions", "list", "--json")),
        "session": _json(server.cli("sessions", "show", "cli-session", "--json")),
        "usage": _json(server.cli("usage", "--group-by", "model", "--interval", "1h", "--json")),
    }
    assert served["show"]["trace"]["trace_id"] == rows[0]["trace_id"]
    assert [s["session_id"] for s in served["sessions"]["sessions"]] == ["cli-session"]
    assert served["session"]["session"]["traces"] == 3
    assert sum(b["total_tokens"] for b in served["usage"]["buckets"]) == 330
    text = server.cli("traces", "list").stdout
    assert "cli-agent" in text and "question" in text
    assert "gpt-4o" in server.cli("usage", "--group-by", "model").stdout
    bad = server.cli("traces", "list", "--filter", "colour:red", check=False)
    assert bad.returncode != 0 and "colour:red" in bad.stderr and len(bad.stderr.splitlines()) == 1

    assert server.stop() == 0
    direct = ["--data-dir", str(server.data_dir)]
    assert (
        _json(run_cli("traces", "list", "--json", "--filter", "model:gpt-4o", *direct))
        == (served["list"])
    )
    assert _json(run_cli("sessions", "show", "cli-session", "--json", *direct)) == served["session"]
    usage = _json(run_cli("usage", "--group-by", "model", "--interval", "1h", "--json", *direct))
    assert usage == served["usage"]
    shown = _json(run_cli("traces", "show", rows[0]["trace_id"], "--json", *direct))
    assert shown["trace"] == served["show"]["trace"]
    assert "chat gpt-4o" in run_cli("traces", "show", rows[0]["trace_id"], *direct).stdout
