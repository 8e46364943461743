"""Helpers shared by the SDK and runner tests (no tests here).

Spans go to a real in-memory exporter behind evalhouse's real BatchSpanProcessor; the
runner's server calls go to a closed port (or a real in-process API) so nothing waits.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from conftest import free_port
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import evalhouse
from evalhouse import contract
from evalhouse.instrumentation import force_flush

_GENAI_ENV = (
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_SEMCONV_STABILITY_OPT_IN",
)


def memory_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Point evalhouse at a fresh in-memory exporter for one test."""
    for name in _GENAI_ENV:  # init() sets these; give them back afterwards
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EVALHOUSE_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("EVALHOUSE_SUMMARY_TIMEOUT", "0")
    exporter = InMemorySpanExporter()
    tracing = evalhouse.init(exporter=exporter)
    assert tracing.error is None
    yield exporter
    # Leave no OTLP exporter pointed at a server that is gone once the test ends.
    evalhouse.init(exporter=InMemorySpanExporter())


def finished(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    force_flush()
    return list(exporter.get_finished_spans())


def purpose(span: ReadableSpan) -> str:
    return str((span.attributes or {}).get(contract.SPAN_PURPOSE, ""))


def attr(span: ReadableSpan, key: str) -> Any:
    return (span.attributes or {}).get(key)


def json_attr(span: ReadableSpan, key: str) -> Any:
    value = attr(span, key)
    return None if value is None else json.loads(str(value))


def by_purpose(spans: Sequence[ReadableSpan], wanted: str) -> list[ReadableSpan]:
    return [span for span in spans if purpose(span) == wanted]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


def api_sql(api: str, query: str) -> list[dict[str, Any]]:
    """Rows from ``POST {api}/api/sql`` (JSONEachRow)."""
    request = urllib.request.Request(
        f"{api}/api/sql",
        data=json.dumps({"query": query, "format": "JSONEachRow"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        body = response.read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]
