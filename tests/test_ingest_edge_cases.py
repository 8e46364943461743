"""Hostile and broken items cost only themselves: sent through the real receivers, the bad
spans are named in an OTLP partial success, the good spans of the same request are stored,
and a body that cannot be parsed at all is a clear 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
from conftest import count, wait_for
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from otlp_builders import log_request, span, trace_request

from evalhouse.store import Store

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
LOGS = "/opentelemetry.proto.collector.logs.v1.LogsService/Export"
TOO_DEEP = "nested more than 31 levels deep"


def grpc_export(address: str, body: bytes, method: str = TRACES) -> Any:
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        raw = call(body, timeout=30)
    response = ExportTraceServiceResponse() if method == TRACES else ExportLogsServiceResponse()
    response.ParseFromString(raw)
    return response


def stored_names(store: Store) -> list[str]:
    return sorted(row[0] for row in store.query("SELECT SpanName FROM otel_traces"))


# ---- protobuf written by hand: the Python classes cannot build values nested this deep ----


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits, value = value & 0x7F, value >> 7
        out.append(bits | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def nested_kvlist(depth: int) -> bytes:
    """An AnyValue holding ``depth`` key-value lists, one inside the other, around a string.
    Built outside in from the sizes, so a million levels cost no more than copying them once."""
    leaf = _field(1, b"leaf")  # AnyValue.string_value
    key = _field(1, b"k")  # KeyValue.key
    prefixes, size = [], len(leaf)
    for _ in range(depth):
        value = _varint(2 << 3 | 2) + _varint(size)  # KeyValue.value
        pair = len(key) + len(value) + size
        values = _varint(1 << 3 | 2) + _varint(pair)  # KeyValueList.values
        kvlist = _varint(6 << 3 | 2) + _varint(len(values) + pair)  # AnyValue.kvlist_value
        prefixes.append(kvlist + values + key + value)
        size = len(kvlist) + len(values) + pair
    return b"".join(reversed(prefixes)) + leaf


def span_with_value(name: str, value: bytes) -> bytes:
    """A serialised request holding one span whose attribute ``deep`` is ``value``."""
    request = trace_request([span(name)], service="hostile")
    serialized = request.resource_spans[0].scope_spans[0].spans[0].SerializeToString()
    deep_span = serialized + _field(9, _field(1, b"deep") + _field(2, value))  # Span.attributes
    # ResourceSpans (request field 1) → ScopeSpans (2) → the span (2).
    return _field(1, _field(2, _field(2, deep_span)))


# ---- tests ----------------------------------------------------------------------------------


def test_span_with_a_deeply_nested_value_is_rejected_and_the_rest_stored(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()

    def nest(depth: int) -> Any:
        value: Any = "leaf"
        for _ in range(depth):
            value = {"k": value}
        return value

    good = trace_request(
        [span("good-1"), span("deep-31", {"v": nest(31)}), span("deep-32", {"v": nest(32)})]
    ).SerializeToString()
    # Concatenated requests merge: their resource spans add up into one request.
    body = good + span_with_value("deep-40", nested_kvlist(40))
    body += span_with_value("deep-100000", nested_kvlist(100_000))
    body += trace_request([span("good-2")]).SerializeToString()

    response = grpc_export(addresses.grpc, body)

    assert response.partial_success.rejected_spans == 3
    message = response.partial_success.error_message
    for name in ("deep-32", "deep-40", "deep-100000"):
        assert f"span {name!r}: " in message
    assert message.count(TOO_DEEP) == 3
    assert "flatten it or send it as a JSON string" in message
    wait_for(lambda: count(store) == 3)
    assert stored_names(store) == ["deep-31", "good-1", "good-2"]
    # 31 levels were stored before and still are, rendered as JSON like any structured value.
    stored = store.query("SELECT SpanAttributes['v'] FROM otel_traces WHERE SpanName = 'deep-31'")
    assert json.loads(stored[0][0]) == nest(31)


def test_log_record_with_a_deeply_nested_body_is_rejected_alone(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    good = log_request([{"event_name": "kept", "body": "hello"}]).SerializeToString()
    record = log_request([{"event_name": "deep"}]).resource_logs[0].scope_logs[0]
    deep_record = record.log_records[0].SerializeToString() + _field(5, nested_kvlist(50))
    body = good + _field(1, _field(2, _field(2, deep_record)))  # LogRecord.body replaced

    response = grpc_export(addresses.grpc, body, method=LOGS)

    assert response.partial_success.rejected_log_records == 1
    assert "log record 'deep': could not be decoded" in response.partial_success.error_message
    wait_for(lambda: count(store, "SELECT count() FROM otel_logs") == 1)
    assert store.query("SELECT EventName, Body FROM otel_logs") == [("kept", "hello")]


def _json_span(name: Any, **fields: Any) -> dict[str, Any]:
    return {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b174",
        "name": name,
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        **fields,
    }


def _json_kvlist(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(depth):
        value = {"kvlistValue": {"values": [{"key": "k", "value": value}]}}
    return value


def test_json_spans_of_the_wrong_shape_are_rejected_one_by_one(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    spans = [
        _json_span("good-1"),
        _json_span("bad-time", startTimeUnixNano="yesterday"),
        _json_span(5),
        _json_span("bad-attributes", attributes="not a list"),
        _json_span("bad-hex", traceId="not-hex-at-all"),
        _json_span("deep-32", attributes=[{"key": "v", "value": _json_kvlist(32)}]),
        _json_span("deep-40", attributes=[{"key": "v", "value": _json_kvlist(40)}]),
        _json_span("deep-31", attributes=[{"key": "v", "value": _json_kvlist(31)}]),
        _json_span("good-2", spanId="eee19b7ec3c1b175"),
    ]
    document = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}

    response = httpx.post(f"{addresses.http}/v1/traces", json=document)

    assert response.status_code == 200
    partial = response.json()["partialSuccess"]
    assert partial["rejectedSpans"] == "6"
    message = partial["errorMessage"]
    assert "span 'bad-time': not valid OTLP/JSON (Failed to parse startTimeUnixNano" in message
    assert "span #2: not valid OTLP/JSON" in message
    assert "span 'bad-hex': traceId 'not-hex-at-all' is not hex" in message
    assert "rejected 6 item(s)" in message  # the first five reasons are listed
    wait_for(lambda: count(store) == 3)
    assert stored_names(store) == ["deep-31", "good-1", "good-2"]


def test_deeply_nested_json_is_a_400_and_the_server_stays_up(
    start_collector: Any, store: Store
) -> None:
    collector, addresses = start_collector()
    url = f"{addresses.http}/v1/traces"
    headers = {"Content-Type": "application/json"}
    for body in (b"[" * 100_000, b'{"resourceSpans": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        response = httpx.post(url, content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["code"] == 3  # INVALID_ARGUMENT
        assert "nested too deeply" in response.json()["message"]
    assert collector.metrics.snapshot()["invalid_requests"] == 2
    ok = httpx.post(url, json={"resourceSpans": [{"scopeSpans": [{"spans": [_json_span("ok")]}]}]})
    assert ok.status_code == 200
    wait_for(lambda: count(store) == 1)


def test_times_past_what_clickhouse_holds_are_refused_per_item(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    request = trace_request(
        [
            span("good"),
            span("start-2^63", start_ns=2**63, duration_ns=0),
            span("end-2^64-1", start_ns=10**18, duration_ns=2**64 - 1 - 10**18),
            span("event-late"),
        ]
    )
    request.resource_spans[0].scope_spans[0].spans[3].events.add(name="e", time_unix_nano=2**63)
    response = grpc_export(addresses.grpc, request.SerializeToString())

    assert response.partial_success.rejected_spans == 3
    message = response.partial_success.error_message
    assert (
        "span 'start-2^63': end_time_unix_nano 9223372036854775808 is after 2262-04-11" in message
    )
    assert "span 'end-2^64-1': end_time_unix_nano 18446744073709551615 is after" in message
    assert "span 'event-late': an event's time_unix_nano 9223372036854775808" in message
    assert "send nanoseconds since the Unix epoch" in message

    logs = log_request([{"event_name": "late", "time": 2**63}, {"event_name": "on-time"}])
    logged = grpc_export(addresses.grpc, logs.SerializeToString(), method=LOGS)
    assert logged.partial_success.rejected_log_records == 1
    assert "log record 'late': time_unix_nano 9223372036854775808" in (
        logged.partial_success.error_message
    )

    late_json = _json_span("json-late", startTimeUnixNano=str(2**63), endTimeUnixNano=str(2**63))
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [late_json]}]}]}
    answer = httpx.post(f"{addresses.http}/v1/traces", json=document).json()
    assert answer["partialSuccess"]["rejectedSpans"] == "1"

    wait_for(lambda: count(store) == 1 and count(store, "SELECT count() FROM otel_logs") == 1)
    assert stored_names(store) == ["good"]
    # Nothing was stored wrapped into the past.
    assert store.query("SELECT min(Timestamp) > '2020-01-01' FROM otel_traces") == [(1,)]
