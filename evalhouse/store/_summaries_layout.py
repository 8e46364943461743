"""DDL of migrations 15 and 16: ``trace_summaries`` rewritten in a layout that makes a row
shown cheap to read, whatever the window holds (``benchmarks/explorer.py``).

A page of sparse matches (a rare search term: one trace in 100,000) reads one granule of
every column it shows per row, so its cost grew with the matches the window holds: 108 ms for
50 rows at 20M spans against 31 ms for 6 at 2M. Measured on the same stores:

- granules of 1,024 rows and compressed blocks of 8-64 KiB: a row costs a smaller granule
  (the newest page and sort by cost got faster too), for 2% more disk, summary inserts 8%
  and merges 33% dearer;
- no ``idx_kind``: a set index over a column that is ``production`` in nearly every granule
  skips nothing and cost 10 ms per query at 20M (checking 4,900 granules).

Measured and not kept: the row packed into one JSON column (``page_row``, written by
ClickHouse at insert) made the rare-term page a third faster again, but the summaries'
inserts 33% and their merges 26% dearer, which took online evaluation's judge from 82% to
75-76% of its ideal (``benchmarks/online.py``).

``index_granularity`` is fixed when a table is created, so migration 15 builds the new
table beside the old one, fills it from the daemon's inserts (a second materialized view)
and with a copy of the old rows, then renames it into place; migration 16 retargets the
view and empties the old table. A copy row written twice (by the view and the copy) is the
same version of the same key: readers keep one (``explorer/_rows.py``), merges drop the
other. Migration 15 is skipped once ``trace_summaries`` has the new granules, so a rerun
after a crash never renames twice; a second process migrating at the same time fails at its
rename on the existing ``trace_summaries_old`` (migration 16 empties it but keeps it) instead
of renaming the rebuilt table away.
"""

from __future__ import annotations

from evalhouse.store._explorer_schema import (
    CALL_COLUMNS,
    SUMMARY_COLUMNS,
    summaries_table,
    summaries_view,
)
from evalhouse.store._schema import Topology

__all__ = ["relayout_cleanup", "relayout_done", "relayout_summaries"]

_NEXT = "trace_summaries_next"
_OLD = "trace_summaries_old"
_VIEW = "trace_summaries_fill_mv"
_GRANULES = "index_granularity = 1024"
_LAYOUT = f"{_GRANULES}, min_compress_block_size = 8192, max_compress_block_size = 65536"


def _columns() -> str:
    names = [name for name, _ in SUMMARY_COLUMNS]
    names += [f"`calls.{name}`" for name, _ in CALL_COLUMNS]
    return ", ".join(names)


def relayout_done(topology: Topology) -> str:
    """1 once ``trace_summaries`` has the new layout (migration 15 then does nothing)."""
    table = topology.local("trace_summaries")
    return (
        "SELECT count() FROM system.tables WHERE database = currentDatabase() "
        f"AND name = '{table}' AND position(engine_full, '{_GRANULES}') > 0"
    )


def relayout_summaries(topology: Topology) -> list[str]:
    """Migration 15: the new table, filled by a view and a copy, renamed into place."""
    on = topology.on_cluster
    local, next_local = topology.local("trace_summaries"), topology.local(_NEXT)
    columns = _columns()
    return [
        *summaries_table(topology, _NEXT, left_out=("idx_kind",), settings=_LAYOUT),
        summaries_view(f"{_NEXT}_mv", topology, target=_NEXT),
        f"INSERT INTO {_NEXT} ({columns}) SELECT {columns} FROM trace_summaries",
        f"RENAME TABLE {local} TO {topology.local(_OLD)}, {next_local} TO {local}{on}",
    ]


def relayout_cleanup(topology: Topology) -> list[str]:
    """Migration 16: one view fills the new table; the old views are dropped, the old table
    emptied."""
    on = topology.on_cluster
    return [
        summaries_view(_VIEW, topology),
        *(f"DROP VIEW IF EXISTS {view}{on}" for view in ("trace_summaries_mv", f"{_NEXT}_mv")),
        # The Distributed table over the new one's old name (on a cluster; else already gone).
        f"DROP TABLE IF EXISTS {_NEXT}{on}",
        # Emptied, not dropped: while it exists, a second process that was copying at the same
        # time fails at its RENAME instead of renaming the rebuilt table away.
        f"TRUNCATE TABLE IF EXISTS {topology.local(_OLD)}{on}",
    ]
