"""DDL of migration 14: online evaluation (``docs/sql.md``, "Scores", "Rules", "Review queues").

- ``scores`` becomes the one table for every source, each row naming its target. Columns
  added: ``target_span_id`` (the span scored; ``''`` for a trace or a session), ``session_id``
  (a session scored), ``rule``, ``rule_version``, ``author`` (all five appended to the sorting
  key, which ClickHouse allows for columns added by the same ALTER: a rule version scores a
  target once per scorer and name, a person's feedback on a target replaces their earlier
  one), ``label``, ``scorer_span_id`` and the judge's ``judge_input_tokens``,
  ``judge_output_tokens``, ``judge_cost_usd``, ``judge_model``. ``span_id`` now names the
  span scored too, a copy of ``target_span_id`` (an existing column cannot join a sorting
  key, so the key has a new column; ``span_id`` stays for readers and writers that know it).
  Until now it held the scorer span that traced an experiment score: that moves to
  ``scorer_span_id``.
- ``source`` takes the values ``experiment | rule | human | api | otlp``. Rows written before
  (``evaluator``: run by evalhouse on an experiment row; ``span``: reported by the app's own
  spans) are rewritten as ``experiment`` and ``otlp``: ``source`` is in the sorting key, so
  this is an insert of the new rows and a delete of the old ones (each safe to repeat).
- ``otel_evaluation_scores_mv``: a ``gen_ai.evaluation.result`` event on a span of a
  production trace becomes a score of that span (``source = 'otlp'``) as the span is stored.
  Spans of experiment rows are left to the evaluator, which files their scores under the
  experiment (``evaluators/_span_scores.py``).
- Rules: ``rules`` (one row per rule version), ``rule_targets`` (what each version decided
  for each target it matched: sampled out, waiting, pending, scored, skipped and why, late
  spans), ``rule_checkpoints`` (per version and shard, how far the daemon looked),
  ``rule_spend`` (judge spend per rule and day, for the budget), ``rule_backfills``.
- Review queues: ``review_queues``, ``review_items`` and ``review_claims`` (a reviewer's claim
  on an item is a one-row insert deduplicated by its token, like the evaluator's leases).
"""

from __future__ import annotations

from evalhouse.store._schema import Topology

__all__ = [
    "REVIEW_CLAIMS",
    "REVIEW_ITEMS",
    "REVIEW_QUEUES",
    "RULES",
    "RULE_BACKFILLS",
    "RULE_CHECKPOINTS",
    "RULE_SPEND",
    "RULE_TARGETS",
    "SCORE_KEY",
    "online_tables",
]

RULES = "rules"
RULE_TARGETS = "rule_targets"
RULE_CHECKPOINTS = "rule_checkpoints"
RULE_SPEND = "rule_spend"
RULE_BACKFILLS = "rule_backfills"
REVIEW_QUEUES = "review_queues"
REVIEW_ITEMS = "review_items"
REVIEW_CLAIMS = "review_claims"

# The sorting key of ``scores`` after this migration: one row per source, target, scorer,
# score name, rule version and author.
SCORE_KEY = (
    "experiment_id",
    "trace_id",
    "source",
    "scorer",
    "name",
    "target_span_id",
    "session_id",
    "rule",
    "rule_version",
    "author",
)
_KEY_COLUMNS = (
    ("target_span_id", "String", "The span scored; empty when a trace or session is."),
    ("session_id", "String", "The session scored (session-scope rules, session feedback)."),
    ("rule", "String", "The rule that made the score; empty for other sources."),
    ("rule_version", "UInt32", "The version of that rule."),
    ("author", "String", "Who gave human or API feedback, or reviewed it."),
)
_OTHER_COLUMNS = (
    ("label", "String", "The label of a categorical score; empty for a number only."),
    ("scorer_span_id", "String", "The scorer span that traced the score, if any."),
    ("judge_input_tokens", "UInt64", "Input tokens of the LLM judge calls behind the score."),
    ("judge_output_tokens", "UInt64", "Output tokens of those calls."),
    ("judge_cost_usd", "Nullable(Float64)", "Their cost; NULL when no judge ran or unpriced."),
    ("judge_model", "LowCardinality(String)", "The model of the LLM judge."),
)
_LEGACY_SOURCES = "('evaluator', 'span')"
# Columns of scores as migration 6 created them, without span_id (read separately).
_OLD_COLUMNS = (
    "experiment_id, trace_id, row_id, trial, name, value, error, explanation, created_at, "
    "scorer, metadata"
)


