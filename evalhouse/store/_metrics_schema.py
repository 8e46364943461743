"""DDL of the OTLP metrics tables and the views that fill them from raw export requests.

The five tables have the columns, types, ordering and indexes of the OpenTelemetry Collector
ClickHouse exporter's metrics tables (``exporter/clickhouseexporter/internal/sqltemplates/
metrics_*_table.sql`` in opentelemetry-collector-contrib, the layout of v0.160.0 on: ``DateTime``
times, ``LowCardinality`` metric names, rows ordered by hour and attribute hash), so the
exporter can write into tables evalhouse created and Grafana's OTel metrics queries work.

Values are spelled as the exporter writes them: integer points as Float64, unset optional
histogram ``Sum`` / ``Min`` / ``Max`` as 0, ``AggregationTemporality`` as the OTLP enum number,
ids as lower-case hex, attribute maps as in ``otel_traces``.

Each column is declared once, with its type and the expression that computes it from the
flattened request, so the table and its view cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalhouse.store._schema import (
    Topology,
    _hex,
    _map_of,
    dedup_settings,
    ingest_table,
    ingest_table_name,
)

# One metric series (a resource's metric with one set of attributes) stays on one shard.
METRICS_SHARDING_KEY = "cityHash64(ResourceAttributes, MetricName, Attributes)"

_MAP = "Map(LowCardinality(String), String)"
_Z = "CODEC(ZSTD(1))"


@dataclass(frozen=True)
class _Column:
    """A table column (``type``) and what the view selects for it (``expression``, over
    ``rm`` the resource, ``sm`` the scope, ``m`` the metric and ``dp`` the data point).
    A ``Nested`` column is declared whole and selected by its subcolumns."""

    name: str
    type: str | None
    expression: str | None


def _seconds(nanos: str) -> str:
    """OTLP nanoseconds → the exporter's ``DateTime`` (whole seconds)."""
    return f"toDateTime(intDiv({nanos}, 1000000000), 'UTC')"


def _number(oneof: str) -> str:
    """An OTLP ``as_double`` / ``as_int`` oneof as one Float64 (the unset member reads 0)."""
    return f"{oneof}.as_double + toFloat64({oneof}.as_int)"


_HEAD = (
    _Column("ResourceAttributes", f"{_MAP} {_Z}", _map_of("rm.resource.attributes")),
    _Column("ResourceSchemaUrl", f"String {_Z}", "rm.schema_url"),
    _Column("ScopeName", f"String {_Z}", "sm.scope.name"),
    _Column("ScopeVersion", f"String {_Z}", "sm.scope.version"),
    _Column("ScopeAttributes", f"{_MAP} {_Z}", _map_of("sm.scope.attributes")),
    _Column("ScopeDroppedAttrCount", f"UInt32 {_Z}", "sm.scope.dropped_attributes_count"),
    _Column("ScopeSchemaUrl", f"String {_Z}", "sm.schema_url"),
    _Column("ServiceName", f"LowCardinality(String) {_Z}", "ResourceAttributes['service.name']"),
    _Column("MetricName", f"LowCardinality(String) {_Z}", "m.name"),
    _Column("MetricDescription", f"String {_Z}", "m.description"),
    _Column("MetricUnit", f"String {_Z}", "m.unit"),
    _Column("Attributes", f"{_MAP} {_Z}", _map_of("dp.attributes")),
    _Column("StartTimeUnix", "DateTime CODEC(Delta, ZSTD(1))", _seconds("dp.start_time_unix_nano")),
    _Column("TimeUnix", "DateTime CODEC(Delta, ZSTD(1))", _seconds("dp.time_unix_nano")),
)
_EXEMPLARS = (
    _Column(
        "Exemplars",
        f"""Nested (
        FilteredAttributes {_MAP},
        TimeUnix DateTime,
        Value Float64,
        SpanId String,
        TraceId String
    ) {_Z}""",
        None,
    ),
    _Column(
        "Exemplars.FilteredAttributes",
        None,
        "arrayMap(e -> {}, dp.exemplars)".format(_map_of("e.filtered_attributes")),
    ),
    _Column(
        "Exemplars.TimeUnix", None, f"arrayMap(e -> {_seconds('e.time_unix_nano')}, dp.exemplars)"
    ),
    _Column("Exemplars.Value", None, f"arrayMap(e -> {_number('e')}, dp.exemplars)"),
    _Column("Exemplars.SpanId", None, f"arrayMap(e -> {_hex('e.span_id')}, dp.exemplars)"),
    _Column("Exemplars.TraceId", None, f"arrayMap(e -> {_hex('e.trace_id')}, dp.exemplars)"),
)
_FLAGS = _Column("Flags", f"UInt32 {_Z}", "dp.flags")
_COUNT_SUM = (
    _Column("Count", "UInt64 CODEC(Delta, ZSTD(1))", "dp.count"),
    _Column("Sum", f"Float64 {_Z}", "dp.sum"),
)
_MIN_MAX = (
    _Column("Min", f"Float64 {_Z}", "dp.min"),
    _Column("Max", f"Float64 {_Z}", "dp.max"),
)


def _temporality(kind: str) -> _Column:
    return _Column(
        "AggregationTemporality", f"Int32 {_Z}", f"toInt32(m.{kind}.aggregation_temporality)"
    )


