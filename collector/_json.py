"""OTLP/JSON → protobuf bytes (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).

OTLP/JSON differs from the protobuf JSON mapping in one way that matters: trace and span ids
are hex strings, not base64. They are rewritten before ``json_format`` parses the document.
An id that is not valid hex becomes empty, so validation rejects just that span.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from evalhouse.collector._validate import InvalidRequest
from evalhouse.store import Signal

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")


def _hex_to_base64(holder: dict[str, Any]) -> None:
    for key in _ID_KEYS:
        value = holder.get(key)
        if isinstance(value, str) and value:
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                holder[key] = ""


def _children(holder: Any, *keys: str) -> list[Any]:
    if not isinstance(holder, dict):
        return []
    for key in keys:
        value = holder.get(key)
        if isinstance(value, list):
            return value
    return []


def json_to_protobuf(signal: Signal, body: bytes) -> bytes:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("OTLP/JSON body must be a JSON object")
    if signal == "traces":
        for resource in _children(document, "resourceSpans", "resource_spans"):
            for scope in _children(resource, "scopeSpans", "scope_spans"):
                for span in _children(scope, "spans"):
                    if isinstance(span, dict):
                        _hex_to_base64(span)
                        for link in _children(span, "links"):
                            if isinstance(link, dict):
                                _hex_to_base64(link)
        message: Any = ExportTraceServiceRequest()
    else:
        for resource in _children(document, "resourceLogs", "resource_logs"):
            for scope in _children(resource, "scopeLogs", "scope_logs"):
                for record in _children(scope, "logRecords", "log_records"):
                    if isinstance(record, dict):
                        _hex_to_base64(record)
        message = ExportLogsServiceRequest()
    try:
        json_format.ParseDict(document, message, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, ValueError, TypeError) as exc:
        raise InvalidRequest(f"body is not an OTLP/JSON export request ({exc})") from exc
    data: bytes = message.SerializeToString()
    return data
