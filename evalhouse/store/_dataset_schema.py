"""DDL for datasets: versioned rows of (id, input, expected, metadata), kept in ClickHouse.

Every push writes only the rows it carries, all stamped with one new version; the rows of
version N are the newest copy of each row id among versions <= N (a tombstone row hides an
id). A version counts only once its record is in ``evalhouse_dataset_versions``: a push is
staged chunk by chunk in ``evalhouse_dataset_staging`` and committed in one step, so an
interrupted push leaves nothing visible.

Engines come from :class:`Topology`, so the same statements create Replicated tables and
``ON CLUSTER`` DDL on a cluster. There rows and staging are sharded behind Distributed tables;
the versions table is the version counter and commit record, so it is bookkeeping: one
unsharded replica set, whole on every node (shards check ``version IN (versions)`` locally).
"""

from __future__ import annotations

from evalhouse.store._schema import Topology

__all__ = ["ROWS_TABLE", "STAGING_TABLE", "VERSIONS_TABLE", "dataset_tables"]

ROWS_TABLE = "evalhouse_dataset_rows"
VERSIONS_TABLE = "evalhouse_dataset_versions"
STAGING_TABLE = "evalhouse_dataset_staging"

# An abandoned push (client died between chunks) is dropped after this long.
STAGING_TTL_HOURS = 24

# Every copy of a row id (versions, tombstones) on one shard: "newest copy <= N" stays local.
ROWS_SHARDING_KEY = "cityHash64(dataset, row_id)"
# Deterministic per position, so a retried chunk's rows meet their first copies on one shard
# and the commit's ``LIMIT 1 BY position`` drops them there.
STAGING_SHARDING_KEY = "cityHash64(dataset, push_id, position)"


def dataset_tables(topology: Topology) -> list[str]:
    """CREATE statements for the dataset tables (idempotent)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {topology.local(ROWS_TABLE)}{topology.on_cluster} (
    dataset String COMMENT 'dataset name',
    version UInt32 COMMENT 'version that wrote this copy of the row',
    position UInt64 COMMENT 'order of the row within its push',
    row_id String COMMENT 'given id, or a hash of the canonical JSON of input',
    input String CODEC(ZSTD(1)) COMMENT 'JSON',
    expected String CODEC(ZSTD(1)) COMMENT 'JSON; null when absent',
    metadata String CODEC(ZSTD(1)) COMMENT 'JSON; null when absent',
    deleted UInt8 COMMENT '1: the row id is removed as of this version'
) ENGINE = {topology.engine()}
ORDER BY (dataset, row_id, version)""",
        *topology.distributed(ROWS_TABLE, ROWS_SHARDING_KEY),
        f"""CREATE TABLE IF NOT EXISTS {VERSIONS_TABLE}{topology.on_cluster} (
    dataset String,
    version UInt32,
    push_id String COMMENT 'the push that made this version; makes a retried commit a no-op',
    rows UInt64 COMMENT 'rows in the dataset as of this version',
    changed UInt64 COMMENT 'rows written (added, replaced or deleted) by this version',
    description String,
    source String COMMENT 'list, csv, jsonl or experiment:<id>',
    created_at DateTime64(3, 'UTC') DEFAULT now64(3)
) ENGINE = {topology.engine(sharded=False)}
ORDER BY (dataset, version)""",
        f"""CREATE TABLE IF NOT EXISTS {topology.local(STAGING_TABLE)}{topology.on_cluster} (
    dataset String,
    push_id String,
    position UInt64,
    row_id String,
    input String CODEC(ZSTD(1)),
    expected String CODEC(ZSTD(1)),
    metadata String CODEC(ZSTD(1)),
    deleted UInt8,
    staged_at DateTime DEFAULT now()
) ENGINE = {topology.engine()}
ORDER BY (dataset, push_id, position)
TTL staged_at + INTERVAL {STAGING_TTL_HOURS} HOUR""",
        *topology.distributed(STAGING_TABLE, STAGING_SHARDING_KEY),
    ]
