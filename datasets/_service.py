"""The dataset tables of one store: list, load, stage, commit, build from an experiment.

A version is made in two steps so that nothing is visible until all its rows are stored:
rows are staged under a push id (in chunks, for large pushes), then committed as the next
version number. The number is chosen at commit under a lock, so concurrent pushes through one
server get distinct versions; a retried chunk or commit (same push id) is recognised, not
repeated.

>>> datasets = Datasets(store)                                          # doctest: +SKIP
>>> datasets.push("qa", [StoredRow("1", '"2+2"', '"4"', "null")])       # doctest: +SKIP
{'name': 'qa', 'version': 1, 'rows': 1, 'changed': 1, ...}
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Sequence
from typing import Any

from evalhouse.dataset_rows import DatasetError, collect_rows
from evalhouse.datasets._from_experiment import experiment_rows
from evalhouse.datasets._rows import StoredRow, stored_rows
from evalhouse.errors import NotFound
from evalhouse.store import ROWS_TABLE, STAGING_TABLE, VERSIONS_TABLE, Store

__all__ = ["DatasetNotFound", "Datasets"]


class DatasetNotFound(NotFound):
    """No such dataset or version, or no stored rows of the experiment it is built from."""


def _iso(value: Any) -> str:
    return str(value.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")


def _version_json(name: str, row: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "version": int(row["version"]),
        "rows": int(row["rows"]),
        "changed": int(row["changed"]),
        "description": row["description"],
        "source": row["source"],
        "created_at": _iso(row["created_at"]),
    }


# Rows visible as of {version}: the newest copy of each row id among committed versions (plus
# {pending}, the version being committed, when counting its rows), tombstones dropped.
_LIVE_ROWS = f"""
SELECT row_id, input, expected, metadata, first_version, first_position FROM (
    SELECT
        row_id,
        argMax(input, version) AS input,
        argMax(expected, version) AS expected,
        argMax(metadata, version) AS metadata,
        argMax(deleted, version) AS gone,
        min(version) AS first_version,
        argMin(position, version) AS first_position
    FROM {ROWS_TABLE}
    WHERE dataset = {{name:String}} AND version <= {{version:UInt32}}
      AND (version = {{pending:UInt32}} OR version IN (
          SELECT version FROM {VERSIONS_TABLE} WHERE dataset = {{name:String}}))
    GROUP BY row_id
) WHERE gone = 0"""


class Datasets:
    """Dataset tables of one store: list, load, stage, commit, build from an experiment.

    Answers are the HTTP API's JSON bodies, so the API routes return them as they are and
    the CLI prints the same thing whether it asked a server or the store.

    >>> datasets = Datasets(store)                                          # doctest: +SKIP
    >>> datasets.versions("qa")["versions"][0]["rows"]                      # doctest: +SKIP
    1
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # Versions are numbered at commit; one commit at a time keeps them distinct.
        self._commit_lock = threading.Lock()

    def summaries(self) -> dict[str, Any]:
        """Every dataset: name, latest version, its rows, number of versions, times."""
        rows = self.store.query_dicts(
            f"""SELECT
    dataset AS name,
    max(v) AS version,
    argMax(n, v) AS rows,
    count() AS versions,
    argMaxIf(d, v, d != '') AS description,
    min(t) AS created_at,
    max(t) AS updated_at
FROM (
    SELECT dataset, version AS v, rows AS n, description AS d, created_at AS t
    FROM {VERSIONS_TABLE}
) GROUP BY dataset ORDER BY dataset"""
        )
        for row in rows:
            row["created_at"], row["updated_at"] = _iso(row["created_at"]), _iso(row["updated_at"])
            row["version"], row["rows"] = int(row["version"]), int(row["rows"])
        return {"datasets": rows}

    def versions(self, name: str) -> dict[str, Any]:
        """The version history of ``name``, oldest first."""
        rows = self._versions(name)
        if not rows:
            raise self._missing(name)
        return {"name": name, "versions": [_version_json(name, row) for row in rows]}

    def _versions(self, name: str) -> list[dict[str, Any]]:
        return self.store.query_dicts(
            f"""SELECT version, rows, changed, description, source, created_at
FROM {VERSIONS_TABLE} WHERE dataset = {{name:String}} ORDER BY version""",
            {"name": name},
        )

    def _missing(self, name: str) -> DatasetNotFound:
        return DatasetNotFound(
            f"no dataset named {name!r}; create it with evalhouse.dataset({name!r}).append(rows) "
            f"or 'evalhouse datasets push {name} FILE'"
        )

    def load_json(
        self, name: str, version: int | None = None, offset: int = 0, limit: int | None = None
    ) -> bytes:
        """The rows page as the API's JSON body, built from the stored JSON texts as is."""
        header, rows = self.load(name, version, offset, limit)
        parts = [
            f'{{"id":{json.dumps(r.id)},"input":{r.input},"expected":{r.expected},'
            f'"metadata":{r.metadata}}}'
            for r in rows
        ]
        head = json.dumps(header)[:-1]
        return f'{head}, "rows":[{",".join(parts)}]}}'.encode()

    def load(
        self, name: str, version: int | None = None, offset: int = 0, limit: int | None = None
    ) -> tuple[dict[str, Any], list[StoredRow]]:
        """(header, rows) of ``version`` (default: latest), ``limit`` rows from ``offset``."""
        known = self._versions(name)
        if not known:
            raise self._missing(name)
        chosen = (
            known[-1]
            if version is None
            else next((row for row in known if row["version"] == version), None)
        )
        if chosen is None:
            numbers = [int(row["version"]) for row in known]
            raise DatasetNotFound(
                f"dataset {name!r} has no version {version}; it has versions "
                f"{_ranges(numbers)} (leave version out for the latest)"
            )
        page = limit if limit is not None else int(chosen["rows"])
        rows = self.store.query(
            f"{_LIVE_ROWS}\nORDER BY first_version, first_position, row_id\n"
            "LIMIT {limit:UInt64} OFFSET {offset:UInt64}",
            {
                "name": name,
                "version": int(chosen["version"]),
                "pending": 0,
                "limit": page,
                "offset": offset,
            },
        )
        # "rows" is the page itself; the version's row count is "total".
        header = {**_version_json(name, chosen), "offset": offset}
        header["total"] = header.pop("rows")
        return header, [StoredRow(r[0], r[1], r[2], r[3]) for r in rows]

    def stage(self, name: str, push_id: str, offset: int, rows: Sequence[StoredRow]) -> None:
        """Keep a chunk of a push; invisible until :meth:`commit`. Retrying is harmless."""
        self.store.insert_rows(
            STAGING_TABLE,
            [
                (name, push_id, offset + i, r.id, r.input, r.expected, r.metadata, int(r.deleted))
                for i, r in enumerate(rows)
            ],
            [
                "dataset",
                "push_id",
                "position",
                "row_id",
                "input",
                "expected",
                "metadata",
                "deleted",
            ],
        )

    def commit(
        self,
        name: str,
        push_id: str,
        total: int,
        *,
        description: str | None = None,
        source: str | None = None,
    ) -> dict[str, Any]:
        """Turn a staged push of ``total`` rows into the next version, all or nothing."""
        with self._commit_lock:
            done = self._committed(name, push_id)
            if done is not None:
                return done
            self._check_staged(name, push_id, total)
            version = self._next_version(name)
            params = {"name": name, "push": push_id, "version": version}
            # Each position once: a retried chunk may have been staged twice.
            self.store.command(
                f"""INSERT INTO {ROWS_TABLE}
    (dataset, version, position, row_id, input, expected, metadata, deleted)
SELECT dataset, {{version:UInt32}}, position, row_id, input, expected, metadata, deleted
FROM {STAGING_TABLE} WHERE dataset = {{name:String}} AND push_id = {{push:String}}
ORDER BY position LIMIT 1 BY position""",
                params,
            )
            live = self.store.query(
                f"SELECT count() FROM ({_LIVE_ROWS})",
                {"name": name, "version": version, "pending": version},
            )[0][0]
            self.store.insert_rows(
                VERSIONS_TABLE,
                [(name, version, push_id, live, total, description or "", source or "")],
                ["dataset", "version", "push_id", "rows", "changed", "description", "source"],
            )
        committed = self._committed(name, push_id)
        assert committed is not None  # inserted just above
        return committed

    def push(
        self,
        name: str,
        rows: Sequence[StoredRow],
        *,
        description: str | None = None,
        source: str | None = None,
        push_id: str | None = None,
        chunk_rows: int = 10_000,
    ) -> dict[str, Any]:
        """Stage and commit in one go (the API's one-request push, the CLI's direct mode)."""
        if not rows:
            raise DatasetError(f"nothing to push to dataset {name!r}: no rows")
        push_id = push_id or uuid.uuid4().hex
        for start in range(0, len(rows), chunk_rows):
            self.stage(name, push_id, start, rows[start : start + chunk_rows])
        return self.commit(name, push_id, len(rows), description=description, source=source)

    def append(self, name: str, data: Any, *, description: str | None = None) -> dict[str, Any]:
        """Add rows from a list of dicts or a .csv / .jsonl / .json path as a new version,
        checked as the SDK's ``Dataset.append`` checks them (a bad row stores nothing).

        >>> datasets.append("qa", "qa.csv", description="from tickets")   # doctest: +SKIP
        {'name': 'qa', 'version': 2, 'rows': 124, 'changed': 4, 'source': 'csv', ...}
        """
        collected = collect_rows(data)
        return self.push(
            name, stored_rows(collected), description=description, source=collected.source
        )

    def _committed(self, name: str, push_id: str) -> dict[str, Any] | None:
        rows = self.store.query_dicts(
            f"""SELECT version, rows, changed, description, source, created_at
FROM {VERSIONS_TABLE} WHERE dataset = {{name:String}} AND push_id = {{push:String}}""",
            {"name": name, "push": push_id},
        )
        return _version_json(name, rows[0]) if rows else None

    def _check_staged(self, name: str, push_id: str, total: int) -> None:
        params = {"name": name, "push": push_id}
        staged, top = self.store.query(
            f"""SELECT uniqExact(position), max(position) FROM {STAGING_TABLE}
WHERE dataset = {{name:String}} AND push_id = {{push:String}}""",
            params,
        )[0]
        if staged != total or (total and top != total - 1):
            raise DatasetError(
                f"push {push_id} of dataset {name!r} has {staged} of its {total} rows staged; "
                "send the missing chunks (or start the push again), then commit"
            )
        doubled = self.store.query(
            f"""SELECT row_id, groupArray(position) FROM (
    SELECT row_id, position FROM {STAGING_TABLE}
    WHERE dataset = {{name:String}} AND push_id = {{push:String}}
    ORDER BY position LIMIT 1 BY position
) GROUP BY row_id HAVING count() > 1 ORDER BY min(position) LIMIT 3""",
            params,
        )
        if doubled:
            row_id, positions = doubled[0]
            raise DatasetError(
                f"rows {', '.join(map(str, sorted(positions)))} of the push share the id "
                f"{row_id!r}; give each row a distinct id or drop the duplicate"
            )

    def _next_version(self, name: str) -> int:
        # Rows of a commit that died half-way carry a version that was never recorded: skip it
        # too, so those rows can never join a later version.
        top = self.store.query(
            f"""SELECT greatest(
    (SELECT max(version) FROM {VERSIONS_TABLE} WHERE dataset = {{name:String}}),
    (SELECT max(version) FROM {ROWS_TABLE} WHERE dataset = {{name:String}}))""",
            {"name": name},
        )[0][0]
        return int(top or 0) + 1

    def from_experiment(
        self, name: str, experiment_id: str, *, description: str | None = None
    ) -> dict[str, Any]:
        """A new version of ``name`` from the ``eval`` root spans of run ``experiment_id``
        (resolved by the caller): one row per row id, from its lowest trial (trial 0 when the
        emitter numbers trials from 0)."""
        rows = experiment_rows(self.store, experiment_id)
        if not rows:
            raise DatasetNotFound(
                f"experiment {experiment_id} has no eval root spans stored (expired, or not "
                "written by an evalhouse runner); a dataset is built from those spans"
            )
        return self.push(name, rows, description=description, source=f"experiment:{experiment_id}")


def _ranges(numbers: list[int]) -> str:
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    return ", ".join(map(str, numbers))
