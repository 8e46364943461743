"""DDL for the tables evalhouse owns, templated for one server/chDB or a cluster.

``otel_traces`` and ``otel_logs`` follow the OpenTelemetry Collector ClickHouse exporter's
templates (exporter/clickhouseexporter/internal/sqltemplates in opentelemetry-collector-contrib):
same column names, types and value spellings (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), so
Grafana's ClickHouse trace views work and the exporter can write into them.

chDB rejects Replicated engines and ``ON CLUSTER``; :class:`Topology` picks the engine clause.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalhouse.store._client import quote_identifier
from evalhouse.store._normalise import NORMALISED_COLUMNS
from evalhouse.store._otlp import Signal, ingest_column_name, ingest_columns

# Remembered insert blocks per table: a retried insert (same token) is dropped by ClickHouse.
DEDUP_WINDOW = 10_000


@dataclass(frozen=True)
class Topology:
    """Where the tables live: one server (or chDB), or a named cluster."""

    cluster: str | None = None

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_identifier(self.cluster)}" if self.cluster else ""

    def engine(self, family: str = "MergeTree") -> str:
        if self.cluster:
            return (
                f"Replicated{family}('/clickhouse/tables/{{shard}}/{{database}}/{{table}}', "
                "'{replica}')"
            )
        return f"{family}()"

    def dedup_setting(self) -> str:
        # Replicated tables deduplicate by default; plain MergeTree needs a window.
        return "" if self.cluster else f", non_replicated_deduplication_window = {DEDUP_WINDOW}"


def _map_of(array: str) -> str:
    """OTLP KeyValue array → Map(LowCardinality(String), String), values as the exporter
    renders them (strings as is, ints/doubles in decimal, bools true/false, bytes base64)."""
    value = _any_value("kv.value")
    return (
        f"CAST(mapFromArrays(arrayMap(kv -> kv.key, {array}), arrayMap(kv -> {value}, {array})),"
        " 'Map(LowCardinality(String), String)')"
    )


def _any_value(v: str) -> str:
    return (
        f"multiIf({v}.value = 'string_value', {v}.string_value, "
        f"{v}.value = 'int_value', toString({v}.int_value), "
        f"{v}.value = 'double_value', toString({v}.double_value), "
        f"{v}.value = 'bool_value', if({v}.bool_value, 'true', 'false'), "
        f"{v}.value = 'bytes_value', base64Encode({v}.bytes_value), '')"
    )


def _hex(expr: str) -> str:
    return f"lower(hex({expr}))"


def _nanos(expr: str) -> str:
    return f"fromUnixTimestamp64Nano(toInt64({expr}), 'UTC')"


def traces_table(topology: Topology) -> str:
    return f"""CREATE TABLE IF NOT EXISTS otel_traces{topology.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1
) ENGINE = {topology.engine()}
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{topology.dedup_setting()}"""


def dedup_settings(table: str, topology: Topology) -> list[str]:
    """Make a table (possibly created by the OTel exporter) drop retried insert blocks."""
    if topology.cluster:
        return []
    return [
        f"ALTER TABLE {table}{topology.on_cluster} "
        f"MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW}"
    ]


def normalised_columns(topology: Topology) -> list[str]:
    return [
        f"ALTER TABLE otel_traces{topology.on_cluster} ADD COLUMN IF NOT EXISTS "
        f"{column.name} {column.type} MATERIALIZED {column.expression} "
        f"COMMENT '{column.doc.replace(chr(39), chr(39) * 2)}'"
        for column in NORMALISED_COLUMNS
    ]


def trace_id_lookup(topology: Topology) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts{topology.on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {topology.engine("AggregatingMergeTree")}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv{topology.on_cluster}
TO otel_traces_trace_id_ts AS
SELECT TraceId, min(toDateTime(Timestamp)) AS Start, max(toDateTime(Timestamp)) AS End
FROM otel_traces WHERE TraceId != '' GROUP BY TraceId""",
    ]


