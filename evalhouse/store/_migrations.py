"""Versioned, idempotent schema migrations, recorded in ``evalhouse_migrations``.

Each migration is a list of statements that are safe to run twice (``IF NOT EXISTS``), so a
crash half-way or two processes migrating at once leave a correct schema. A version is recorded
only after all its statements succeeded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from evalhouse.store._client import Store
from evalhouse.store._dataset_schema import dataset_tables
from evalhouse.store._evaluator_schema import evaluator_tables
from evalhouse.store._experiment_index_schema import experiment_index
from evalhouse.store._explorer_schema import explorer_tables
from evalhouse.store._metrics_schema import metrics_tables
from evalhouse.store._online_schema import online_tables
from evalhouse.store._results_schema import results_views
from evalhouse.store._schema import (
    Topology,
    compact_inserts,
    ingest_tables,
    logs_tables,
    normalised_columns,
    openinference_models,
    trace_id_lookup,
    traces_tables,
)
from evalhouse.store._summaries_layout import (
    relayout_cleanup,
    relayout_done,
    relayout_summaries,
)

logger = logging.getLogger(__name__)

__all__ = ["MIGRATIONS", "Migration", "ledger", "migrate", "statements"]


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[Topology], list[str]]
    # A query answering 1 when the migration's work is already there (a rerun after a crash
    # past a statement that cannot run twice): it is then only recorded.
    done: Callable[[Topology], str] | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "otel_traces, column-compatible with the OTel Collector ClickHouse exporter",
        traces_tables,
    ),
    Migration(2, "trace id lookup table", trace_id_lookup),
    Migration(3, "normalised GenAI and experiment columns on otel_traces", normalised_columns),
    Migration(4, "otel_logs", logs_tables),
    Migration(
        5,
        "OTLP ingest tables parsed by ClickHouse",
        lambda t: [*ingest_tables("traces", t), *ingest_tables("logs", t)],
    ),
    Migration(6, "evaluator: InsertedAt, experiment rows, scores, claims", evaluator_tables),
    Migration(7, "dataset rows, versions and push staging", dataset_tables),
    Migration(8, "experiment_row_scores view for user comparisons", results_views),
    Migration(9, "experiment_traces: index of the experiment traces", experiment_index),
    Migration(10, "otel_traces: insert-sized parts written compact", compact_inserts),
    Migration(
        11,
        "otel_traces: OpenInference's requested and answered models read apart",
        openinference_models,
    ),
    Migration(
        12,
        "OTLP metrics tables, column-compatible with the OTel Collector ClickHouse exporter",
        metrics_tables,
    ),
    Migration(
        13,
        "production explorer: trace summaries, trace rank, usage rollup, views traces and sessions",
        explorer_tables,
    ),
    Migration(
        14,
        "online evaluation: one scores table for every source and target, rules, review queues",
        online_tables,
    ),
    Migration(
        15,
        "trace_summaries rebuilt: 1,024-row granules, small compressed blocks, no kind index",
        relayout_summaries,
        done=relayout_done,
    ),
    Migration(
        16, "trace_summaries: one view fills the rebuilt table, old one dropped", relayout_cleanup
    ),
)


def ledger(topology: Topology) -> str:
    """The migration ledger: bookkeeping, so one unsharded replica set on a cluster."""
    return (
        f"CREATE TABLE IF NOT EXISTS evalhouse_migrations{topology.on_cluster} "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        f"ENGINE = {topology.engine('ReplacingMergeTree', sharded=False)} ORDER BY version"
    )


def statements(topology: Topology) -> list[str]:
    """Every statement of a fresh migration, in order (the ledger first): what
    ``evalhouse migrate --print`` shows.

    >>> statements(Topology("evalhouse_cluster"))[0]   # doctest: +ELLIPSIS
    'CREATE TABLE IF NOT EXISTS evalhouse_migrations ON CLUSTER `evalhouse_cluster` ...'
    """
    return [ledger(topology), *(s for m in MIGRATIONS for s in m.statements(topology))]


def migrate(store: Store, *, cluster: str | None = None) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now.

    ``cluster`` defaults to the store's own (``Store(dsn, cluster=...)``).

    >>> migrate(Store("chdb:///tmp/evalhouse-doctest"))   # doctest: +SKIP
    [1, 2, 3, 4, 5]
    """
    topology = Topology(cluster or store.cluster)
    store.command(ledger(topology))
    done = {
        row[0]
        for row in store.query(
            "SELECT version FROM evalhouse_migrations FINAL",
            settings=topology.consistent_read_settings() or None,
        )
    }
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done:
            continue
        if migration.done is None or not store.query(migration.done(topology))[0][0]:
            for statement in migration.statements(topology):
                store.command(statement)
        store.insert_rows(
            "evalhouse_migrations", [(migration.version, migration.name)], ["version", "name"]
        )
        logger.info("applied migration %d: %s", migration.version, migration.name)
        applied.append(migration.version)
    return applied
