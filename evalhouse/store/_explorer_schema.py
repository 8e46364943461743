"""DDL of migration 13: what the production explorer reads (``docs/sql.md``, "Traces").
Migration 15 rebuilt ``trace_summaries`` in finer granules without the ``kind`` index
(``_summaries_layout.py``).

A page of traces must cost what it shows plus a bounded time window, never a scan of the span
table (``benchmarks/explorer.py``). On 20M spans a 24 h trace list computed from
``otel_traces`` took 3.2 s (``GROUP BY TraceId``), so the explorer reads tables written once a
trace is quiet by the evaluator daemon (``evaluators/_summaries.py``), which applies the rules
experiments use (leaf model calls, pricing, the value rule) — rules that live in Python and
cannot run in a materialized view on ``otel_traces``:

- ``trace_summaries``: one row per trace, ordered by ``(start_time, trace_id)``, so "newest
  first" reads the last granules in order (10 ms at 5M traces, measured) and a filter on a
  skip-indexed column (models, status, session, user, tags) stops after a page of matches.
  A re-summary (late spans) writes the new row and a tombstone copy of the previous one
  (``is_deleted = 1``, one version lower): readers that skip ``FINAL`` (it cost 82 ms against
  10 ms on 5M traces) keep the highest version of each key, which is right whichever filter
  picked the rows. ``search_text`` (inputs, outputs and the messages of model calls, capped)
  carries ClickHouse's text index: a search reads the granules holding its words.
- ``trace_rank``: ``(metric, -value, -start, trace_id)`` for the sortable metrics, so "most
  expensive first" is an in-order read of the first granules (9 ms at 5M traces against
  580 ms for a top-k over the window of ``trace_summaries``).
- ``usage_rollup``: per minute and per hour (per hour for users) sums and latency
  t-digests, per service, per (provider, model) and per user, so a day of usage merges a few
  hundred rows whatever the traffic. Rows carry a sign: a re-summary subtracts what the
  trace added before.
- ``session_traces``: each session's traces ordered by session, so a session opens by its
  primary key whatever the table holds.
- ``trace_summaries_in``: the Null table the daemon inserts into; its materialized views fill
  the tables above in one insert, so they never disagree.
- views ``traces`` and ``sessions``: the SQL contract (``FINAL``, scores joined).
"""

from __future__ import annotations

from evalhouse.store._schema import Topology

__all__ = [
    "CALL_COLUMNS",
    "RANKED_METRICS",
    "SUMMARIES_INPUT",
    "SUMMARY_CHECKPOINTS",
    "SUMMARY_COLUMNS",
    "TRACE_COLUMNS",
    "explorer_tables",
]

SUMMARIES_INPUT = "trace_summaries_in"
SUMMARY_CHECKPOINTS = "trace_summary_checkpoints"
# Metrics that ``trace_rank`` keeps in descending order (``GET /api/traces?sort=...``).
RANKED_METRICS = ("duration_ms", "cost_usd", "total_tokens", "error_count")

_SHARDING_KEY = "cityHash64(trace_id)"
_Z = "CODEC(ZSTD(1))"
_TIME = "DateTime64(9, 'UTC')"