def logs_table(topology: Topology) -> str:
    return f"""CREATE TABLE IF NOT EXISTS otel_logs{topology.on_cluster} (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TimestampTime DateTime DEFAULT toDateTime(Timestamp),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    TraceFlags UInt8,
    SeverityText LowCardinality(String) CODEC(ZSTD(1)),
    SeverityNumber UInt8,
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    Body String CODEC(ZSTD(1)),
    ResourceSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeSchemaUrl LowCardinality(String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion LowCardinality(String) CODEC(ZSTD(1)),
    ScopeAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    LogAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    EventName String CODEC(ZSTD(1)),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_key mapKeys(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_log_attr_value mapValues(LogAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_body Body TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = {topology.engine()}
PARTITION BY toDate(TimestampTime)
PRIMARY KEY (ServiceName, TimestampTime)
ORDER BY (ServiceName, TimestampTime, Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1{topology.dedup_setting()}"""


def ingest_table_name(signal: Signal) -> str:
    return f"evalhouse_ingest_{signal}"


def ingest_tables(signal: Signal, topology: Topology) -> list[str]:
    """Null table receiving raw OTLP requests, and the view flattening them into rows."""
    table = ingest_table_name(signal)
    create = (
        f"CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} "
        f"({ingest_columns(signal)}) ENGINE = Null"
    )
    outer = ingest_column_name(signal)
    if signal == "traces":
        body = f"""SELECT
    {_nanos("s.start_time_unix_nano")} AS Timestamp,
    {_hex("s.trace_id")} AS TraceId,
    {_hex("s.span_id")} AS SpanId,
    {_hex("s.parent_span_id")} AS ParentSpanId,
    s.trace_state AS TraceState,
    s.name AS SpanName,
    toString(s.kind) AS SpanKind,
    ResourceAttributes['service.name'] AS ServiceName,
    {_map_of("rs.resource.attributes")} AS ResourceAttributes,
    ss.scope.name AS ScopeName,
    ss.scope.version AS ScopeVersion,
    {_map_of("s.attributes")} AS SpanAttributes,
    s.end_time_unix_nano - s.start_time_unix_nano AS Duration,
    toString(s.status.code) AS StatusCode,
    s.status.message AS StatusMessage,
    arrayMap(e -> {_nanos("e.time_unix_nano")}, s.events) AS `Events.Timestamp`,
    arrayMap(e -> e.name, s.events) AS `Events.Name`,
    arrayMap(e -> {_map_of("e.attributes")}, s.events) AS `Events.Attributes`,
    arrayMap(l -> {_hex("l.trace_id")}, s.links) AS `Links.TraceId`,
    arrayMap(l -> {_hex("l.span_id")}, s.links) AS `Links.SpanId`,
    arrayMap(l -> l.trace_state, s.links) AS `Links.TraceState`,
    arrayMap(l -> {_map_of("l.attributes")}, s.links) AS `Links.Attributes`
FROM {table}
ARRAY JOIN {outer} AS rs ARRAY JOIN rs.scope_spans AS ss ARRAY JOIN ss.spans AS s"""
        target = "otel_traces"
    else:
        body = f"""SELECT
    {_nanos("if(r.time_unix_nano = 0, r.observed_time_unix_nano, r.time_unix_nano)")}
        AS Timestamp,
    {_hex("r.trace_id")} AS TraceId,
    {_hex("r.span_id")} AS SpanId,
    toUInt8(bitAnd(r.flags, 255)) AS TraceFlags,
    r.severity_text AS SeverityText,
    toUInt8(greatest(0, least(255, r.severity_number))) AS SeverityNumber,
    ResourceAttributes['service.name'] AS ServiceName,
    {_any_value("r.body")} AS Body,
    rs.schema_url AS ResourceSchemaUrl,
    {_map_of("rs.resource.attributes")} AS ResourceAttributes,
    sl.schema_url AS ScopeSchemaUrl,
    sl.scope.name AS ScopeName,
    sl.scope.version AS ScopeVersion,
    {_map_of("sl.scope.attributes")} AS ScopeAttributes,
    {_map_of("r.attributes")} AS LogAttributes,
    r.event_name AS EventName
FROM {table}
ARRAY JOIN {outer} AS rs ARRAY JOIN rs.scope_logs AS sl ARRAY JOIN sl.log_records AS r"""
        target = "otel_logs"
    view = (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS {table}_mv{topology.on_cluster} "
        f"TO {target} AS {body}"
    )
    return [create, view]
