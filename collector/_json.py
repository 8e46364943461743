"""OTLP/JSON → protobuf bytes (https://opentelemetry.io/docs/specs/otlp/#json-protobuf-encoding).

OTLP/JSON differs from the protobuf JSON mapping in one way that matters: trace and span ids
are hex strings, not base64. They are rewritten before ``json_format`` parses the document.

Items (spans, log records, metric data points) are converted one by one when the document as a
whole does not convert: an item with an id that is not hex or a field of the wrong type is
left out and reported, the rest of the request is kept. A body that is not JSON, or JSON
nested deeper than Python's parser goes, is refused whole.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import EncodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    ExponentialHistogramDataPoint,
    HistogramDataPoint,
    NumberDataPoint,
    SummaryDataPoint,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from evalhouse.collector._validate import InvalidRequest, with_items
from evalhouse.store import Signal

_ID_KEYS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_REQUESTS: dict[Signal, Any] = {
    "traces": ExportTraceServiceRequest,
    "logs": ExportLogsServiceRequest,
    "metrics": ExportMetricsServiceRequest,
}
# Metric kind (both spellings json_format accepts) → the class of its data points.
_POINTS = {
    "gauge": NumberDataPoint,
    "sum": NumberDataPoint,
    "histogram": HistogramDataPoint,
    "exponentialHistogram": ExponentialHistogramDataPoint,
    "exponential_histogram": ExponentialHistogramDataPoint,
    "summary": SummaryDataPoint,
}
# What json_format raises for a document of the wrong shape.
_PARSE_ERRORS = (json_format.ParseError, binascii.Error, ValueError, TypeError, RecursionError)


class _BadItem(ValueError):
    pass


def _hex_to_base64(holder: Any) -> None:
    if not isinstance(holder, dict):
        return
    for key in _ID_KEYS:
        value = holder.get(key)
        if isinstance(value, str) and value:
            try:
                holder[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
            except ValueError:
                raise _BadItem(
                    f"{key} {value[:64]!r} is not hex; OTLP/JSON ids are hex strings"
                ) from None


def _children(holder: Any, *keys: str) -> list[Any]:
    if not isinstance(holder, dict):
        return []
    for key in keys:
        value = holder.get(key)
        if isinstance(value, list):
            return value
    return []


def _groups(signal: Signal, document: dict[str, Any]) -> Iterator[tuple[str, list[Any], Any]]:
    """(item class name, the JSON list of items, metric name or None) for every list of items."""
    if signal == "traces":
        for resource in _children(document, "resourceSpans", "resource_spans"):
            for scope in _children(resource, "scopeSpans", "scope_spans"):
                yield "span", _children(scope, "spans"), None
    elif signal == "logs":
        for resource in _children(document, "resourceLogs", "resource_logs"):
            for scope in _children(resource, "scopeLogs", "scope_logs"):
                yield "log record", _children(scope, "logRecords", "log_records"), None
    else:
        for resource in _children(document, "resourceMetrics", "resource_metrics"):
            for scope in _children(resource, "scopeMetrics", "scope_metrics"):
                for metric in _children(scope, "metrics"):
                    for kind in _POINTS:
                        data = metric.get(kind) if isinstance(metric, dict) else None
                        if isinstance(data, dict):
                            points = _children(data, "dataPoints", "data_points")
                            yield kind, points, metric.get("name")


def _fix_ids(kind: str, item: Any) -> None:
    """Hex ids → base64, in the item and in its links / exemplars."""
    _hex_to_base64(item)
    if isinstance(item, dict):
        for child in _children(item, "links" if kind == "span" else "exemplars"):
            _hex_to_base64(child)


def _item_class(kind: str) -> Any:
    if kind == "span":
        return Span
    if kind == "log record":
        return LogRecord
    return _POINTS[kind]


def _label(kind: str, position: int, index: int, item: Any, metric: Any) -> str:
    """As the validation names items: by name, else by ``position`` in the request; a data
    point by its metric and ``index`` in it."""
    if kind in _POINTS:
        metric_name = metric if isinstance(metric, str) else ""
        return f"data point #{index} of metric {metric_name!r}"
    name = item.get("name" if kind == "span" else "eventName") if isinstance(item, dict) else None
    return f"{kind} {name!r}" if isinstance(name, str) and name else f"{kind} #{position}"


def json_to_protobuf(signal: Signal, body: bytes) -> tuple[bytes, list[str]]:
    """The request as protobuf bytes, and one reason per item left out.

    >>> json_to_protobuf("traces", b'{"resourceSpans": []}')
    (b'', [])
    """
    try:
        document = json.loads(body)
    except RecursionError as exc:
        raise InvalidRequest(
            "JSON body is nested too deeply to parse; an OTLP/JSON request needs a few dozen "
            "levels at most (deeper attribute values are refused anyway)"
        ) from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON ({exc})") from exc
    if not isinstance(document, dict):
        raise InvalidRequest("OTLP/JSON body must be a JSON object")
    reasons: list[str] = []
    labels: dict[int, str] = {}  # id(item) → how to name it, by its place in the request
    groups = list(_groups(signal, document))
    for kind, items, metric in groups:
        kept = []
        for index, item in enumerate(items):
            labels[id(item)] = _label(kind, len(labels), index, item, metric)
            try:
                _fix_ids(kind, item)
                kept.append(item)
            except _BadItem as exc:
                reasons.append(f"{labels[id(item)]}: {exc}")
        items[:] = kept
    request = _REQUESTS[signal]()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
        data: bytes = request.SerializeToString()
    except _PARSE_ERRORS:
        # Find the items that do not convert, leave them out, and convert the rest.
        data = _convert_item_by_item(signal, document, groups, labels, reasons)
    return data, reasons


def _convert_item_by_item(
    signal: Signal,
    document: dict[str, Any],
    groups: list[tuple[str, list[Any], Any]],
    labels: dict[int, str],
    reasons: list[str],
) -> bytes:
    """Each item converted and serialised on its own, then put back into the request converted
    without them: the converters refuse messages nested more than 100 deep counted from where
    they start, so an item that converts alone may not convert inside its request (its values
    are judged by the validation, which rejects what is nested too deep)."""
    converted: list[list[bytes]] = []
    for kind, items, _ in groups:
        item_class = _item_class(kind)
        kept = []
        for item in items:
            message = item_class()
            try:
                json_format.ParseDict(item, message, ignore_unknown_fields=True)
                kept.append(message.SerializeToString())
            except (*_PARSE_ERRORS, EncodeError) as exc:
                reason = f"not valid OTLP/JSON ({_shortened(exc)}); correct the field it names"
                reasons.append(f"{labels[id(item)]}: {reason}")
        converted.append(kept)
        items.clear()
    skeleton = _REQUESTS[signal]()
    try:
        json_format.ParseDict(document, skeleton, ignore_unknown_fields=True)
    except _PARSE_ERRORS as exc:
        raise InvalidRequest(
            f"body is not an OTLP/JSON export request ({_shortened(exc)})"
        ) from exc
    return with_items(signal, skeleton.SerializeToString(), converted)


def _shortened(exc: Exception, limit: int = 300) -> str:
    """The converter's message, whose "Failed to parse X field: " prefixes repeat once per
    level of a deeply nested value, cut to its two ends."""
    text = str(exc)
    if len(text) <= limit:
        return text
    return f"{text[: limit // 2]}…{text[-limit // 2 :]}"
