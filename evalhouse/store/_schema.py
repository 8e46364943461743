"""DDL for the tables evalhouse owns, templated for one server/chDB or a cluster.

``otel_traces`` and ``otel_logs`` follow the OpenTelemetry Collector ClickHouse exporter's
templates (exporter/clickhouseexporter/internal/sqltemplates in opentelemetry-collector-contrib):
same column names, types and value spellings (``SPAN_KIND_SERVER``, ``STATUS_CODE_ERROR``), so
Grafana's ClickHouse trace views work and the exporter can write into them.

chDB rejects Replicated engines and ``ON CLUSTER``; :class:`Topology` picks the engine clause.
On a cluster every data table is a sharded, replicated ``<name>_local`` table plus a
``Distributed`` table under the plain name, so readers and writers keep using the plain names.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalhouse.store._client import quote_identifier
from evalhouse.store._normalise import MIGRATION_3_COLUMNS, MIGRATION_11_COLUMNS
from evalhouse.store._otlp import Signal, ingest_column_name, ingest_columns

# Remembered insert blocks per table: a retried insert (same token) is dropped by ClickHouse.
DEDUP_WINDOW = 10_000

# Keeper paths. Sharded tables: one replica set per shard. Bookkeeping tables: one replica set
# across the whole cluster (every node holds all of it, and a deduplicated insert is decided
# once, in Keeper) - so the {replica} macro must be unique cluster-wide, as it usually is.
SHARDED_PATH = "/clickhouse/tables/{shard}/{database}/{table}"
GLOBAL_PATH = "/clickhouse/tables/global/{database}/{table}"

# Sharding keys: deterministic functions of the row, so a retried block splits into the same
# per-shard blocks and each shard drops its copy by the deduplication token. Spans (and
# everything keyed by trace) shard by trace id, so one trace, its computed row and its scores
# sit on one shard: the lookup view and the rows/scores join stay shard-local.
TRACE_SHARDING_KEY = "cityHash64(TraceId)"
# Logs of a trace go where its spans are; logs without a trace spread over all shards.
LOG_SHARDING_KEY = "if(TraceId = '', cityHash64(ServiceName, Timestamp, Body), cityHash64(TraceId))"


@dataclass(frozen=True)
class Topology:
    """Where the tables live: one server (or chDB), or a named cluster.

    >>> Topology().engine("ReplacingMergeTree", "version")
    'ReplacingMergeTree(version)'
    >>> Topology("c").local("scores"), Topology().local("scores")
    ('scores_local', 'scores')
    """

    cluster: str | None = None

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {quote_identifier(self.cluster)}" if self.cluster else ""

    def local(self, name: str) -> str:
        """The table holding the rows of ``name`` on this node: ``<name>_local`` on a cluster."""
        return f"{name}_local" if self.cluster else name

    def engine(self, family: str = "MergeTree", *args: str, sharded: bool = True) -> str:
        """The engine clause; on a cluster ``Replicated<family>`` with a Keeper path.

        ``sharded=False`` is for bookkeeping tables that must be whole and identical on every
        node (claims, checkpoints, the migration ledger): no ``{shard}`` in the path.

        >>> Topology("c").engine("MergeTree", sharded=False)
        "ReplicatedMergeTree('/clickhouse/tables/global/{database}/{table}', '{replica}')"
        """
        extra = ", ".join(args)
        if not self.cluster:
            return f"{family}({extra})"
        path = SHARDED_PATH if sharded else GLOBAL_PATH
        return f"Replicated{family}('{path}', '{{replica}}'{', ' + extra if extra else ''})"

    def distributed(self, name: str, sharding_key: str | None = None) -> list[str]:
        """``CREATE`` of the Distributed table ``name`` over ``<name>_local``; none off-cluster.

        >>> Topology().distributed("scores", "cityHash64(trace_id)")
        []
        """
        if not self.cluster:
            return []
        key = f", {sharding_key}" if sharding_key else ""
        return [
            f"CREATE TABLE IF NOT EXISTS {name}{self.on_cluster} AS {self.local(name)}\n"
            f"ENGINE = Distributed({quote_identifier(self.cluster)}, currentDatabase(), "
            f"{self.local(name)}{key})"
        ]

    def on_both(self, name: str, alter: str) -> list[str]:
        """``ALTER TABLE <name> <alter>`` for the local table and, on a cluster, the
        Distributed one too (added columns must be selectable through it)."""
        tables = [self.local(name), name] if self.cluster else [name]
        return [f"ALTER TABLE {table}{self.on_cluster} {alter}" for table in tables]

    def insert_settings(self) -> dict[str, int]:
        """Settings every insert needs here; the Store adds them to its writes.

        On a cluster: the Distributed table writes to the shards before it answers, so an
        acknowledged insert is stored and the deduplication token reaches the shards (a
        background send would acknowledge from the local queue and lose the token's effect),
        and blocks written by materialized views (the OTLP ingest views) are deduplicated too.
        """
        if not self.cluster:
            return {}
        return {
            "distributed_foreground_insert": 1,
            "deduplicate_blocks_in_dependent_materialized_views": 1,
            "insert_deduplicate": 1,
            # Tokens and foreground sends need synchronous inserts (servers >= 26.2 default
            # to async ones); the collector batches on its own.
            "async_insert": 0,
        }

    def consistent_read_settings(self) -> dict[str, int]:
        """Settings for reads of bookkeeping tables that must see the latest insert (claims,
        checkpoints, the ledger): on a cluster a lagging replica must not answer."""
        return {"select_sequential_consistency": 1} if self.cluster else {}

    def dedup_setting(self) -> str:
        """Appended to a table's SETTINGS: replicated tables deduplicate by default (10,000
        blocks on current servers); plain MergeTree needs a window."""
        return "" if self.cluster else f", non_replicated_deduplication_window = {DEDUP_WINDOW}"

    def dedup_clause(self) -> str:
        """:meth:`dedup_setting` for a table without other settings."""
        setting = self.dedup_setting()
        return f" SETTINGS {setting.removeprefix(', ')}" if setting else ""


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
    """The span table (its ``_local`` half on a cluster; see :func:`traces_tables`)."""
    return f"""CREATE TABLE IF NOT EXISTS {topology.local("otel_traces")}{topology.on_cluster} (
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


def traces_tables(topology: Topology) -> list[str]:
    """Migration 1: the span table, and on a cluster the Distributed ``otel_traces``."""
    return [
        traces_table(topology),
        *dedup_settings("otel_traces", topology),
        *topology.distributed("otel_traces", TRACE_SHARDING_KEY),
    ]


def dedup_settings(table: str, topology: Topology) -> list[str]:
    """Make a table (possibly created by the OTel exporter) drop retried insert blocks."""
    if topology.cluster:
        return []
    return [
        f"ALTER TABLE {table}{topology.on_cluster} "
        f"MODIFY SETTING non_replicated_deduplication_window = {DEDUP_WINDOW}"
    ]


# Parts below this size are written "compact" (one file) rather than "wide" (files per
# column): a 25,000-span insert of GenAI spans is ~11 MB, just over ClickHouse's 10 MB default.
# Compact inserts measured ~10% faster with ~80 MiB less memory per concurrent insert
# (benchmarks/ingest.py); merged parts past it are wide as usual.
WIDE_PART_BYTES = 64 * 1024**2


def compact_inserts(topology: Topology) -> list[str]:
    """Migration 10: insert-sized parts of ``otel_traces`` are written compact."""
    return [
        f"ALTER TABLE {topology.local('otel_traces')}{topology.on_cluster} "
        f"MODIFY SETTING min_bytes_for_wide_part = {WIDE_PART_BYTES}"
    ]


def normalised_columns(topology: Topology) -> list[str]:
    """Migration 3, with the expressions it was released with (later ones MODIFY them)."""
    # On a cluster the Distributed table declares the columns as MATERIALIZED too: it does not
    # send them with inserts (each shard computes its own) and selects them from the shards.
    return [
        statement
        for column in MIGRATION_3_COLUMNS
        for statement in topology.on_both(
            "otel_traces", f"ADD COLUMN IF NOT EXISTS {column.declaration()}"
        )
    ]


def trace_id_lookup(topology: Topology) -> list[str]:
    """Trace id -> (start, end). On a cluster the view sits on each shard's ``_local`` span
    table (a Distributed table has no inserts of its own to feed it) and fills that shard's
    ``_local`` lookup table: a trace lives on one shard, so its min/max is complete there."""
    table = "otel_traces_trace_id_ts"
    return [
        f"""CREATE TABLE IF NOT EXISTS {topology.local(table)}{topology.on_cluster} (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = {topology.engine("AggregatingMergeTree")}
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv{topology.on_cluster}
TO {topology.local(table)} AS
SELECT TraceId, min(toDateTime(Timestamp)) AS Start, max(toDateTime(Timestamp)) AS End
FROM {topology.local("otel_traces")} WHERE TraceId != '' GROUP BY TraceId""",
        *topology.distributed(table, TRACE_SHARDING_KEY),
    ]


def logs_table(topology: Topology) -> str:
    """The log table (its ``_local`` half on a cluster; see :func:`logs_tables`)."""
    return f"""CREATE TABLE IF NOT EXISTS {topology.local("otel_logs")}{topology.on_cluster} (
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


def logs_tables(topology: Topology) -> list[str]:
    """Migration 4: the log table, and on a cluster the Distributed ``otel_logs``."""
    return [
        logs_table(topology),
        *dedup_settings("otel_logs", topology),
        *topology.distributed("otel_logs", LOG_SHARDING_KEY),
    ]


def ingest_table_name(signal: Signal) -> str:
    return f"evalhouse_ingest_{signal}"


def ingest_table(signal: Signal, topology: Topology) -> str:
    """The Null table that receives raw OTLP requests of ``signal`` (ClickHouse parses them);
    it stores nothing, its materialized views flatten each insert into the tables."""
    return (
        f"CREATE TABLE IF NOT EXISTS {ingest_table_name(signal)}{topology.on_cluster} "
        f"({ingest_columns(signal)}) ENGINE = Null"
    )


def ingest_tables(signal: Signal, topology: Topology) -> list[str]:
    """Null table receiving raw OTLP spans or logs, and the view flattening them into rows
    (metrics: :func:`evalhouse.store._metrics_schema.metrics_tables`).

    The view writes into the plain ``otel_traces`` / ``otel_logs``: on a cluster the
    Distributed tables, which route each span to its trace's shard.
    """
    if signal == "metrics":
        raise ValueError("metrics have five tables and views: use metrics_tables()")
    table = ingest_table_name(signal)
    create = ingest_table(signal, topology)
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


def openinference_models(topology: Topology) -> list[str]:
    """Migration 11: ``LlmRequestModel`` / ``LlmResponseModel`` take OpenInference's requested
    model from ``llm.invocation_parameters`` and its answered one from ``llm.model_name``.

    ``MODIFY COLUMN`` only changes the expression, so parts stored before it keep the old
    values (and parts the exporter wrote before migration 3 compute the new ones on read):
    one table would mix both meanings, and grouping by model would still split OpenInference
    rows. ``MATERIALIZE COLUMN`` rewrites the two columns in every part once (reading
    ``SpanAttributes``; other columns are left alone), and waits, like migration 6: on a large
    table run it at a quiet hour.
    """
    local = f"ALTER TABLE {topology.local('otel_traces')}{topology.on_cluster}"
    rewrite = ", ".join(f"MATERIALIZE COLUMN {column.name}" for column in MIGRATION_11_COLUMNS)
    return [
        *(
            statement
            for column in MIGRATION_11_COLUMNS
            for statement in topology.on_both(
                "otel_traces", f"MODIFY COLUMN {column.declaration()}"
            )
        ),
        f"{local} {rewrite} SETTINGS mutations_sync = 2",
    ]