# Every column of a summary, in insert order; ``trace_summaries_in`` adds ``sign``.
SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("trace_id", f"String {_Z}"),
    ("start_time", f"{_TIME} CODEC(Delta(8), ZSTD(1))"),
    ("end_time", f"{_TIME} CODEC(Delta(8), ZSTD(1))"),
    ("duration_ms", "Float64"),
    ("kind", "LowCardinality(String)"),
    ("root_span_id", f"String {_Z}"),
    ("root_name", "LowCardinality(String)"),
    ("service_name", "LowCardinality(String)"),
    ("session_id", f"String {_Z}"),
    ("user_id", f"String {_Z}"),
    ("tags", f"Array(String) {_Z}"),
    ("status", "LowCardinality(String)"),
    ("span_count", "UInt32"),
    ("error_count", "UInt32"),
    ("llm_calls", "UInt32"),
    ("models", "Array(LowCardinality(String))"),
    ("providers", "Array(LowCardinality(String))"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("cache_read_tokens", "UInt64"),
    ("cache_write_tokens", "UInt64"),
    ("reasoning_tokens", "UInt64"),
    ("total_tokens", "UInt64"),
    ("cost_usd", "Nullable(Float64)"),
    ("cost_known_usd", "Float64"),
    ("cost_provenance", "LowCardinality(String)"),
    ("price_data_version", "LowCardinality(String)"),
    ("input_preview", f"String {_Z}"),
    ("output_preview", f"String {_Z}"),
    ("search_text", f"String {_Z}"),
    ("experiment_id", f"String {_Z}"),
    ("inserted_watermark", "DateTime64(3, 'UTC')"),
    ("summarized_at", "DateTime64(3, 'UTC')"),
    ("version", "UInt64"),
    ("is_deleted", "UInt8"),
)
# One entry per leaf model call of the trace (what usage by model adds up).
CALL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("span_id", "String"),
    ("provider", "LowCardinality(String)"),
    ("model", "LowCardinality(String)"),
    ("duration_ms", "Float64"),
    ("input_tokens", "UInt64"),
    ("output_tokens", "UInt64"),
    ("total_tokens", "UInt64"),
    ("cost_usd", "Nullable(Float64)"),
    # Not counted by an earlier summary of the trace: its latency joins the percentiles.
    ("fresh", "UInt8"),
    # The first call of its (provider, model) in the trace: counts the trace once there.
    ("first", "UInt8"),
)


def _declarations() -> str:
    plain = [f"    {name} {kind}" for name, kind in SUMMARY_COLUMNS]
    nested = ", ".join(f"{name} {kind}" for name, kind in CALL_COLUMNS)
    plain.insert(-4, f"    calls Nested({nested}) {_Z}")
    return ",\n".join(plain)


# The skip indexes of ``trace_summaries`` (migration 13; migration 15 leaves out ``idx_kind``).
_INDEXES = (
    "    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1",
    "    INDEX idx_session session_id TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_user user_id TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_tags tags TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_models models TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_providers providers TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_service service_name TYPE set(256) GRANULARITY 1",
    "    INDEX idx_root_name root_name TYPE bloom_filter(0.01) GRANULARITY 1",
    "    INDEX idx_status status TYPE set(2) GRANULARITY 1",
    "    INDEX idx_kind kind TYPE set(2) GRANULARITY 1",
    "    INDEX idx_duration duration_ms TYPE minmax GRANULARITY 1",
    "    INDEX idx_cost cost_usd TYPE minmax GRANULARITY 1",
    "    INDEX idx_tokens total_tokens TYPE minmax GRANULARITY 1",
    "    INDEX idx_search search_text\n"
    "        TYPE text(tokenizer = splitByNonAlpha, preprocessor = lower(search_text))",
)


def summaries_table(
    topology: Topology, name: str, *, left_out: tuple[str, ...] = (), settings: str = ""
) -> list[str]:
    """``CREATE`` of a table of trace summaries named ``name`` (and its Distributed table on
    a cluster): the indexes but those named in ``left_out``, and MergeTree ``settings``."""
    indexes = ",\n".join(i for i in _INDEXES if not any(f"INDEX {out} " in i for out in left_out))
    tail = f"\nSETTINGS {settings}" if settings else ""
    return [
        f"""CREATE TABLE IF NOT EXISTS {topology.local(name)}{topology.on_cluster} (
{_declarations()},
{indexes}
) ENGINE = {topology.engine("ReplacingMergeTree", "version", "is_deleted")}
PARTITION BY toDate(start_time)
ORDER BY (start_time, trace_id){tail}
COMMENT 'One row per trace, written by the evaluator daemon when the trace is quiet.'""",
        *topology.distributed(name, _SHARDING_KEY),
    ]