def _add(columns: tuple[tuple[str, str, str], ...]) -> str:
    return ", ".join(
        f"ADD COLUMN IF NOT EXISTS {name} {kind} COMMENT '{comment}'"
        for name, kind, comment in columns
    )


def _scores(topology: Topology) -> list[str]:
    local = f"{topology.local('scores')}{topology.on_cluster}"
    everything = (*_KEY_COLUMNS, *_OTHER_COLUMNS)
    statements = [
        f"ALTER TABLE {local} {_add(everything)}, MODIFY ORDER BY ({', '.join(SCORE_KEY)})",
        f"ALTER TABLE {local} ADD INDEX IF NOT EXISTS idx_created_at created_at "
        "TYPE minmax GRANULARITY 1",
    ]
    if topology.cluster:
        statements.append(f"ALTER TABLE scores{topology.on_cluster} {_add(everything)}")
    # The rows of the old sources again under the new ones (the scorer span moves to
    # scorer_span_id, the target is the experiment row), then the old rows go.
    statements += [
        f"INSERT INTO scores ({_OLD_COLUMNS}, source, scorer_span_id) "
        f"SELECT {_OLD_COLUMNS}, if(source = 'evaluator', 'experiment', 'otlp'), span_id "
        f"FROM scores WHERE source IN {_LEGACY_SOURCES}",
        f"ALTER TABLE {local} DELETE WHERE source IN {_LEGACY_SOURCES} SETTINGS mutations_sync = 2",
        f"ALTER TABLE {local} COMMENT COLUMN span_id 'The span scored: a copy of target_span_id.'",
    ]
    return statements


# A gen_ai.evaluation.result event of a production span, as a score of that span. Spans of
# experiment rows (purpose, experiment id) are the evaluator's, and its own scorer spans are
# in scores already.
_EVENT_SCORES = """SELECT
    '' AS experiment_id,
    TraceId AS trace_id,
    '' AS row_id,
    toUInt32(0) AS trial,
    attrs['gen_ai.evaluation.name'] AS name,
    toFloat64OrNull(attrs['gen_ai.evaluation.score.value']) AS value,
    attrs['gen_ai.evaluation.score.label'] AS label,
    multiIf(
        value IS NOT NULL OR label != '', '',
        attrs['gen_ai.evaluation.score.value'] != '',
        concat('score value ', substring(attrs['gen_ai.evaluation.score.value'], 1, 50),
               ' is not a number'),
        'the event has neither gen_ai.evaluation.score.value nor gen_ai.evaluation.score.label'
    ) AS error,
    attrs['gen_ai.evaluation.explanation'] AS explanation,
    'otlp' AS source,
    toDateTime64(at, 3, 'UTC') AS created_at,
    '' AS scorer,
    '' AS metadata,
    SpanId AS target_span_id,
    SpanId AS span_id,
    '' AS session_id,
    '' AS rule,
    toUInt32(0) AS rule_version,
    '' AS author
FROM (
    SELECT TraceId, SpanId, Events.Timestamp, Events.Name, Events.Attributes
    FROM {spans}
    WHERE has(Events.Name, 'gen_ai.evaluation.result') AND Purpose = '' AND ExperimentId = ''
      AND ScopeName != 'evalhouse.evaluator'
)
ARRAY JOIN Events.Timestamp AS at, Events.Name AS event, Events.Attributes AS attrs
WHERE event = 'gen_ai.evaluation.result' AND name != ''"""


def _event_view(topology: Topology) -> str:
    # Fires on the shard that stores the spans and writes that shard's scores (scores shard
    # by trace id like the spans do).
    return (
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS otel_evaluation_scores_mv{topology.on_cluster} "
        f"TO {topology.local('scores')} AS\n"
        + _EVENT_SCORES.format(spans=topology.local("otel_traces"))
    )


