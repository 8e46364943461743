"""DDL for the evaluator's output and bookkeeping (migration 6), templated like ``_schema``.

Output (the SQL contract, documented in ``docs/sql.md``):

- ``experiment_row_metrics``: one computed row per experiment trace, replaced when the row is
  recomputed (late spans, repricing): ``ReplacingMergeTree(version, is_deleted)``.
- ``scores``: one row per experiment row x scorer x score name, idempotent
  (``ReplacingMergeTree(created_at)``: a re-score replaces the older value).
- views ``experiment_rows`` (rows with their scores) and ``experiments`` (one line per
  experiment).

Bookkeeping: ``evaluator_claims`` (shard leases; a claim is a one-row insert whose
deduplication token is the claim key, so the first insert wins), ``evaluator_checkpoints``
(per-shard progress) and ``evaluator_workers`` (heartbeats, to share shards fairly).

``otel_traces`` gets ``InsertedAt``: when ClickHouse stored the span. It tells the daemon when
a trace has gone quiet and which traces changed since its checkpoint, whoever wrote the span.

On a cluster the output tables are sharded like the spans (by trace id) behind Distributed
tables; the bookkeeping tables are one unsharded replica set, whole on every node, so a claim's
deduplication is decided once, in Keeper, and every worker reads the same claims.
"""

from __future__ import annotations

from evalhouse.store._schema import Topology

__all__ = ["EVALUATOR_SCOPE", "SHARDS", "evaluator_tables"]

# Spans the daemon writes itself (scorer runs) carry this instrumentation scope.
EVALUATOR_SCOPE = "evalhouse.evaluator"
# Work is split by cityHash64(TraceId) % SHARDS; every daemon must use the same number.
SHARDS = 32

# Rows and scores shard like the spans they come from: every version (and tombstone) of a row
# meets on one shard for FINAL, and a row's scores sit beside it for the experiment_rows join.
ROW_SHARDING_KEY = "cityHash64(trace_id)"


def inserted_at(topology: Topology) -> list[str]:
    """``InsertedAt`` on otel_traces, also on a table the stock OTel exporter created.

    A DEFAULT column reads as "now" on parts written before it existed, which would make old
    traces look forever busy; materializing it stamps them once, at migration time.
    """
    table = f"{topology.local('otel_traces')}{topology.on_cluster}"
    column = (
        "ADD COLUMN IF NOT EXISTS InsertedAt DateTime64(3, 'UTC') "
        "DEFAULT now64(3) COMMENT 'When ClickHouse stored the span (set by the server).'"
    )
    # Mutations and indexes exist only on the local table; the Distributed one gets the column
    # (stamped where the insert arrives, before it is sent to the shard) so it is selectable.
    return [
        *topology.on_both("otel_traces", column)[:1],
        f"ALTER TABLE {table} MATERIALIZE COLUMN InsertedAt SETTINGS mutations_sync = 2",
        f"ALTER TABLE {table} ADD INDEX IF NOT EXISTS idx_inserted_at InsertedAt "
        "TYPE minmax GRANULARITY 1",
        f"ALTER TABLE {table} MATERIALIZE INDEX idx_inserted_at SETTINGS mutations_sync = 2",
        *topology.on_both("otel_traces", column)[1:],
    ]