def _rank(topology: Topology) -> list[str]:
    table = topology.local("trace_rank")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} (
    metric LowCardinality(String),
    key Float64,
    neg_start Int64,
    trace_id String {_Z},
    start_time {_TIME} CODEC(Delta(8), ZSTD(1)),
    value Nullable(Float64),
    kind LowCardinality(String),
    version UInt64,
    is_deleted UInt8
) ENGINE = {topology.engine("ReplacingMergeTree", "version", "is_deleted")}
PARTITION BY toDate(start_time)
ORDER BY (metric, key, neg_start, trace_id)
COMMENT 'Traces by metric, largest first (key = -value, NULL last): sorted trace lists.'""",
        *topology.distributed("trace_rank", _SHARDING_KEY),
    ]


def _rollup(topology: Topology) -> list[str]:
    table = topology.local("usage_rollup")
    total = "SimpleAggregateFunction(sum, Int64)"
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} (
    level LowCardinality(String),
    kind LowCardinality(String),
    bucket DateTime('UTC'),
    service_name LowCardinality(String),
    provider LowCardinality(String),
    model LowCardinality(String),
    user_id String,
    traces {total},
    errors {total},
    llm_calls {total},
    input_tokens {total},
    output_tokens {total},
    total_tokens {total},
    cost_known_usd SimpleAggregateFunction(sum, Float64),
    unpriced_calls {total},
    latency AggregateFunction(quantilesTDigestArray(0.5, 0.95, 0.99), Array(Float64))
) ENGINE = {topology.engine("AggregatingMergeTree")}
PARTITION BY toDate(bucket)
ORDER BY (level, kind, bucket, service_name, provider, model, user_id)
COMMENT 'Usage per minute (trace and call level) and per hour (user level), signed.'""",
        *topology.distributed("usage_rollup", "cityHash64(level, kind, bucket)"),
    ]


def _sessions_index(topology: Topology) -> list[str]:
    """The traces of each session, ordered by session: one session's page and totals are a
    primary-key range (a bloom filter on ``trace_summaries.session_id`` checks every granule
    of the window: 22 ms at 20M spans against 7 ms at 2M)."""
    table = topology.local("session_traces")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} (
    session_id String {_Z},
    start_time {_TIME} CODEC(Delta(8), ZSTD(1)),
    trace_id String {_Z},
    end_time {_TIME} CODEC(Delta(8), ZSTD(1)),
    user_id String {_Z},
    kind LowCardinality(String),
    total_tokens UInt64,
    cost_usd Nullable(Float64),
    cost_known_usd Float64,
    error_count UInt32,
    llm_calls UInt32,
    version UInt64,
    is_deleted UInt8
) ENGINE = {topology.engine("ReplacingMergeTree", "version", "is_deleted")}
ORDER BY (session_id, start_time, trace_id)
COMMENT 'The traces of each session (a copy of their totals), ordered by session.'""",
        *topology.distributed("session_traces", _SHARDING_KEY),
    ]


def _input(topology: Topology) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {SUMMARIES_INPUT}{topology.on_cluster} "
        f"(\n{_declarations()},\n    sign Int8) ENGINE = Null"
    )


# Rollup grains: per minute (any interval), and per hour for hourly and daily buckets, which
# merge 60 times fewer latency digests (a day of usage by model: 296 ms at 20M spans from
# minutes, measured; the digest merge is the cost).
_GRAINS = (("", "toStartOfMinute"), ("_hour", "toStartOfHour"))

# The latency samples a row adds: its model calls not counted by an earlier summary.
_FRESH_LATENCIES = "if(sign > 0, arrayFilter((d, f) -> f = 1, calls.duration_ms, calls.fresh), [])"
_SUMS = """
    sum(sign * toInt64({traces})) AS traces,
    sum(sign * toInt64({errors})) AS errors,
    sum(sign * toInt64({calls})) AS llm_calls,
    sum(sign * toInt64({input_tokens})) AS input_tokens,
    sum(sign * toInt64({output_tokens})) AS output_tokens,
    sum(sign * toInt64({total_tokens})) AS total_tokens,
    sum(sign * {cost}) AS cost_known_usd,
    sum(sign * toInt64({unpriced})) AS unpriced_calls,
    quantilesTDigestArrayState(0.5, 0.95, 0.99)({latencies}) AS latency"""


def summaries_view(name: str, topology: Topology, target: str = "trace_summaries") -> str:
    """The materialized view ``name`` that fills ``target`` from the daemon's inserts into
    ``trace_summaries_in`` (a tombstone has ``sign < 0``)."""
    columns = ",\n    ".join(
        [
            *(name for name, _ in SUMMARY_COLUMNS if name != "is_deleted"),
            *(f"calls.{name} AS `calls.{name}`" for name, _ in CALL_COLUMNS),
            "sign < 0 AS is_deleted",
        ]
    )
    head = f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name}{topology.on_cluster} TO {target} AS"
    return f"""{head}
