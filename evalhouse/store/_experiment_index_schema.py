"""DDL of migration 9: ``experiment_traces``, an index of the traces that hold experiment rows.

Most spans a collector stores belong to no experiment (production traffic). The evaluator
must still notice a late span of an experiment trace, and that span usually names no
experiment itself (an auto-instrumented model call). Looking every recent trace up in
``otel_traces`` cost the daemon a scan of the span table each poll; this small table answers
"is this trace an experiment trace?" from a few recent granules instead.

A materialized view on ``otel_traces`` adds a row for every inserted block that holds an
experiment span (``EXPERIMENT_SPAN``: an ``eval`` root or a span naming an experiment, in any
dialect), so it works whoever writes the spans (evalhouse or a stock OpenTelemetry Collector).
Rows are ordered by ``MarkedAt`` (the marking span's ``InsertedAt``), so reading the traces
marked in the last hour reads the last hour's rows only. A trace marked by several blocks has
several rows; readers treat the table as a set. Spans stored before the migration are indexed
once by the migration itself (their ``InsertedAt`` is the migration's time).
"""

from __future__ import annotations

from evalhouse.store._schema import TRACE_SHARDING_KEY, Topology

__all__ = ["EXPERIMENT_SPAN", "experiment_index"]

# A span that makes its trace an experiment row: an eval root (any dialect, through
# ``Purpose``), evalhouse/Langfuse experiment attributes, or Braintrust's
# ``braintrust.parent`` = "experiment_id:<id>".
EXPERIMENT_SPAN = (
    "(Purpose = 'eval' OR ExperimentId != '' OR ExperimentName != '' "
    "OR startsWith(SpanAttributes['braintrust.parent'], 'experiment_id:'))"
)


def experiment_index(topology: Topology) -> list[str]:
    """Every statement of migration 9; each is safe to run twice.

    On a cluster the view sits on each shard's ``_local`` span table and fills that shard's
    ``_local`` index (a trace lives on one shard); the backfill goes through the Distributed
    tables, which route each trace to its shard.
    """
    table = topology.local("experiment_traces")
    select = (
        "SELECT max(InsertedAt) AS MarkedAt, TraceId FROM {source} "
        f"WHERE {EXPERIMENT_SPAN} GROUP BY TraceId"
    )
    return [
        f"""CREATE TABLE IF NOT EXISTS {table}{topology.on_cluster} (
    MarkedAt DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    TraceId String CODEC(ZSTD(1))
) ENGINE = {topology.engine()}
ORDER BY (MarkedAt, TraceId)
COMMENT 'Traces holding experiment rows, by when an experiment span of theirs was stored.'""",
        f"CREATE MATERIALIZED VIEW IF NOT EXISTS experiment_traces_mv{topology.on_cluster} "
        f"TO {table} AS {select.format(source=topology.local('otel_traces'))}",
        *topology.distributed("experiment_traces", TRACE_SHARDING_KEY),
        # After the view exists: spans stored from now on are indexed by it, earlier ones here
        # (a span stored in between is indexed twice, which a set does not mind).
        f"INSERT INTO experiment_traces {select.format(source='otel_traces')}",
    ]