# Table name → (the OTLP metric kind it holds, its columns after the common head).
_TABLES: dict[str, tuple[str, tuple[_Column, ...]]] = {
    "otel_metrics_gauge": (
        "gauge",
        (_Column("Value", f"Float64 {_Z}", _number("dp")), _FLAGS, *_EXEMPLARS),
    ),
    "otel_metrics_sum": (
        "sum",
        (
            _Column("Value", f"Float64 {_Z}", _number("dp")),
            _FLAGS,
            *_EXEMPLARS,
            _temporality("sum"),
            _Column("IsMonotonic", "Boolean CODEC(Delta, ZSTD(1))", "m.sum.is_monotonic"),
        ),
    ),
    "otel_metrics_histogram": (
        "histogram",
        (
            *_COUNT_SUM,
            _Column("BucketCounts", f"Array(UInt64) {_Z}", "dp.bucket_counts"),
            _Column("ExplicitBounds", f"Array(Float64) {_Z}", "dp.explicit_bounds"),
            *_EXEMPLARS,
            _FLAGS,
            *_MIN_MAX,
            _temporality("histogram"),
        ),
    ),
    "otel_metrics_exponential_histogram": (
        "exponential_histogram",
        (
            *_COUNT_SUM,
            _Column("Scale", f"Int32 {_Z}", "dp.scale"),
            _Column("ZeroCount", f"UInt64 {_Z}", "dp.zero_count"),
            _Column("PositiveOffset", f"Int32 {_Z}", "dp.positive.offset"),
            _Column("PositiveBucketCounts", f"Array(UInt64) {_Z}", "dp.positive.bucket_counts"),
            _Column("NegativeOffset", f"Int32 {_Z}", "dp.negative.offset"),
            _Column("NegativeBucketCounts", f"Array(UInt64) {_Z}", "dp.negative.bucket_counts"),
            *_EXEMPLARS,
            _FLAGS,
            *_MIN_MAX,
            _temporality("exponential_histogram"),
        ),
    ),
    "otel_metrics_summary": (
        "summary",
        (
            *_COUNT_SUM,
            _Column(
                "ValueAtQuantiles",
                f"""Nested (
        Quantile Float64,
        Value Float64
    ) {_Z}""",
                "",
            ),
            _Column(
                "ValueAtQuantiles.Quantile", None, "arrayMap(q -> q.quantile, dp.quantile_values)"
            ),
            _Column("ValueAtQuantiles.Value", None, "arrayMap(q -> q.value, dp.quantile_values)"),
            _FLAGS,
        ),
    ),
}
METRICS_TABLES = tuple(_TABLES)

_INDEXES = ",\n".join(
    [
        f"    INDEX idx_{prefix}_{part} map{part.title()}s({column}) "
        "TYPE bloom_filter(0.01) GRANULARITY 1"
        for prefix, column in (
            ("res_attr", "ResourceAttributes"),
            ("scope_attr", "ScopeAttributes"),
            ("attr", "Attributes"),
        )
        for part in ("key", "value")
    ]
    + ["    INDEX idx_time_minmax TimeUnix TYPE minmax GRANULARITY 1"]
)


def metrics_table(name: str, topology: Topology) -> str:
    """One metrics table (its ``_local`` half on a cluster)."""
    _, columns = _TABLES[name]
    declared = ",\n".join(f"    {c.name} {c.type}" for c in (*_HEAD, *columns) if c.type)
    return f"""CREATE TABLE IF NOT EXISTS {topology.local(name)}{topology.on_cluster} (
{declared},
{_INDEXES}
) ENGINE = {topology.engine()}
PARTITION BY toDate(TimeUnix)
ORDER BY (ServiceName, MetricName, toStartOfHour(TimeUnix), cityHash64(Attributes), TimeUnix)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{topology.dedup_setting()}"""


def metrics_view(name: str, topology: Topology) -> str:
    """The view that flattens the data points of one metric kind into table ``name``.

    Every request goes through all five views; a metric sets one kind, so the others find
    no data points in it. On a cluster the view writes through the Distributed table.
    """
    kind, columns = _TABLES[name]
    selected = ",\n".join(
        f"    {c.expression} AS `{c.name}`" for c in (*_HEAD, *columns) if c.expression
    )
    return f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {name}_mv{topology.on_cluster} TO {name} AS
SELECT
{selected}
FROM {ingest_table_name("metrics")}
ARRAY JOIN resource_metrics AS rm ARRAY JOIN rm.scope_metrics AS sm ARRAY JOIN sm.metrics AS m
ARRAY JOIN m.{kind}.data_points AS dp"""


def metrics_tables(topology: Topology) -> list[str]:
    """Migration 12: the five metrics tables, the Null table that receives OTLP metrics
    requests, and the views between them."""
    statements: list[str] = []
    for name in METRICS_TABLES:
        statements += [
            metrics_table(name, topology),
            *dedup_settings(name, topology),
            *topology.distributed(name, METRICS_SHARDING_KEY),
        ]
    statements.append(ingest_table("metrics", topology))
    statements += [metrics_view(name, topology) for name in METRICS_TABLES]
    return statements
