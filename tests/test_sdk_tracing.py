"""evalhouse.init(): idempotent, never raising, OTEL_* variables, beside an app's provider."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import count, wait_for
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_sdk_support import finished, memory_spans

import evalhouse
from evalhouse.store import Store


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def run_python(script: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "EVALHOUSE_"))}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result


def test_calling_init_twice_changes_nothing_and_a_new_exporter_repoints(
    spans: InMemorySpanExporter,
) -> None:
    again = evalhouse.init(exporter=spans)
    assert again == evalhouse.init(exporter=spans)
    with evalhouse.task("once"):
        pass
    assert [span.name for span in finished(spans)] == ["once"]  # one processor, one export

    other = InMemorySpanExporter()
    evalhouse.init(exporter=other)
    with evalhouse.task("after"):
        pass
    assert [span.name for span in finished(other)] == ["after"]
    assert [span.name for span in spans.get_finished_spans()] == ["once"]
    evalhouse.init(exporter=spans)


class _SlowExporter(InMemorySpanExporter):
    """Holds every export until released: the app outruns the network."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def export(self, spans: Any) -> Any:
        self.release.wait(30)
        return super().export(spans)


def test_a_burst_of_spans_behind_a_slow_exporter_loses_none(
    spans: InMemorySpanExporter,
) -> None:
    slow = _SlowExporter()
    evalhouse.init(exporter=slow)
    try:
        for number in range(10_000):  # the SDK's default queue holds 2,048
            with evalhouse.task(f"row-{number}"):
                pass
        slow.release.set()
        assert len(finished(slow)) == 10_000
    finally:
        slow.release.set()
        evalhouse.init(exporter=spans)


def test_init_never_raises_logs_once_and_keeps_tracing(
    spans: InMemorySpanExporter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="evalhouse"):
        first = evalhouse.init(endpoint="http://[::1")  # not a URL: the exporter refuses it
        second = evalhouse.init(endpoint="http://[::1")
    assert first.error is not None and second.error is not None
    warnings = [r for r in caplog.records if "tracing is off" in r.getMessage()]
    assert len(warnings) == 1
    with evalhouse.task("still-traced"):  # the working set-up before the bad call stays
        pass
    assert [span.name for span in finished(spans)] == ["still-traced"]


def test_endpoint_and_protocol_follow_the_otel_variables(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("OTEL_EXPORTER_OTLP"):
            monkeypatch.delenv(name)
    assert evalhouse.init().endpoint == "http://localhost:4317"
    assert evalhouse.init(endpoint="collector:4317").endpoint == "http://collector:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example:4317")
    assert evalhouse.init().endpoint == "https://otel.example:4317"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces.example:4317")
    assert evalhouse.init().endpoint == "http://traces.example:4317"
    assert evalhouse.init(endpoint="http://explicit:1").endpoint == "http://explicit:1"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://otel.example:4318")
    http = evalhouse.init()
    assert (http.protocol, http.endpoint) == ("http/protobuf", "http://otel.example:4318/v1/traces")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://otel.example:4318/custom")
    assert evalhouse.init().endpoint == "http://otel.example:4318/custom"
    grpc = evalhouse.init(protocol="grpc", endpoint="127.0.0.1:4317")
    assert (grpc.protocol, grpc.endpoint) == ("grpc", "http://127.0.0.1:4317")