SELECT
    {columns}
FROM {SUMMARIES_INPUT}"""


def _views(topology: Topology) -> list[str]:
    on = topology.on_cluster
    trace_sums = _SUMS.format(
        traces="1",
        errors="status = 'error'",
        calls="llm_calls",
        input_tokens="input_tokens",
        output_tokens="output_tokens",
        total_tokens="total_tokens",
        cost="cost_known_usd",
        unpriced="arrayCount(c -> c IS NULL, calls.cost_usd)",
        latencies=_FRESH_LATENCIES,
    )
    call_sums = _SUMS.format(
        traces="c.first",
        errors="c.first AND status = 'error'",
        calls="1",
        input_tokens="c.input_tokens",
        output_tokens="c.output_tokens",
        total_tokens="c.total_tokens",
        cost="ifNull(c.cost_usd, 0)",
        unpriced="c.cost_usd IS NULL",
        latencies="if(sign > 0 AND c.fresh = 1, [c.duration_ms], [])",
    )
    metrics = ", ".join(f"'{m}'" for m in RANKED_METRICS)
    values = ", ".join(f"toNullable(toFloat64({m}))" for m in RANKED_METRICS)
    return [
        summaries_view("trace_summaries_mv", topology),
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS trace_rank_mv{on} TO trace_rank AS
SELECT
    m.1 AS metric,
    if(m.2 IS NULL, inf, -assumeNotNull(m.2)) AS key,
    -toUnixTimestamp64Nano(start_time) AS neg_start,
    trace_id, start_time, m.2 AS value, kind, version, sign < 0 AS is_deleted
FROM {SUMMARIES_INPUT}
ARRAY JOIN arrayZip([{metrics}], [{values}]) AS m""",
        *(
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS usage_traces{suffix}_mv{on}
TO usage_rollup AS
SELECT 'trace{suffix}' AS level, kind, {bucket}(start_time) AS bucket, service_name,
    '' AS provider, '' AS model, '' AS user_id,{trace_sums}
FROM {SUMMARIES_INPUT}
GROUP BY kind, bucket, service_name"""
            for suffix, bucket in _GRAINS
        ),
        *(
            f"""CREATE MATERIALIZED VIEW IF NOT EXISTS usage_calls{suffix}_mv{on}
TO usage_rollup AS
SELECT 'call{suffix}' AS level, kind, {bucket}(start_time) AS bucket, service_name,
    c.provider AS provider, c.model AS model, '' AS user_id,{call_sums}
FROM {SUMMARIES_INPUT}
ARRAY JOIN calls AS c
GROUP BY kind, bucket, service_name, provider, model"""
            for suffix, bucket in _GRAINS
        ),
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS usage_users_mv{on} TO usage_rollup AS
SELECT 'user' AS level, kind, toStartOfHour(start_time) AS bucket, '' AS service_name,
    '' AS provider, '' AS model, user_id,{trace_sums}
FROM {SUMMARIES_INPUT}
GROUP BY kind, bucket, user_id""",
        f"""CREATE MATERIALIZED VIEW IF NOT EXISTS session_traces_mv{on} TO session_traces AS
SELECT session_id, start_time, trace_id, end_time, user_id, kind, total_tokens, cost_usd,
    cost_known_usd, error_count, llm_calls, version, sign < 0 AS is_deleted
FROM {SUMMARIES_INPUT}
WHERE session_id != ''""",
    ]


