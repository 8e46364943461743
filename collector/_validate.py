"""Checking and repairing one OTLP export request before it is stored.

Fast path (almost every request): parse with the ingest classes (upb checks UTF-8), look for
unknown fields — structured attribute values show up as such — and check ids and times. The
original bytes are stored untouched.

Slow path: parse leniently (strings as bytes), drop bad spans/records, turn structured values
into JSON strings (as the OTel Collector's exporter renders them), replace invalid UTF-8,
truncate oversized values with a marker, and store the re-serialised request.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from evalhouse.store._otlp import Signal, ingest_class, lenient_class

TRUNCATION_MARKER = "…[truncated by evalhouse: {dropped} bytes]"
_MAX_REASONS = 5


class InvalidRequest(ValueError):
    """The body is not an OTLP export request at all (INVALID_ARGUMENT / HTTP 400)."""


@dataclass
class Prepared:
    payload: bytes
    accepted: int
    rejected: int = 0
    truncated: int = 0
    utf8_repaired: int = 0
    reasons: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """OTLP partial-success message: rejections and repairs, empty when all was clean."""
        parts = []
        if self.rejected:
            parts.append(f"rejected {self.rejected} item(s): " + "; ".join(self.reasons))
        if self.truncated:
            parts.append(f"truncated {self.truncated} attribute value(s) over the size limit")
        if self.utf8_repaired:
            parts.append(f"replaced invalid UTF-8 in {self.utf8_repaired} string(s)")
        return "; ".join(parts)


def _items(signal: Signal, request: Any) -> list[tuple[Any, Any]]:
    """(container list, item) pairs: spans of every scope, or log records."""
    out = []
    if signal == "traces":
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                out += [(scope.spans, span) for span in scope.spans]
    else:
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                out += [(scope.log_records, record) for record in scope.log_records]
    return out


def _problem(signal: Signal, item: Any) -> str | None:
    if signal == "traces":
        if len(item.trace_id) != 16 or not any(item.trace_id):
            return f"trace_id must be 16 non-zero bytes, got {len(item.trace_id)} bytes"
        if len(item.span_id) != 8 or not any(item.span_id):
            return f"span_id must be 8 non-zero bytes, got {len(item.span_id)} bytes"
        if item.parent_span_id and len(item.parent_span_id) != 8:
            return f"parent_span_id must be empty or 8 bytes, got {len(item.parent_span_id)}"
        if item.end_time_unix_nano < item.start_time_unix_nano:
            return "end_time_unix_nano is before start_time_unix_nano"
        return None
    if item.trace_id and len(item.trace_id) != 16:
        return f"trace_id must be empty or 16 bytes, got {len(item.trace_id)} bytes"
    if item.span_id and len(item.span_id) != 8:
        return f"span_id must be empty or 8 bytes, got {len(item.span_id)} bytes"
    return None


def prepare(signal: Signal, raw: bytes, max_attribute_bytes: int) -> Prepared:
    """Validate ``raw``; return what to store and what to tell the client.

    >>> prepare("traces", b"", 1024).accepted
    0
    """
    try:
        request = ingest_class(signal).FromString(raw)
    except DecodeError:
        return _slow(signal, raw, max_attribute_bytes)
    request.DiscardUnknownFields()
    if request.ByteSize() != len(raw):
        return _slow(signal, raw, max_attribute_bytes)
    items = _items(signal, request)
    for _, item in items:
        if _problem(signal, item) is not None:
            return _slow(signal, raw, max_attribute_bytes)
    if len(raw) > max_attribute_bytes and any(
        item.ByteSize() > max_attribute_bytes for _, item in items
    ):
        return _slow(signal, raw, max_attribute_bytes)
    return Prepared(payload=raw, accepted=len(items))


def _slow(signal: Signal, raw: bytes, max_attribute_bytes: int) -> Prepared:
    try:
        request = lenient_class(signal).FromString(raw)
    except DecodeError as exc:
        kind = "ExportTraceServiceRequest" if signal == "traces" else "ExportLogsServiceRequest"
        raise InvalidRequest(
            f"body is not a valid OTLP {kind} protobuf ({exc}); "
            "send a serialised export request (or JSON with Content-Type: application/json)"
        ) from exc
    result = Prepared(payload=b"", accepted=0)
    for position, (container, item) in enumerate(reversed(_items(signal, request))):
        problem = _problem(signal, item)
        if problem is None:
            continue
        result.rejected += 1
        if len(result.reasons) < _MAX_REASONS:
            noun = "span" if signal == "traces" else "log record"
            name = item.name if signal == "traces" else item.event_name
            label = name.decode("utf-8", "replace") if name else f"#{position}"
            result.reasons.append(f"{noun} {label!r}: {problem}")
        container.remove(item)
    _Repairer(result, max_attribute_bytes).message(request)
    result.accepted = len(_items(signal, request))
    result.payload = request.SerializeToString()
    return result


@cache
def _converted_strings() -> frozenset[str]:
    """Full names of lenient fields that are strings in OTLP (bytes only in our copy)."""
    names: set[str] = set()
    for signal in ("traces", "logs"):
        _collect_strings(ingest_class(signal).DESCRIPTOR, names, set())
    return frozenset(names)


def _collect_strings(descriptor: Any, names: set[str], seen: set[str]) -> None:
    if descriptor.full_name in seen:
        return
    seen.add(descriptor.full_name)
    for f in descriptor.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            names.add(f.full_name)
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            _collect_strings(f.message_type, names, seen)


class _Repairer:
    """Walks a lenient message: structured values → JSON, bad UTF-8 → U+FFFD, long → cut."""

    def __init__(self, result: Prepared, limit: int) -> None:
        self.result = result
        self.limit = limit
        self.strings = _converted_strings()

    def message(self, message: Any) -> None:
        for f, value in message.ListFields():
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if f.message_type.name == "AnyValue":
                    for any_value in value if f.is_repeated else [value]:
                        self.any_value(any_value)
                else:
                    for child in value if f.is_repeated else [value]:
                        self.message(child)
            elif f.full_name in self.strings:
                if f.is_repeated:
                    for i, item in enumerate(value):
                        value[i] = self.text(item)
                else:
                    setattr(message, f.name, self.text(value))

    def any_value(self, any_value: Any) -> None:
        kind = any_value.WhichOneof("value")
        if kind in ("array_value", "kvlist_value"):
            rendered = json.dumps(
                _plain(any_value), separators=(",", ":"), ensure_ascii=False, sort_keys=True
            )
            any_value.string_value = self.text(rendered.encode("utf-8"))
        elif kind == "string_value":
            any_value.string_value = self.text(any_value.string_value)

    def text(self, data: bytes) -> bytes:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            self.result.utf8_repaired += 1
            data = data.decode("utf-8", "replace").encode("utf-8")
        if len(data) > self.limit:
            self.result.truncated += 1
            cut = data[: self.limit].decode("utf-8", "ignore").encode("utf-8")
            marker = TRUNCATION_MARKER.format(dropped=len(data) - len(cut))
            data = cut + marker.encode("utf-8")
        return data


def _plain(any_value: Any) -> Any:
    """An AnyValue as plain JSON data, matching pcommon.Value.AsRaw()."""
    kind = any_value.WhichOneof("value")
    if kind == "string_value":
        return any_value.string_value.decode("utf-8", "replace")
    if kind == "bool_value":
        return any_value.bool_value
    if kind == "int_value":
        return any_value.int_value
    if kind == "double_value":
        number = any_value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "bytes_value":
        return base64.b64encode(any_value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {
            kv.key.decode("utf-8", "replace"): _plain(kv.value)
            for kv in any_value.kvlist_value.values
        }
    return None