def _row_metrics(topology: Topology) -> list[str]:
    table = topology.local("experiment_row_metrics")
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} (
    experiment_id String,
    experiment_name String,
    dataset_name String,
    dataset_version String,
    row_id String,
    trial UInt32,
    trace_id String,
    root_span_id String,
    input String,
    expected String,
    output String,
    metadata String,
    experiment_metadata String,
    error String,
    evaluator_error String,
    started_at DateTime64(9, 'UTC'),
    task_duration_ms Float64,
    offset_ms Float64,
    llm_duration_ms Float64,
    ttft_ms Nullable(Float64),
    llm_calls UInt32,
    input_tokens UInt64,
    output_tokens UInt64,
    cache_read_tokens UInt64,
    cache_write_tokens UInt64,
    reasoning_tokens UInt64,
    total_tokens UInt64,
    cost_usd Nullable(Float64),
    cost_known_usd Float64,
    cost_provenance LowCardinality(String),
    price_data_version LowCardinality(String),
    judge_input_tokens UInt64,
    judge_output_tokens UInt64,
    judge_cache_read_tokens UInt64,
    judge_cache_write_tokens UInt64,
    judge_reasoning_tokens UInt64,
    judge_total_tokens UInt64,
    judge_cost_usd Nullable(Float64),
    judge_cost_provenance LowCardinality(String),
    judge_duration_ms Float64,
    judge_llm_calls UInt32,
    scorers Array(String),
    span_count UInt32,
    evaluator_spans UInt32,
    watched_spans UInt32,
    orphan_spans UInt32,
    late_spans UInt32,
    initial_span_count UInt32,
    computations UInt32,
    inserted_watermark DateTime64(3, 'UTC'),
    computed_at DateTime64(3, 'UTC'),
    computed_by String,
    version UInt64,
    is_deleted UInt8,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {topology.engine("ReplacingMergeTree", "version", "is_deleted")}
ORDER BY (experiment_id, trace_id){topology.dedup_clause()}""",
        *topology.distributed("experiment_row_metrics", ROW_SHARDING_KEY),
    ]


def _scores(topology: Topology) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS {topology.local("scores")}{topology.on_cluster} (
    experiment_id String,
    trace_id String,
    row_id String,
    trial UInt32,
    name String,
    value Nullable(Float64),
    error String,
    explanation String,
    source LowCardinality(String),
    created_at DateTime64(3, 'UTC'),
    scorer String,
    metadata String,
    span_id String,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {topology.engine("ReplacingMergeTree", "created_at")}
ORDER BY (experiment_id, trace_id, source, scorer, name){topology.dedup_clause()}""",
        *topology.distributed("scores", ROW_SHARDING_KEY),
    ]


def _bookkeeping(topology: Topology) -> list[str]:
    on = topology.on_cluster
    return [
        f"""CREATE TABLE IF NOT EXISTS evaluator_claims{on} (
    shard UInt16,
    epoch UInt64,
    owner String,
    claimed_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine("MergeTree", sharded=False)}
ORDER BY (epoch, shard)
TTL toDateTime(claimed_at) + INTERVAL 1 DAY{topology.dedup_clause()}""",
        f"""CREATE TABLE IF NOT EXISTS evaluator_checkpoints{on} (
    shard UInt16,
    watermark DateTime64(3, 'UTC'),
    worker String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_at", sharded=False)}
ORDER BY shard{topology.dedup_clause()}""",
        f"""CREATE TABLE IF NOT EXISTS evaluator_workers{on} (
    worker String,
    heartbeat DateTime64(3, 'UTC')
) ENGINE = {topology.engine("ReplacingMergeTree", "heartbeat", sharded=False)}
ORDER BY worker
TTL toDateTime(heartbeat) + INTERVAL 1 DAY{topology.dedup_clause()}""",
    ]


# Latest value per (row, score name) over both sources; errors and "no score" stay out of the
# map (they are in `score_errors` / the scores table). ``{scores}`` is the scores table of the
# node running the join (see _views).
_ROW_SCORES = """SELECT
        experiment_id,
        trace_id,
        CAST(mapFromArrays(groupArrayIf(name, ok), groupArrayIf(assumeNotNull(value), ok)),
             'Map(String, Float64)') AS scores,
        CAST(mapFromArrays(groupArrayIf(name, error != ''), groupArrayIf(error, error != '')),
             'Map(String, String)') AS score_errors
    FROM (
        SELECT
            experiment_id,
            trace_id,
            name,
            argMax(value, created_at) AS value,
            argMax(error, created_at) AS error,
            error = '' AND value IS NOT NULL AS ok
        FROM {scores} FINAL
        GROUP BY experiment_id, trace_id, name
    )
    GROUP BY experiment_id, trace_id"""