# Latest value per (trace, score name), every source; errors and missing values left out.
_TRACE_SCORES = """SELECT
        trace_id,
        CAST(mapFromArrays(groupArray(name), groupArray(assumeNotNull(value))),
             'Map(String, Float64)') AS scores
    FROM (
        SELECT trace_id, name, argMax(value, created_at) AS value,
               argMax(error, created_at) AS error
        FROM {scores} FINAL
        GROUP BY trace_id, name
    )
    WHERE error = '' AND value IS NOT NULL
    GROUP BY trace_id"""

# The contract's columns first (docs/sql.md), then the extra ones.
TRACE_COLUMNS = (
    "trace_id",
    "start_time",
    "end_time",
    "duration_ms",
    "root_name",
    "service_name",
    "session_id",
    "user_id",
    "tags",
    "status",
    "span_count",
    "error_count",
    "llm_calls",
    "models",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "cost_provenance",
    "input_preview",
    "output_preview",
)
_EXTRA = (
    "kind",
    "providers",
    "root_span_id",
    "experiment_id",
    "cost_known_usd",
    "price_data_version",
)


def _sql_views(topology: Topology) -> list[str]:
    on = topology.on_cluster
    selected = ",\n    ".join(
        [
            *(f"t.{c} AS {c}" for c in TRACE_COLUMNS),
            "ifNull(s.scores, map()) AS scores",
            *(f"t.{c} AS {c}" for c in _EXTRA),
        ]
    )
    scores = _TRACE_SCORES.format(scores=topology.local("scores"))
    traces = f"""CREATE VIEW IF NOT EXISTS traces{on} AS
SELECT
    {selected}
FROM trace_summaries AS t FINAL
LEFT JOIN ({scores}) AS s ON s.trace_id = t.trace_id"""
    sessions = f"""CREATE VIEW IF NOT EXISTS sessions{on} AS
SELECT
    session_id,
    min(start_time) AS start_time,
    max(end_time) AS end_time,
    count() AS traces,
    anyIf(user_id, user_id != '') AS user_id,
    sum(total_tokens) AS total_tokens,
    if(countIf(cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(cost_usd))) AS cost_usd,
    sum(error_count) AS error_count,
    avgMap(scores) AS scores,
    if(countIf(kind = 'production') > 0, 'production', 'experiment') AS kind,
    sum(llm_calls) AS llm_calls,
    sum(cost_known_usd) AS cost_known_usd
FROM traces
WHERE session_id != ''
GROUP BY session_id"""
    return [traces, sessions]


def _checkpoints(topology: Topology) -> str:
    return f"""CREATE TABLE IF NOT EXISTS {SUMMARY_CHECKPOINTS}{topology.on_cluster} (
    shard UInt16,
    watermark DateTime64(3, 'UTC'),
    worker String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_at", sharded=False)}
ORDER BY shard{topology.dedup_clause()}"""


def explorer_tables(topology: Topology) -> list[str]:
    """Every statement of migration 13, in order; each is safe to run twice."""
    return [
        *summaries_table(topology, "trace_summaries"),
        *_rank(topology),
        *_rollup(topology),
        *_sessions_index(topology),
        _input(topology),
        *_views(topology),
        _checkpoints(topology),
        *_sql_views(topology),
    ]
