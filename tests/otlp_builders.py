"""Build OTLP export requests for tests, with plain dicts of attributes."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue


def any_value(value: Any) -> AnyValue:
    out = AnyValue()
    if isinstance(value, bool):
        out.bool_value = value
    elif isinstance(value, int):
        out.int_value = value
    elif isinstance(value, float):
        out.double_value = value
    elif isinstance(value, bytes):
        out.bytes_value = value
    elif isinstance(value, str):
        out.string_value = value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            out.kvlist_value.values.add(key=key).value.CopyFrom(any_value(item))
    elif isinstance(value, Sequence):
        for item in value:
            out.array_value.values.add().CopyFrom(any_value(item))
    else:
        raise TypeError(type(value))
    return out


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in values.items()]


def span(
    name: str = "span",
    attrs: Mapping[str, Any] | None = None,
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    start_ns: int | None = None,
    duration_ns: int = 1_000_000,
    kind: int = 1,
) -> dict[str, Any]:
    start = start_ns if start_ns is not None else time.time_ns()
    return {
        "name": name,
        "attrs": dict(attrs or {}),
        "trace_id": os.urandom(16) if trace_id is None else trace_id,
        "span_id": os.urandom(8) if span_id is None else span_id,
        "parent_span_id": parent_span_id,
        "start": start,
        "end": start + duration_ns,
        "kind": kind,
    }


def trace_request(
    spans: Sequence[Mapping[str, Any]], service: str = "test-service"
) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.extend(attributes({"service.name": service}))
    scope = resource.scope_spans.add()
    scope.scope.name = "tests"
    scope.scope.version = "1.0"
    for s in spans:
        out = scope.spans.add()
        out.name = s["name"]
        out.trace_id = s["trace_id"]
        out.span_id = s["span_id"]
        out.parent_span_id = s["parent_span_id"]
        out.start_time_unix_nano = s["start"]
        out.end_time_unix_nano = s["end"]
        out.kind = s["kind"]
        out.attributes.extend(attributes(s["attrs"]))
    return request


def log_request(
    records: Sequence[Mapping[str, Any]], service: str = "test-service"
) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.extend(attributes({"service.name": service}))
    scope = resource.scope_logs.add()
    for r in records:
        out = scope.log_records.add()
        out.time_unix_nano = r.get("time", time.time_ns())
        out.trace_id = r.get("trace_id", b"")
        out.span_id = r.get("span_id", b"")
        out.event_name = r.get("event_name", "")
        out.severity_number = r.get("severity_number", 9)
        out.body.CopyFrom(any_value(r.get("body", "")))
        out.attributes.extend(attributes(r.get("attrs", {})))
    return request
