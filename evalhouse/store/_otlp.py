"""The OTLP request shapes ClickHouse parses itself, derived from the installed opentelemetry-proto.

ClickHouse reads ``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` /
``ExportMetricsServiceRequest`` bytes with ``FORMAT Protobuf`` into a Null table; materialized
views flatten them into the exporter compatible tables. Nothing is vendored: the ``.proto``
text given to ClickHouse is printed from the descriptors of the installed
``opentelemetry-proto`` package, with two edits:

* ``AnyValue.array_value`` / ``kvlist_value`` are left out. ClickHouse cannot recurse, so the
  collector turns structured values into JSON strings before they reach the store (the
  "ingest" message classes below leave them out too, which is how the collector notices them
  cheaply: they show up as unknown fields).
* Fields ClickHouse does not need (string-table indexes, entity refs) are left out.

Three families of Python classes come from the same edited descriptors:

* ``ingest``: exactly what ClickHouse reads, with UTF-8 checked by upb on parse (fast path).
* ``lenient``: every string declared as bytes and structured values kept, so a request with
  invalid UTF-8 or structured values can still be read and repaired (slow path).
* ``envelope``: the lenient request with its items (spans, log records, data points) left as
  bytes. The protobuf decoder refuses messages nested more than 100 deep, counted from the
  request; reading the envelope first and each item on its own keeps one hostile item (a value
  nested 40 levels deep) from making the whole request unreadable.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any, Literal

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

Signal = Literal["traces", "logs", "metrics"]
# The write-ahead log stores a signal as its index here: append new signals, never reorder.
SIGNALS: tuple[Signal, ...] = ("traces", "logs", "metrics")

_REQUEST = {
    "traces": "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    "logs": "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
    "metrics": "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
}
_MODULES = (
    common_pb2,
    resource_pb2,
    trace_pb2,
    logs_pb2,
    metrics_pb2,
    trace_service_pb2,
    logs_service_pb2,
    metrics_service_pb2,
)
_STRUCTURED = {"array_value", "kvlist_value"}
# Not needed by the store; dropped from the ClickHouse schema and the ingest classes.
_DROPPED = {
    ("AnyValue", "string_value_strindex"),
    ("KeyValue", "key_strindex"),
    ("Resource", "entity_refs"),
}
# The repeated fields that hold a request's items: what validation accepts or rejects one by one.
_ITEMS = {
    ("ScopeSpans", "spans"),
    ("ScopeLogs", "log_records"),
    ("Gauge", "data_points"),
    ("Sum", "data_points"),
    ("Histogram", "data_points"),
    ("ExponentialHistogram", "data_points"),
    ("Summary", "data_points"),
}
_Family = Literal["ingest", "lenient", "envelope"]


def _edited_files(family: _Family) -> list[descriptor_pb2.FileDescriptorProto]:
    files = []
    for module in _MODULES:
        proto = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        for message in proto.message_type:
            _edit_message(message, family)
        files.append(proto)
    return files


def _edit_message(message: descriptor_pb2.DescriptorProto, family: _Family) -> None:
    keep = []
    lenient = family != "ingest"
    for field in message.field:
        if (message.name, field.name) in _DROPPED:
            continue
        if message.name == "AnyValue" and field.name in _STRUCTURED and not lenient:
            continue
        if lenient and field.type == descriptor_pb2.FieldDescriptorProto.TYPE_STRING:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
        if family == "envelope" and (message.name, field.name) in _ITEMS:
            # Same field number and wire type (length-delimited): the item's bytes, unread.
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
        keep.append(field)
    del message.field[:]
    message.field.extend(keep)
    for nested in message.nested_type:
        _edit_message(nested, family)


@cache
def _pool(family: _Family) -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for proto in _edited_files(family):
        pool.Add(proto)
    return pool


def ingest_class(signal: Signal) -> Any:
    """Message class matching what ClickHouse parses (no structured values; UTF-8 checked)."""
    return message_factory.GetMessageClass(_pool("ingest").FindMessageTypeByName(_REQUEST[signal]))


def lenient_class(signal: Signal) -> Any:
    """Message class that reads anything well-formed: strings as bytes, structured values kept."""
    return message_factory.GetMessageClass(_pool("lenient").FindMessageTypeByName(_REQUEST[signal]))


def envelope_class(signal: Signal) -> Any:
    """:func:`lenient_class` with every item (span, log record, data point) left as bytes."""
    return message_factory.GetMessageClass(
        _pool("envelope").FindMessageTypeByName(_REQUEST[signal])
    )


@cache
def ingest_item_class(full_name: str) -> Any:
    """:func:`ingest_class`'s message class named ``full_name`` (an item, such as
    ``opentelemetry.proto.trace.v1.Span``)."""
    return message_factory.GetMessageClass(_pool("ingest").FindMessageTypeByName(full_name))


def lenient_item_class(item_field: str) -> Any:
    """Lenient message class of the items held by the repeated field ``item_field`` (its full
    name, such as ``opentelemetry.proto.trace.v1.ScopeSpans.spans``)."""
    descriptor = _pool("lenient").FindFieldByName(item_field).message_type
    assert descriptor is not None, f"{item_field} does not hold messages"
    return message_factory.GetMessageClass(descriptor)


@cache
def item_fields() -> frozenset[str]:
    """Full names of the repeated fields that hold items, in every signal."""
    names = set()
    for module in _MODULES:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            for field in message.fields:
                if (message.name, field.name) in _ITEMS:
                    names.add(field.full_name)
    return frozenset(names)


_SCALARS = {
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "bytes",
    FieldDescriptor.TYPE_BOOL: "bool",
    FieldDescriptor.TYPE_INT64: "int64",
    FieldDescriptor.TYPE_INT32: "int32",
    FieldDescriptor.TYPE_UINT64: "uint64",
    FieldDescriptor.TYPE_UINT32: "uint32",
    FieldDescriptor.TYPE_DOUBLE: "double",
    FieldDescriptor.TYPE_FIXED64: "fixed64",
    FieldDescriptor.TYPE_FIXED32: "fixed32",
    FieldDescriptor.TYPE_SFIXED64: "sfixed64",
    FieldDescriptor.TYPE_SFIXED32: "sfixed32",
    FieldDescriptor.TYPE_SINT64: "sint64",
    FieldDescriptor.TYPE_SINT32: "sint32",
    FieldDescriptor.TYPE_FLOAT: "float",
}


def _local_name(full_name: str) -> str:
    return full_name.replace(".", "_")


@cache
def proto_schema(signal: Signal) -> str:
    """The ``.proto`` text (one file, no imports) ClickHouse uses to parse a request."""
    root: Descriptor = _pool("ingest").FindMessageTypeByName(_REQUEST[signal])
    blocks: list[str] = []
    seen: set[str] = set()
    pending = [root]
    while pending:
        message = pending.pop()
        if message.full_name in seen:
            continue
        seen.add(message.full_name)
        name = message.name if message is root else _local_name(message.full_name)
        lines = [f"message {name} {{"]
        oneofs: dict[str, list[str]] = {}
        for field in message.fields:
            if field.message_type is not None:
                type_name = _local_name(field.message_type.full_name)
                pending.append(field.message_type)
            elif field.enum_type is not None:
                enum = field.enum_type
                type_name = _local_name(enum.full_name)
                if enum.full_name not in seen:
                    seen.add(enum.full_name)
                    values = " ".join(f"{v.name} = {v.number};" for v in enum.values)
                    blocks.append(f"enum {type_name} {{ {values} }}")
            else:
                type_name = _SCALARS[field.type]
            repeated = "repeated " if field.is_repeated else ""
            line = f"  {repeated}{type_name} {field.name} = {field.number};"
            if field.containing_oneof is not None:
                oneofs.setdefault(field.containing_oneof.name, []).append(line)
            else:
                lines.append(line)
        for oneof, members in oneofs.items():
            lines += [f"  oneof {oneof} {{", *members, "  }"]
        lines.append("}")
        blocks.append("\n".join(lines))
    return 'syntax = "proto3";\n\n' + "\n\n".join(blocks) + "\n"


def format_settings(signal: Signal, schema_dir: Path | None = None) -> dict[str, Any]:
    """Per-insert settings that make ClickHouse parse length-delimited OTLP requests.

    A server gets the schema text with the insert. The embedded engine would cache that text
    as a file in the process's working directory, so for chDB the schema is written once into
    ``schema_dir`` (inside the data directory) and referenced by absolute path.
    """
    message = _REQUEST[signal].rsplit(".", 1)[1]
    common = {"input_format_protobuf_oneof_presence": 1}
    if schema_dir is None:
        return {
            **common,
            "format_schema": proto_schema(signal),
            "format_schema_source": "string",
            "format_schema_message_name": message,
        }
    text = proto_schema(signal)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = schema_dir / f"otlp_{signal}_{digest}.proto"
    if not path.exists():
        schema_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return {**common, "format_schema": f"{path}:{message}"}


# ClickHouse column types of the Null tables, mirroring the ingest messages by name.
_ANY_VALUE = (
    "Tuple(value Enum8('none' = 0, 'string_value' = 1, 'bool_value' = 2, 'int_value' = 3, "
    "'double_value' = 4, 'bytes_value' = 7), string_value String, bool_value Bool, "
    "int_value Int64, double_value Float64, bytes_value String)"
)
_ATTRIBUTES = f"Array(Tuple(key String, value {_ANY_VALUE}))"
_SCOPE = f"Tuple(name String, version String, attributes {_ATTRIBUTES})"
_RESOURCE = f"Tuple(attributes {_ATTRIBUTES})"


def _enum(descriptor: Any) -> str:
    members = ", ".join(f"'{v.name}' = {v.number}" for v in descriptor.values)
    return f"Enum8({members})"


def ingest_columns(signal: Signal) -> str:
    """Column definition of the Null table that receives raw requests of ``signal``."""
    if signal == "traces":
        span = (
            "Tuple(trace_id String, span_id String, trace_state String, parent_span_id String, "
            f"flags UInt32, name String, kind {_enum(trace_pb2.Span.SpanKind.DESCRIPTOR)}, "
            "start_time_unix_nano UInt64, end_time_unix_nano UInt64, "
            f"attributes {_ATTRIBUTES}, "
            f"events Array(Tuple(time_unix_nano UInt64, name String, attributes {_ATTRIBUTES})), "
            "links Array(Tuple(trace_id String, span_id String, trace_state String, "
            f"attributes {_ATTRIBUTES})), "
            f"status Tuple(message String, code {_enum(trace_pb2.Status.StatusCode.DESCRIPTOR)}))"
        )
        scope_items = f"spans Array({span})"
        outer, inner = "resource_spans", "scope_spans"
    elif signal == "metrics":
        return _metrics_columns()
    else:
        record = (
            "Tuple(time_unix_nano UInt64, observed_time_unix_nano UInt64, "
            "severity_number Int32, severity_text String, "
            f"body {_ANY_VALUE}, attributes {_ATTRIBUTES}, flags UInt32, "
            "trace_id String, span_id String, event_name String)"
        )
        scope_items = f"log_records Array({record})"
        outer, inner = "resource_logs", "scope_logs"
    return (
        f"{outer} Array(Tuple(resource {_RESOURCE}, schema_url String, "
        f"{inner} Array(Tuple(scope {_SCOPE}, schema_url String, {scope_items}))))"
    )


def _metrics_columns() -> str:
    """The metrics request as ClickHouse reads it. Numbers that OTLP keeps in a oneof
    (``as_double`` / ``as_int``) arrive as two columns, the unset one 0, so their sum is the
    value; the histograms' optional ``sum`` / ``min`` / ``max`` arrive as 0 when unset, as the
    exporter stores them."""
    times = "start_time_unix_nano UInt64, time_unix_nano UInt64"
    exemplars = (
        f"exemplars Array(Tuple(filtered_attributes {_ATTRIBUTES}, time_unix_nano UInt64, "
        "as_double Float64, as_int Int64, span_id String, trace_id String))"
    )
    number = (
        f"Tuple(attributes {_ATTRIBUTES}, {times}, as_double Float64, as_int Int64, "
        f"{exemplars}, flags UInt32)"
    )
    histogram = (
        f"Tuple(attributes {_ATTRIBUTES}, {times}, count UInt64, sum Float64, "
        f"bucket_counts Array(UInt64), explicit_bounds Array(Float64), {exemplars}, "
        "flags UInt32, min Float64, max Float64)"
    )
    buckets = "Tuple(offset Int32, bucket_counts Array(UInt64))"
    exponential = (
        f"Tuple(attributes {_ATTRIBUTES}, {times}, count UInt64, sum Float64, scale Int32, "
        f"zero_count UInt64, positive {buckets}, negative {buckets}, flags UInt32, "
        f"{exemplars}, min Float64, max Float64)"
    )
    summary = (
        f"Tuple(attributes {_ATTRIBUTES}, {times}, count UInt64, sum Float64, "
        "quantile_values Array(Tuple(quantile Float64, value Float64)), flags UInt32)"
    )
    temporality = f"aggregation_temporality {_enum(metrics_pb2.AggregationTemporality.DESCRIPTOR)}"
    metric = (
        "Tuple(name String, description String, unit String, "
        f"gauge Tuple(data_points Array({number})), "
        f"sum Tuple(data_points Array({number}), {temporality}, is_monotonic Bool), "
        f"histogram Tuple(data_points Array({histogram}), {temporality}), "
        f"exponential_histogram Tuple(data_points Array({exponential}), {temporality}), "
        f"summary Tuple(data_points Array({summary})))"
    )
    scope = (
        f"Tuple(name String, version String, attributes {_ATTRIBUTES}, "
        "dropped_attributes_count UInt32)"
    )
    return (
        f"resource_metrics Array(Tuple(resource {_RESOURCE}, schema_url String, "
        f"scope_metrics Array(Tuple(scope {scope}, schema_url String, metrics Array({metric})))))"
    )


_OUTER: dict[Signal, str] = {
    "traces": "resource_spans",
    "logs": "resource_logs",
    "metrics": "resource_metrics",
}


def ingest_column_name(signal: Signal) -> str:
    return _OUTER[signal]
