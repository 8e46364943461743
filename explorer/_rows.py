"""Reading trace rows: the columns, the JSON shape, versions, and the scores joined per page.

``trace_summaries`` is read without ``FINAL`` (it cost 82 ms against 10 ms for the newest
page at 5M traces): a page query returns the rows of each key together, and
:func:`latest` keeps the highest version of each key, dropping tombstones
(``evalhouse/store/_explorer_schema.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from evalhouse.store import TRACE_COLUMNS, Store

__all__ = ["SELECT", "latest", "rows_at", "scores_of", "trace_json"]

_TIMES = ("start_time", "end_time")
# The row's columns, times as Unix nanoseconds (``start_ns``, ``end_ns``: a cursor must not
# lose precision, and an alias named like a column would hide the column from WHERE).
SELECT = ", ".join(
    [
        *(
            f"toUnixTimestamp64Nano({c}) AS {c.replace('_time', '_ns')}" if c in _TIMES else c
            for c in TRACE_COLUMNS
        ),
        "kind",
        "providers",
        "experiment_id",
        "cost_known_usd",
        "version",
        "is_deleted",
    ]
)


def iso(ns: int) -> str:
    """Unix nanoseconds as ISO-8601 UTC (microseconds: what JSON readers parse)."""
    at = datetime.fromtimestamp(ns // 1000 / 1e6, UTC)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def latest(rows: Iterable[dict[str, Any]], key: Sequence[str]) -> list[dict[str, Any]]:
    """Of each run of rows sharing ``key``, the highest version, unless it is a tombstone.

    Rows come sorted by a tuple that ends with ``key``, so the versions of one key are
    adjacent (a tombstone repeats the values of the row it replaces).
    """
    kept: list[dict[str, Any]] = []
    current: tuple[Any, ...] | None = None
    best: dict[str, Any] | None = None
    for row in rows:
        marker = tuple(row[k] for k in key)
        if marker != current:
            if best is not None and not best["is_deleted"]:
                kept.append(best)
            current, best = marker, row
        elif best is None or row["version"] > best["version"]:
            best = row
    if best is not None and not best["is_deleted"]:
        kept.append(best)
    return kept


def trace_json(row: dict[str, Any], scores: dict[str, float]) -> dict[str, Any]:
    """A trace row as the API answers it (``docs/sql.md``, "Traces")."""
    out = {c: iso(row[c.replace("_time", "_ns")]) if c in _TIMES else row[c] for c in TRACE_COLUMNS}
    out["scores"] = scores
    out["kind"] = row["kind"]
    out["providers"] = row["providers"]
    out["experiment_id"] = row["experiment_id"]
    out["cost_known_usd"] = row["cost_known_usd"]
    return out


def scores_of(store: Store, trace_ids: Sequence[str]) -> dict[str, dict[str, float]]:
    """Latest value of each score of these traces (every source; errors left out)."""
    if not trace_ids:
        return {}
    rows = store.select(
        """
        SELECT trace_id, name, argMax(value, created_at) AS v, argMax(error, created_at) AS e
        FROM scores WHERE trace_id IN {ids:Array(String)}
        GROUP BY trace_id, name
        """,
        {"ids": list(trace_ids)},
    )
    found: dict[str, dict[str, float]] = {}
    for row in rows:
        if row["e"] == "" and row["v"] is not None:
            found.setdefault(row["trace_id"], {})[row["name"]] = float(row["v"])
    return found


def rows_at(store: Store, keys: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    """The latest rows of traces known by ``(start_ns, trace_id)``, in the order given: point
    lookups on the primary key (``start_time`` first)."""
    if not keys:
        return []
    rows = store.select(
        f"SELECT {SELECT} FROM trace_summaries "
        "WHERE start_time IN (SELECT arrayJoin(arrayMap(t -> fromUnixTimestamp64Nano(t, 'UTC'), "
        "{times:Array(Int64)}))) AND trace_id IN {ids:Array(String)} "
        "ORDER BY start_time, trace_id",
        {"times": sorted({t for t, _ in keys}), "ids": sorted({i for _, i in keys})},
    )
    found = {
        (row["start_ns"], row["trace_id"]): row for row in latest(rows, ["start_ns", "trace_id"])
    }
    return [found[key] for key in keys if key in found]