def test_content_capture_switch(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    capture = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
    monkeypatch.delenv(capture, raising=False)
    evalhouse.init(exporter=spans)
    assert os.environ[capture] == "span_only"
    assert "gen_ai_latest_experimental" in os.environ["OTEL_SEMCONV_STABILITY_OPT_IN"]
    evalhouse.init(exporter=spans, capture_content=False)
    assert os.environ[capture] == "no_content"
    monkeypatch.setenv(capture, "span_and_event")  # an app's own capturing choice is kept
    evalhouse.init(exporter=spans)
    assert os.environ[capture] == "span_and_event"


@pytest.mark.slow
def test_otel_environment_reaches_the_collector(
    start_collector: Callable[..., Any], store: Store, tmp_path: Path
) -> None:
    _, addresses = start_collector(api_keys=["k1"])
    script = """
        import os, evalhouse
        from evalhouse.instrumentation import force_flush
        tracing = evalhouse.init()
        assert tracing.error is None, tracing.error
        print(tracing.protocol, tracing.endpoint)
        with evalhouse.task(os.environ["SPAN_NAME"], input=1) as span:
            span.set_output(2)
        force_flush(5)
    """
    resource = {"OTEL_SERVICE_NAME": "env-svc", "OTEL_RESOURCE_ATTRIBUTES": "team=evals,tier=ci"}
    grpc = run_python(
        script,
        {
            **resource,
            "SPAN_NAME": "over-grpc",
            "OTEL_EXPORTER_OTLP_ENDPOINT": addresses.grpc,  # host:port, no scheme
            "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=k1",
        },
        tmp_path,
    )
    http = run_python(
        script,
        {
            **resource,
            "SPAN_NAME": "over-http",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_ENDPOINT": addresses.http,
            "EVALHOUSE_API_KEY": "k1",
        },
        tmp_path,
    )
    run_python(
        script,
        {"SPAN_NAME": "no-key", "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{addresses.grpc}"},
        tmp_path,
    )

    assert grpc.stdout.split() == ["grpc", f"http://{addresses.grpc}"]
    assert http.stdout.split() == ["http/protobuf", f"{addresses.http}/v1/traces"]
    wait_for(lambda: count(store) >= 2)
    rows = store.query(
        "SELECT SpanName, ServiceName, ResourceAttributes['team'], ResourceAttributes['tier'], "
        "SpanAttributes['evalhouse.output'], Purpose FROM otel_traces ORDER BY SpanName"
    )
    assert [tuple(row) for row in rows] == [
        ("over-grpc", "env-svc", "evals", "ci", "2", "task"),
        ("over-http", "env-svc", "evals", "ci", "2", "task"),
    ]  # and the request without the API key was refused


@pytest.mark.slow
def test_init_adds_to_the_apps_own_tracer_provider(
    start_collector: Callable[..., Any], store: Store, tmp_path: Path
) -> None:
    _, addresses = start_collector()
    script = f"""
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        app_exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({{"service.name": "my-app"}}))
        provider.add_span_processor(SimpleSpanProcessor(app_exporter))
        trace.set_tracer_provider(provider)

        import evalhouse
        tracing = evalhouse.init(endpoint="{addresses.grpc}", service_name="ignored")
        assert tracing.shares_app_provider and trace.get_tracer_provider() is provider
        with trace.get_tracer("app").start_as_current_span("app-span"):
            with evalhouse.task("tagged"):
                pass
        evalhouse.instrumentation.force_flush(5)
        print(",".join(sorted(span.name for span in app_exporter.get_finished_spans())))
    """
    result = run_python(script, {}, tmp_path)

    assert result.stdout.strip() == "app-span,tagged"  # the app's exporter still gets all
    wait_for(lambda: count(store) >= 2)
    rows = store.query("SELECT SpanName, ServiceName FROM otel_traces ORDER BY SpanName")
    assert [tuple(row) for row in rows] == [("app-span", "my-app"), ("tagged", "my-app")]


SERVICE_NAME = """
import evalhouse
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

tracing = evalhouse.init(exporter=InMemorySpanExporter(), instrument=False)
print(tracing.provider.resource.attributes["service.name"])
"""


def test_the_service_name_defaults_to_the_program_like_otel_distros(tmp_path: Path) -> None:
    """Issue 17: not ``unknown_service:python`` but the script's or package's name."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "EVALHOUSE_"))}
    (tmp_path / "support_bot.py").write_text(SERVICE_NAME)
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "__init__.py").write_text("")
    (tmp_path / "billing" / "__main__.py").write_text(SERVICE_NAME)

    def name(*args: str, **env: str) -> str:
        result = subprocess.run(
            [sys.executable, *args],
            capture_output=True,
            text=True,
            timeout=120,
            env={**clean, **env},
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert name("support_bot.py") == "support_bot"
    assert name("-m", "billing") == "billing"
    assert name("support_bot.py", OTEL_SERVICE_NAME="chosen") == "chosen"
    assert name("support_bot.py", OTEL_RESOURCE_ATTRIBUTES="service.name=attr") == "attr"