def _rules(topology: Topology) -> list[str]:
    on = topology.on_cluster
    return [
        f"""CREATE TABLE IF NOT EXISTS {RULES}{on} (
    name String,
    version UInt32,
    scope LowCardinality(String) COMMENT 'span, trace or session',
    filter String COMMENT 'the explorer filter language',
    where_sql String COMMENT 'SQL boolean over the scope columns',
    sample Float64,
    scorers Array(String) COMMENT 'scorer ids (spec, options as JSON)',
    mapping String COMMENT 'JSON: where input, output, expected, metadata come from',
    budget_usd_per_day Nullable(Float64),
    delay_s Float64,
    enabled UInt8,
    origin LowCardinality(String) COMMENT 'api or config (evalhouse.toml)',
    author String,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_at", sharded=False)}
ORDER BY (name, version)
COMMENT 'One row per rule version; editing a rule adds a version.'""",
        f"""CREATE TABLE IF NOT EXISTS {topology.local(RULE_TARGETS)}{on} (
    rule String,
    rule_version UInt32,
    scope LowCardinality(String),
    trace_id String,
    span_id String,
    session_id String,
    shard UInt16,
    state LowCardinality(String) COMMENT 'sampled_out, waiting, pending, scored or skipped',
    reason LowCardinality(String) COMMENT 'why skipped or waiting',
    backfill UInt8,
    spans UInt32 COMMENT 'spans stored when the target was decided',
    late_spans UInt32 COMMENT 'spans stored after that',
    watermark DateTime64(3, 'UTC') COMMENT 'InsertedAt of the newest span seen',
    ready_at DateTime64(3, 'UTC') COMMENT 'when the target became ready (quiet)',
    decided_at DateTime64(3, 'UTC'),
    scored_at Nullable(DateTime64(3, 'UTC')),
    scorers UInt16,
    errors UInt16,
    judge_cost_usd Nullable(Float64),
    estimated_cost_usd Float64,
    input_preview String CODEC(ZSTD(1)),
    output_preview String CODEC(ZSTD(1)),
    updated_ns UInt64,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_ns")}
ORDER BY (rule, rule_version, trace_id, span_id, session_id)
COMMENT 'What each rule version decided for each target it matched.'""",
        *topology.distributed(RULE_TARGETS, "cityHash64(trace_id)"),
        f"""CREATE TABLE IF NOT EXISTS {RULE_CHECKPOINTS}{on} (
    rule String,
    rule_version UInt32,
    shard UInt16,
    watermark DateTime64(3, 'UTC'),
    worker String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_at", sharded=False)}
ORDER BY (rule, rule_version, shard){topology.dedup_clause()}""",
        f"""CREATE TABLE IF NOT EXISTS {RULE_SPEND}{on} (
    rule String,
    day Date,
    worker String,
    cost_usd Float64,
    judge_calls UInt64,
    input_tokens UInt64,
    output_tokens UInt64
) ENGINE = {topology.engine("SummingMergeTree", sharded=False)}
ORDER BY (rule, day, worker){topology.dedup_clause()}""",
        f"""CREATE TABLE IF NOT EXISTS {RULE_BACKFILLS}{on} (
    id String,
    rule String,
    rule_version UInt32,
    since DateTime64(9, 'UTC'),
    until DateTime64(9, 'UTC'),
    shard UInt16 COMMENT '65535: the request; a shard number: that shard is done',
    requested_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine("ReplacingMergeTree", "requested_at", sharded=False)}
ORDER BY (rule, id, shard){topology.dedup_clause()}""",
    ]


def _reviews(topology: Topology) -> list[str]:
    on = topology.on_cluster
    return [
        f"""CREATE TABLE IF NOT EXISTS {REVIEW_QUEUES}{on} (
    name String,
    filter String,
    where_sql String,
    since DateTime64(9, 'UTC'),
    until DateTime64(9, 'UTC'),
    sample Float64,
    score_configs String COMMENT 'JSON list of {{name, type, min, max, categories}}',
    description String,
    lock_seconds UInt32,
    items UInt32,
    created_at DateTime64(3, 'UTC'),
    updated_at DateTime64(3, 'UTC')
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_at", sharded=False)}
ORDER BY name""",
        f"""CREATE TABLE IF NOT EXISTS {REVIEW_ITEMS}{on} (
    queue String,
    trace_id String,
    position UInt32,
    state LowCardinality(String) COMMENT 'open, done or skipped',
    reviewer String,
    updated_ns UInt64
) ENGINE = {topology.engine("ReplacingMergeTree", "updated_ns", sharded=False)}
ORDER BY (queue, trace_id)""",
        f"""CREATE TABLE IF NOT EXISTS {REVIEW_CLAIMS}{on} (
    queue String,
    trace_id String,
    claim UInt32,
    reviewer String,
    claimed_at DateTime64(3, 'UTC') DEFAULT now64(3),
    expires_at DateTime64(3, 'UTC')
) ENGINE = {topology.engine("MergeTree", sharded=False)}
ORDER BY (queue, trace_id, claim)
TTL toDateTime(claimed_at) + INTERVAL 30 DAY{topology.dedup_clause()}""",
    ]


def online_tables(topology: Topology) -> list[str]:
    """Every statement of migration 14, in order; each is safe to run twice."""
    return [*_scores(topology), _event_view(topology), *_rules(topology), *_reviews(topology)]
