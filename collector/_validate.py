"""Checking and repairing one OTLP export request before it is stored.

Items (spans, log records, metric data points) are accepted or rejected one by one: a bad item
is left out and named in the OTLP partial-success answer, the rest of the request is stored.
An item is bad when ClickHouse could not store it faithfully: ids of the wrong length, an end
before its start, a time past what the table's time column holds (a fixed64 nanosecond count
past 2^63 would wrap), a value nested more than :data:`MAX_VALUE_NESTING` levels deep, or
bytes that do not decode.

Fast path (almost every request): parse with the ingest classes (upb checks UTF-8), look for
unknown fields — structured attribute values show up as such — and check ids and times. The
original bytes are stored untouched.

Slow path: parse leniently (strings as bytes), drop bad items, turn structured values into
JSON strings (as the OTel Collector's exporter renders them), replace invalid UTF-8, truncate
oversized values with a marker, and store the re-serialised request. Protobuf's parser first
tells which items need what: one that reads cleanly with the ingest classes is kept as it is,
and one whose only repair is its structured values gets those converted and nothing else
walked. The protobuf decoder
refuses messages nested more than 100 deep counted from the request, so when the whole request
cannot be read, its envelope is read with the items left as bytes and each item is decoded on
its own: one undecodable item is rejected, not the request.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError

from evalhouse.store import (
    SIGNALS,
    Signal,
    envelope_class,
    ingest_class,
    ingest_item_class,
    item_fields,
    lenient_class,
    lenient_item_class,
)

TRUNCATION_MARKER = "…[truncated by evalhouse: {dropped} bytes]"
_MAX_REASONS = 5
# Arrays and key-value lists nested inside one attribute (or log body) value, at most. The
# protobuf decoder already stopped at 32 nested key-value lists in a span attribute (its
# 100-message limit counted from the request); now such a value costs its item only.
MAX_VALUE_NESTING = 31
# The last nanosecond a DateTime64(9) column holds (2262-04-11T23:47:16Z); OTLP times are
# fixed64 and anything larger would be stored wrapped into the past.
MAX_NANOS = 2**63 - 1
# The metrics tables keep times as DateTime, whole seconds up to 2106-02-07T06:28:15Z.
MAX_METRIC_NANOS = 2**32 * 10**9 - 1
_TOO_DEEP = (
    f"a value nested more than {MAX_VALUE_NESTING} levels deep (arrays and key-value lists) "
    "is refused; flatten it or send it as a JSON string"
)
_MAY_BE_TOO_DEEP = (
    f"it is malformed or holds a value nested more than {MAX_VALUE_NESTING} levels deep "
    "(arrays and key-value lists, refused); flatten such values or send them as JSON strings"
)


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

    def reject(self, reason: str) -> None:
        """Count one rejected item; the first few reasons go into the answer."""
        self.rejected += 1
        if len(self.reasons) < _MAX_REASONS:
            self.reasons.append(reason)

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


# ---- what an item is and when it is bad ---------------------------------------------------


def _too_late(name: str, value: int, limit: int) -> str:
    if limit == MAX_NANOS:
        where = "2262-04-11T23:47:16Z (2^63 ns), the latest a DateTime64(9) column holds"
    else:
        where = "2106-02-07T06:28:15Z, the latest the metrics tables' DateTime columns hold"
    return f"{name} {value} is after {where}; send nanoseconds since the Unix epoch"


def _span_problem(span: Any) -> str | None:
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"trace_id must be 16 non-zero bytes, got {len(span.trace_id)} bytes"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span_id must be 8 non-zero bytes, got {len(span.span_id)} bytes"
    if span.parent_span_id and len(span.parent_span_id) != 8:
        return f"parent_span_id must be empty or 8 bytes, got {len(span.parent_span_id)}"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_time_unix_nano is before start_time_unix_nano"
    if span.end_time_unix_nano > MAX_NANOS:  # so is the start, or it is before the end
        return _too_late("end_time_unix_nano", span.end_time_unix_nano, MAX_NANOS)
    for event in span.events:
        if event.time_unix_nano > MAX_NANOS:
            return _too_late("an event's time_unix_nano", event.time_unix_nano, MAX_NANOS)
    return None


def _ids_problem(holder: Any) -> str | None:
    """Ids that may be empty (log records, exemplars) but not of the wrong length."""
    if holder.trace_id and len(holder.trace_id) != 16:
        return f"trace_id must be empty or 16 bytes, got {len(holder.trace_id)} bytes"
    if holder.span_id and len(holder.span_id) != 8:
        return f"span_id must be empty or 8 bytes, got {len(holder.span_id)} bytes"
    return None


def _log_problem(record: Any) -> str | None:
    for name in ("time_unix_nano", "observed_time_unix_nano"):
        if getattr(record, name) > MAX_NANOS:
            return _too_late(name, getattr(record, name), MAX_NANOS)
    return _ids_problem(record)


def _point_times_problem(point: Any) -> str | None:
    for name in ("start_time_unix_nano", "time_unix_nano"):
        if getattr(point, name) > MAX_METRIC_NANOS:
            return _too_late(name, getattr(point, name), MAX_METRIC_NANOS)
    return None


def _point_problem(point: Any) -> str | None:
    problem = _point_times_problem(point)
    if problem is not None:
        return problem
    for exemplar in point.exemplars:
        problem = _ids_problem(exemplar)
        if problem is not None:
            return f"an exemplar's {problem}"
        if exemplar.time_unix_nano > MAX_METRIC_NANOS:
            return _too_late(
                "an exemplar's time_unix_nano", exemplar.time_unix_nano, MAX_METRIC_NANOS
            )
    return None


_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "span": _span_problem,
    "log record": _log_problem,
    "gauge": _point_problem,
    "sum": _point_problem,
    "histogram": _point_problem,
    "exponential_histogram": _point_problem,
    "summary": _point_times_problem,  # summaries have no exemplars
}


@dataclass(frozen=True)
class _Group:
    """One repeated field of items: spans of a scope, log records of a scope, or the data
    points of one metric (``metric`` is its name)."""

    kind: str
    parent: Any
    field: str
    metric: Any = None

    @property
    def items(self) -> Any:
        return getattr(self.parent, self.field)


def _groups(signal: Signal, request: Any) -> Iterator[_Group]:
    if signal == "traces":
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                yield _Group("span", scope, "spans")
    elif signal == "logs":
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                yield _Group("log record", scope, "log_records")
    else:
        for resource in request.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    kind = metric.WhichOneof("data")
                    if kind is not None:
                        yield _Group(kind, getattr(metric, kind), "data_points", metric.name)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _label(group: _Group, position: int, index: int, name: str | bytes | None) -> str:
    """How the answer names an item: a span or log record by its name, else its place in the
    request (``position``); a data point by its metric and place in it (``index``)."""
    if group.metric is not None:
        return f"data point #{index} of metric {_text(group.metric)!r}"
    noun = group.kind
    return f"{noun} {_text(name)!r}" if name else f"{noun} #{position}"


def _name(group: _Group, item: Any) -> str | bytes | None:
    if group.kind == "span":
        value: str | bytes = item.name
        return value
    if group.kind == "log record":
        value = item.event_name
        return value
    return None


# ---- fast path ------------------------------------------------------------------------------


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
    large = len(raw) > max_attribute_bytes
    accepted = 0
    for group in _groups(signal, request):
        check = _CHECKS[group.kind]
        items = group.items
        for item in items:
            if check(item) is not None or (large and item.ByteSize() > max_attribute_bytes):
                return _slow(signal, raw, max_attribute_bytes)
        accepted += len(items)
    return Prepared(payload=raw, accepted=accepted)


def with_items(signal: Signal, skeleton: bytes, items: list[list[bytes]]) -> bytes:
    """``skeleton``, a request whose item lists are empty, with ``items`` (serialised items,
    one list per group in request order) put back. A request built from items serialised one
    by one: the protobuf encoder, like the decoder, refuses nesting deeper than 100 counted
    from the request, which an item holding a deep value may reach (validation rejects it).
    """
    request = envelope_class(signal).FromString(skeleton)
    groups = list(_groups(signal, request))
    if len(groups) != len(items):
        raise InvalidRequest(
            f"the request has {len(groups)} lists of items once converted, not {len(items)}; "
            "set one data kind per metric"
        )
    for group, serialized in zip(groups, items, strict=True):
        group.items.extend(serialized)
    data: bytes = request.SerializeToString()
    return data


# ---- slow path ------------------------------------------------------------------------------


class _TooDeep(Exception):
    pass


def _slow(signal: Signal, raw: bytes, max_attribute_bytes: int) -> Prepared:
    result = Prepared(payload=b"", accepted=0)
    repairer = _Repairer(result, max_attribute_bytes)
    try:
        request = lenient_class(signal).FromString(raw)
        whole = True
    except DecodeError:
        request = _envelope(signal, raw)
        whole = False
    try:
        repairer.message(request, skip=item_fields())
    except _TooDeep as exc:
        raise InvalidRequest(f"in a resource or scope attribute, {_TOO_DEEP}") from exc
    position = 0
    for group in _groups(signal, request):
        if whole:
            position = _repair_items(group, position, repairer)
        else:
            position = _decode_items(group, position, repairer)
    result.accepted = sum(len(group.items) for group in _groups(signal, request))
    result.payload = request.SerializeToString()
    return result


def _envelope(signal: Signal, raw: bytes) -> Any:
    try:
        return envelope_class(signal).FromString(raw)
    except DecodeError as exc:
        kind = ingest_class(signal).DESCRIPTOR.name
        raise InvalidRequest(
            f"body is not a valid OTLP {kind} protobuf ({exc}); "
            "send a serialised export request (or JSON with Content-Type: application/json)"
        ) from exc


def _repair_items(group: _Group, position: int, repairer: _Repairer) -> int:
    """Check and repair the decoded items of ``group``, deleting the bad ones."""
    items = group.items
    count = len(items)
    bad = []
    for index, item in enumerate(items):
        problem = _CHECKS[group.kind](item) or repairer.item(item)
        if problem is not None:
            label = _label(group, position + index, index, _name(group, item))
            repairer.result.reject(f"{label}: {problem}")
            bad.append(index)
    for index in reversed(bad):
        del items[index]
    return position + count


def _decode_items(group: _Group, position: int, repairer: _Repairer) -> int:
    """Decode each item of ``group`` (bytes in the envelope) on its own, then as
    :func:`_repair_items`; an item that does not decode is rejected."""
    item_class = lenient_item_class(group.parent.DESCRIPTOR.fields_by_name[group.field].full_name)
    items = group.items
    kept = []
    for index, data in enumerate(items):
        try:
            item = item_class.FromString(data)
        except DecodeError as exc:
            number = _NAME_FIELDS.get(group.kind)
            name = _field_bytes(data, number) if number is not None else None
            repairer.result.reject(
                f"{_label(group, position + index, index, name)}: could not be decoded "
                f"({exc}); {_MAY_BE_TOO_DEEP}"
            )
            continue
        problem = _CHECKS[group.kind](item) or repairer.item(item)
        if problem is not None:
            label = _label(group, position + index, index, _name(group, item))
            repairer.result.reject(f"{label}: {problem}")
            continue
        kept.append(item.SerializeToString())
    count = len(items)
    del items[:]
    items.extend(kept)
    return position + count


# Field numbers of the name of an item, read from an item that does not decode.
_NAME_FIELDS = {"span": 5, "log record": 12}


def _field_bytes(data: bytes, number: int) -> bytes | None:
    """The first length-delimited top-level field ``number`` of a serialised message, found
    without decoding anything else (to name an item that cannot be decoded)."""

    def varint(at: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[at]
            value |= (byte & 0x7F) << shift
            at += 1
            if not byte & 0x80:
                return value, at
            shift += 7

    at = 0
    try:
        while at < len(data):
            key, at = varint(at)
            wire = key & 7
            if wire == 0:
                at = varint(at)[1]
            elif wire in (1, 5):
                at += 8 if wire == 1 else 4
            elif wire == 2:
                size, at = varint(at)
                if key >> 3 == number:
                    return data[at : at + size]
                at += size
            else:
                return None
    except IndexError:
        return None
    return None


# ---- repairs --------------------------------------------------------------------------------


@cache
def _converted_strings() -> frozenset[str]:
    """Full names of lenient fields that are strings in OTLP (bytes only in our copy)."""
    names: set[str] = set()
    for signal in SIGNALS:
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
        self.texts = True  # check and cut strings (off while an item's strings are known sound)

    def item(self, item: Any) -> str | None:
        """Repair one item; a problem that costs the item instead (a value nested too deep),
        with the repair counts as they were."""
        state = self._state(item)
        if state == "sound":
            return None
        counts = (self.result.truncated, self.result.utf8_repaired)
        self.texts = state == "walk"
        try:
            self.message(item)
        except _TooDeep:
            self.result.truncated, self.result.utf8_repaired = counts
            return _TOO_DEEP
        finally:
            self.texts = True
        return None

    def _state(self, item: Any) -> str:
        """What ``item`` needs, asked of protobuf's own parser (microseconds, where a walk of
        every field in Python takes a tenth of a millisecond a span): ``sound`` when it reads
        with the ingest classes (valid UTF-8), has no unknown fields (no structured value) and
        is too small to hold a value to cut; ``structured`` when only its structured values
        (unknown to the ingest classes) need turning into JSON; else ``walk``. So a span with
        an array attribute (OTel GenAI's ``gen_ai.response.finish_reasons``) no longer costs
        every span of its request a walk that checks each string."""
        data = item.SerializeToString()
        if len(data) > self.limit:
            return "walk"
        try:
            parsed = ingest_item_class(item.DESCRIPTOR.full_name).FromString(data)
        except DecodeError:
            return "walk"
        parsed.DiscardUnknownFields()
        return "sound" if parsed.ByteSize() == len(data) else "structured"

    def message(self, message: Any, skip: frozenset[str] = frozenset()) -> None:
        if not self.texts:  # only the structured values: only the fields that may hold them
            for f in _carriers(message.DESCRIPTOR):
                value = getattr(message, f.name)
                kind = f.message_type.name
                for child in value if f.is_repeated else [value]:
                    if kind == "KeyValue":  # attributes: most of what a walk visits
                        self.any_value(child.value)
                    elif kind == "AnyValue":
                        self.any_value(child)
                    else:
                        self.message(child)
            return
        for f, value in message.ListFields():
            if f.type == FieldDescriptor.TYPE_MESSAGE:
                if f.full_name in skip:
                    continue
                if f.message_type.name == "AnyValue":
                    for any_value in value if f.is_repeated else [value]:
                        self.any_value(any_value)
                else:
                    for child in value if f.is_repeated else [value]:
                        self.message(child, skip)
            elif self.texts and f.full_name in self.strings:
                if f.is_repeated:
                    for i, item in enumerate(value):
                        value[i] = self.text(item)
                else:
                    setattr(message, f.name, self.text(value))

    def any_value(self, any_value: Any) -> None:
        kind = any_value.WhichOneof("value")
        if kind in _STRUCTURED:
            rendered = json.dumps(
                _plain(any_value), separators=(",", ":"), ensure_ascii=False, sort_keys=True
            )
            any_value.string_value = self.text(rendered.encode("utf-8"))
        elif kind == "string_value" and self.texts:
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


_STRUCTURED = frozenset({"array_value", "kvlist_value"})


@cache
def _carriers(descriptor: Any) -> tuple[Any, ...]:
    """The message fields of ``descriptor`` that hold an AnyValue, directly or further down."""
    return tuple(
        f
        for f in descriptor.fields
        if f.type == FieldDescriptor.TYPE_MESSAGE and _holds_any_value(f.message_type, set())
    )


def _holds_any_value(descriptor: Any, seen: set[str]) -> bool:
    if descriptor.name == "AnyValue":
        return True
    if descriptor.full_name in seen:
        return False
    seen.add(descriptor.full_name)
    return any(
        f.type == FieldDescriptor.TYPE_MESSAGE and _holds_any_value(f.message_type, seen)
        for f in descriptor.fields
    )


def _plain(any_value: Any, depth: int = 0) -> Any:
    """An AnyValue as plain JSON data, matching pcommon.Value.AsRaw(); ``depth`` counts the
    arrays and key-value lists around it."""
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
    if depth >= MAX_VALUE_NESTING and kind in ("array_value", "kvlist_value"):
        raise _TooDeep
    if kind == "array_value":
        return [_plain(v, depth + 1) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return {
            kv.key.decode("utf-8", "replace"): _plain(kv.value, depth + 1)
            for kv in any_value.kvlist_value.values
        }
    return None