def _views(topology: Topology) -> list[str]:
    # On a cluster the query over the Distributed experiment_row_metrics, join included, runs
    # on every shard; the join reads that shard's own scores (a row's scores share its shard,
    # ROW_SHARDING_KEY), which a Distributed right side would refuse (double-distributed
    # subquery) or broadcast whole (GLOBAL JOIN).
    row_scores = _ROW_SCORES.format(scores=topology.local("scores"))
    on = topology.on_cluster
    rows = f"""CREATE VIEW IF NOT EXISTS experiment_rows{on} AS
SELECT
    r.experiment_id AS experiment_id,
    r.experiment_name AS experiment_name,
    r.dataset_name AS dataset_name,
    r.row_id AS row_id,
    r.trial AS trial,
    r.trace_id AS trace_id,
    r.input AS input,
    r.expected AS expected,
    r.output AS output,
    r.metadata AS metadata,
    r.error AS error,
    r.task_duration_ms AS task_duration_ms,
    r.llm_duration_ms AS llm_duration_ms,
    r.input_tokens AS input_tokens,
    r.output_tokens AS output_tokens,
    r.cache_read_tokens AS cache_read_tokens,
    r.cache_write_tokens AS cache_write_tokens,
    r.reasoning_tokens AS reasoning_tokens,
    r.total_tokens AS total_tokens,
    r.cost_usd AS cost_usd,
    r.cost_provenance AS cost_provenance,
    r.judge_input_tokens AS judge_input_tokens,
    r.judge_output_tokens AS judge_output_tokens,
    r.judge_cost_usd AS judge_cost_usd,
    s.scores AS scores,
    r.span_count AS span_count,
    r.dataset_version AS dataset_version,
    r.root_span_id AS root_span_id,
    r.experiment_metadata AS experiment_metadata,
    r.evaluator_error AS evaluator_error,
    r.started_at AS started_at,
    r.offset_ms AS offset_ms,
    r.ttft_ms AS ttft_ms,
    r.llm_calls AS llm_calls,
    r.cost_known_usd AS cost_known_usd,
    r.price_data_version AS price_data_version,
    r.judge_cache_read_tokens AS judge_cache_read_tokens,
    r.judge_cache_write_tokens AS judge_cache_write_tokens,
    r.judge_reasoning_tokens AS judge_reasoning_tokens,
    r.judge_total_tokens AS judge_total_tokens,
    r.judge_cost_provenance AS judge_cost_provenance,
    r.judge_duration_ms AS judge_duration_ms,
    r.judge_llm_calls AS judge_llm_calls,
    s.score_errors AS score_errors,
    r.scorers AS scorers,
    r.evaluator_spans AS evaluator_spans,
    r.orphan_spans AS orphan_spans,
    r.late_spans AS late_spans,
    r.computations AS computations,
    r.inserted_watermark AS inserted_watermark,
    r.computed_at AS computed_at
FROM experiment_row_metrics AS r FINAL
LEFT JOIN ({row_scores}) AS s
    ON s.experiment_id = r.experiment_id AND s.trace_id = r.trace_id"""
    experiments = f"""CREATE VIEW IF NOT EXISTS experiments{on} AS
SELECT
    experiment_id,
    anyIf(experiment_name, experiment_name != '') AS experiment_name,
    anyIf(dataset_name, dataset_name != '') AS dataset_name,
    min(started_at) AS created_at,
    count() AS rows,
    countIf(error != '') AS errored_rows,
    avgMap(scores) AS scores,
    avg(task_duration_ms) AS avg_task_duration_ms,
    quantile(0.95)(task_duration_ms) AS p95_task_duration_ms,
    sum(total_tokens) AS total_tokens,
    if(countIf(cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(cost_usd))) AS total_cost_usd,
    anyIf(experiment_metadata, experiment_metadata != '') AS metadata,
    uniqExact(row_id) AS unique_rows,
    max(trial) + 1 AS trials,
    sum(cost_known_usd) AS known_cost_usd,
    countIf(cost_usd IS NULL) AS rows_cost_unknown,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cache_read_tokens) AS cache_read_tokens,
    sum(cache_write_tokens) AS cache_write_tokens,
    sum(reasoning_tokens) AS reasoning_tokens,
    sum(judge_total_tokens) AS judge_total_tokens,
    if(countIf(judge_cost_usd IS NULL) > 0, NULL, sum(assumeNotNull(judge_cost_usd)))
        AS judge_cost_usd,
    sum(span_count) AS span_count,
    sum(orphan_spans) AS orphan_spans,
    sum(late_spans) AS late_spans,
    countIf(length(score_errors) > 0) AS rows_with_score_errors,
    max(computed_at) AS updated_at
FROM experiment_rows
GROUP BY experiment_id"""
    return [rows, experiments]


def evaluator_tables(topology: Topology) -> list[str]:
    """Every statement of migration 6, in order; each is safe to run twice."""
    return [
        *inserted_at(topology),
        *_row_metrics(topology),
        *_scores(topology),
        *_bookkeeping(topology),
        *_views(topology),
    ]
