"""The collector's receivers driven by real clients: the OTel SDK exporters, raw gRPC, HTTP."""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import grpc
import httpx
import pytest
from conftest import count, wait_for
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otlp_builders import log_request, span, trace_request

from evalhouse.store import Store

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"


def grpc_export(address: str, body: bytes, method: str = TRACES, metadata: Any = None) -> Any:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        raw = call(body, metadata=metadata, timeout=30)
    response = ExportTraceServiceResponse() if method == TRACES else ExportLogsServiceResponse()
    response.ParseFromString(raw)
    return response


def emit(exporter: Any, n: int, attrs: dict[str, Any] | None = None) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-test"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tests")
    for _ in range(n):
        with tracer.start_as_current_span("chat gpt-4o") as current:
            for key, value in (attrs or {}).items():
                current.set_attribute(key, value)
    provider.shutdown()


def test_otel_sdk_grpc_and_http_exporters_are_stored(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    attrs = {"gen_ai.usage.input_tokens": 11, "gen_ai.usage.output_tokens": 3}
    emit(GrpcSpanExporter(endpoint=addresses.grpc, insecure=True), 5, attrs)
    emit(HttpSpanExporter(endpoint=f"{addresses.http}/v1/traces"), 4, attrs)
    wait_for(lambda: count(store) == 9)
    assert store.query("SELECT sum(InputTokens), sum(OutputTokens) FROM otel_traces") == [(99, 27)]
    assert store.query("SELECT DISTINCT ServiceName, SpanKind, StatusCode FROM otel_traces") == [
        ("sdk-test", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET")
    ]


def test_undecodable_grpc_body_is_invalid_argument_and_server_stays_up(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(addresses.grpc, b"\xff\xff\xff not protobuf")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid OTLP ExportTraceServiceRequest" in raised.value.details()
    response = grpc_export(addresses.grpc, trace_request([span()]).SerializeToString())
    assert not response.HasField("partial_success")
    wait_for(lambda: count(store) == 1)


def test_mixed_request_keeps_good_spans_and_answers_partial_success(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    good = [span("good-1"), span("good-2")]
    bad_trace = span("short-trace-id", trace_id=b"\x01" * 8)
    zero_span = span("zero-span-id", span_id=b"\x00" * 8)
    backwards = span("backwards", duration_ns=-5)
    request = trace_request([good[0], bad_trace, zero_span, backwards, good[1]])
    response = grpc_export(addresses.grpc, request.SerializeToString())
    assert response.partial_success.rejected_spans == 3
    message = response.partial_success.error_message
    assert "trace_id must be 16 non-zero bytes, got 8 bytes" in message
    assert "span_id must be 8 non-zero bytes" in message
    assert "end_time_unix_nano is before start_time_unix_nano" in message
    wait_for(lambda: count(store) == 2)
    assert sorted(r[0] for r in store.query("SELECT SpanName FROM otel_traces")) == [
        "good-1",
        "good-2",
    ]


def test_invalid_utf8_is_replaced_and_reported(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    body = trace_request([span("café-span", {"k": "naïve"})]).SerializeToString()
    # Same lengths, so the protobuf framing stays valid while the text is not UTF-8.
    broken = body.replace("é".encode(), b"\xff\xfe").replace("ï".encode(), b"\xc3\x28")
    response = grpc_export(addresses.grpc, broken)
    assert response.partial_success.rejected_spans == 0
    assert "replaced invalid UTF-8 in 2 string(s)" in response.partial_success.error_message
    wait_for(lambda: count(store) == 1)
    assert store.query("SELECT SpanName, SpanAttributes['k'] FROM otel_traces") == [
        ("caf\ufffd\ufffd-span", "na\ufffd(ve")
    ]


def test_oversized_attribute_value_is_truncated_with_marker(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector(max_attribute_bytes=2048)
    body = trace_request([span("big", {"gen_ai.input.messages": "x" * 5000, "small": "ok"})])
    response = grpc_export(addresses.grpc, body.SerializeToString())
    assert "truncated 1 attribute value(s)" in response.partial_success.error_message
    wait_for(lambda: count(store) == 1)
    value, small = store.query(
        "SELECT SpanAttributes['gen_ai.input.messages'], SpanAttributes['small'] FROM otel_traces"
    )[0]
    assert value.startswith("x" * 2048)
    assert value.endswith("…[truncated by evalhouse: 2952 bytes]")
    assert small == "ok"


def test_structured_attribute_values_are_stored_as_json(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    messages = [{"role": "user", "parts": [{"type": "text", "content": "hi"}]}]
    attrs = {"gen_ai.input.messages": messages, "gen_ai.response.finish_reasons": ["stop"]}
    grpc_export(addresses.grpc, trace_request([span("chat", attrs)]).SerializeToString())
    wait_for(lambda: count(store) == 1)
    stored, reasons = store.query(
        "SELECT SpanAttributes['gen_ai.input.messages'], "
        "SpanAttributes['gen_ai.response.finish_reasons'] FROM otel_traces"
    )[0]
    assert json.loads(stored) == messages
    assert reasons == '["stop"]'


def test_retried_request_is_not_duplicated(start_collector: Any, store: Store) -> None:
    collector, addresses = start_collector()
    body = trace_request([span("once"), span("twice?")]).SerializeToString()
    for _ in range(3):
        grpc_export(addresses.grpc, body)
    wait_for(lambda: collector.metrics.snapshot()["written"] == 2)
    assert count(store) == 2
    assert collector.metrics.snapshot()["duplicate_requests"] == 2


def test_api_key_is_required_on_grpc_and_http_and_never_logged(
    start_collector: Any, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "s3cret-key-value"
    _, addresses = start_collector(api_keys=[secret])
    body = trace_request([span()]).SerializeToString()
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(addresses.grpc, body, metadata=[("authorization", "Bearer wrong")])
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    grpc_export(addresses.grpc, body, metadata=[("authorization", f"Bearer {secret}")])
    headers = {"Content-Type": "application/x-protobuf"}
    other = trace_request([span()]).SerializeToString()
    denied = httpx.post(f"{addresses.http}/v1/traces", content=other, headers=headers)
    assert denied.status_code == 401
    allowed = httpx.post(
        f"{addresses.http}/v1/traces", content=other, headers={**headers, "x-api-key": secret}
    )
    assert allowed.status_code == 200
    assert httpx.get(f"{addresses.http}/metrics").status_code == 401
    wait_for(lambda: count(store) == 2)
    assert secret not in caplog.text


def test_http_json_body_with_hex_ids_is_stored(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    trace_id = "5b8efff798038103d269b633813fc60c"
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "node-app"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "manual"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": "eee19b7ec3c1b174",
                                "name": "chat",
                                "kind": 3,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000001000000000",
                                "attributes": [
                                    {
                                        "key": "gen_ai.usage.input_tokens",
                                        "value": {"intValue": "42"},
                                    }
                                ],
                            },
                            {"traceId": "zz-not-hex", "spanId": "eee19b7ec3c1b175", "name": "bad"},
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{addresses.http}/v1/traces", json=document)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"
    wait_for(lambda: count(store) == 1)
    assert store.query(
        "SELECT TraceId, SpanId, SpanKind, InputTokens, Duration, ServiceName FROM otel_traces"
    ) == [(trace_id, "eee19b7ec3c1b174", "SPAN_KIND_CLIENT", 42, 1_000_000_000, "node-app")]


def test_http_errors_are_clear(start_collector: Any) -> None:
    _, addresses = start_collector(max_message_bytes=4096)
    url = f"{addresses.http}/v1/traces"
    protobuf = {"Content-Type": "application/x-protobuf"}
    garbage = httpx.post(url, content=b"\xff\x00garbage", headers=protobuf)
    assert garbage.status_code == 400
    status = status_pb2.Status.FromString(garbage.content)
    assert status.code == 3 and "not a valid OTLP" in status.message
    bad_json = httpx.post(url, content=b"{oops", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
    wrong_type = httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong_type.status_code == 415
    too_big = httpx.post(url, content=b"\x00" * 5000, headers=protobuf)
    assert too_big.status_code == 413
    bomb = gzip.compress(b"\x00" * 100_000)
    inflated = httpx.post(url, content=bomb, headers={**protobuf, "Content-Encoding": "gzip"})
    assert inflated.status_code == 413


def test_gzip_http_body_is_accepted(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    body = gzip.compress(trace_request([span(), span()]).SerializeToString())
    response = httpx.post(
        f"{addresses.http}/v1/traces",
        content=body,
        headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    wait_for(lambda: count(store) == 2)


def test_logs_are_stored_and_join_spans_by_ids(start_collector: Any, store: Store) -> None:
    _, addresses = start_collector()
    s = span("chat")
    grpc_export(addresses.grpc, trace_request([s]).SerializeToString())
    record = {
        "trace_id": s["trace_id"],
        "span_id": s["span_id"],
        "event_name": "gen_ai.user.message",
        "body": {"role": "user", "content": "hello"},
        "attrs": {"gen_ai.system": "openai"},
    }
    response = grpc_export(addresses.grpc, log_request([record]).SerializeToString(), method=LOGS)
    assert not response.HasField("partial_success")
    # Two writers store WAL batches in parallel, so the log may land before the span.
    wait_for(lambda: count(store, "SELECT count() FROM otel_logs") == 1 and count(store) == 1)
    joined = store.query(
        "SELECT l.EventName, l.Body, t.SpanName FROM otel_logs AS l "
        "INNER JOIN otel_traces AS t ON l.TraceId = t.TraceId AND l.SpanId = t.SpanId"
    )
    assert len(joined) == 1
    name, body, span_name = joined[0]
    assert (name, span_name) == ("gen_ai.user.message", "chat")
    assert json.loads(body) == {"role": "user", "content": "hello"}


def test_metrics_endpoint_counts_received_rejected_and_written(start_collector: Any) -> None:
    collector, addresses = start_collector()
    grpc_export(addresses.grpc, trace_request([span(), span(trace_id=b"")]).SerializeToString())
    wait_for(lambda: collector.metrics.snapshot()["written"] == 1)
    text = httpx.get(f"{addresses.http}/metrics").text
    assert "evalhouse_collector_received_total 2" in text
    assert "evalhouse_collector_rejected_total 1" in text
    assert "evalhouse_collector_written_total 1" in text
    assert "evalhouse_collector_spool_spans 0" in text
    assert "evalhouse_collector_insert_seconds_count" in text
