"""ClickHouse access for evalhouse: the only package that talks to ClickHouse or chDB.

>>> from evalhouse.store import Store, migrate     # doctest: +SKIP
>>> store = Store("chdb:///var/lib/evalhouse/clickhouse")
>>> migrate(store)
"""

from __future__ import annotations

from evalhouse.store._client import Store, in_ids, quote_identifier, redact_dsn
from evalhouse.store._dataset_schema import ROWS_TABLE, STAGING_TABLE, VERSIONS_TABLE
from evalhouse.store._evaluator_schema import EVALUATOR_SCOPE, SHARDS
from evalhouse.store._experiment_index_schema import EXPERIMENT_SPAN
from evalhouse.store._explorer_schema import (
    CALL_COLUMNS,
    RANKED_METRICS,
    SUMMARIES_INPUT,
    SUMMARY_CHECKPOINTS,
    SUMMARY_COLUMNS,
    TRACE_COLUMNS,
)
from evalhouse.store._guard import QueryRefused
from evalhouse.store._migrations import MIGRATIONS, Migration, migrate, statements
from evalhouse.store._normalise import NORMALISED_COLUMNS, NormalisedColumn
from evalhouse.store._online_schema import (
    REVIEW_CLAIMS,
    REVIEW_ITEMS,
    REVIEW_QUEUES,
    RULE_BACKFILLS,
    RULE_CHECKPOINTS,
    RULE_SPEND,
    RULE_TARGETS,
    RULES,
)
from evalhouse.store._otlp import (
    SIGNALS,
    Signal,
    envelope_class,
    ingest_class,
    ingest_item_class,
    item_fields,
    lenient_class,
    lenient_item_class,
)
from evalhouse.store._readonly import ReadonlyLimits, SessionsBusy
from evalhouse.store._schema import Topology
from evalhouse.store._scores import SCORE_COLUMNS, SCORE_SOURCES, ScoreRecord
from evalhouse.store._sink import OtlpSink, SpanSink

__all__ = [
    "CALL_COLUMNS",
    "EVALUATOR_SCOPE",
    "EXPERIMENT_SPAN",
    "MIGRATIONS",
    "NORMALISED_COLUMNS",
    "RANKED_METRICS",
    "REVIEW_CLAIMS",
    "REVIEW_ITEMS",
    "REVIEW_QUEUES",
    "ROWS_TABLE",
    "RULES",
    "RULE_BACKFILLS",
    "RULE_CHECKPOINTS",
    "RULE_SPEND",
    "RULE_TARGETS",
    "SCORE_COLUMNS",
    "SCORE_SOURCES",
    "SHARDS",
    "SIGNALS",
    "STAGING_TABLE",
    "SUMMARIES_INPUT",
    "SUMMARY_CHECKPOINTS",
    "SUMMARY_COLUMNS",
    "TRACE_COLUMNS",
    "VERSIONS_TABLE",
    "Migration",
    "NormalisedColumn",
    "OtlpSink",
    "QueryRefused",
    "ReadonlyLimits",
    "ScoreRecord",
    "SessionsBusy",
    "Signal",
    "SpanSink",
    "Store",
    "Topology",
    "envelope_class",
    "in_ids",
    "ingest_class",
    "ingest_item_class",
    "item_fields",
    "lenient_class",
    "lenient_item_class",
    "migrate",
    "quote_identifier",
    "redact_dsn",
    "statements",
]
