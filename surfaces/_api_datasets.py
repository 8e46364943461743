"""Datasets over the API: ``/api/datasets...``, and the SQL behind them.

Routes (JSON in and out; errors are ``{"error": "..."}``):

- ``GET  /api/datasets`` — every dataset: name, latest version, rows, versions, times.
- ``GET  /api/datasets/{name}?version=&offset=&limit=`` — rows of a version (default latest).
- ``GET  /api/datasets/{name}/versions`` — the version history.
- ``POST /api/datasets/{name}`` ``{"rows": [...], "description", "source", "push_id"}`` —
  a new version in one request.
- ``POST /api/datasets/{name}/pushes/{push_id}/rows`` ``{"offset": N, "rows": [...]}`` and
  ``POST /api/datasets/{name}/pushes/{push_id}/commit`` ``{"rows": TOTAL, ...}`` — a large
  push in chunks; nothing is visible until the commit.
- ``POST /api/datasets/{name}/from-experiment`` ``{"experiment": ID_OR_NAME}`` — a new
  version made of an experiment's rows.

The version number is chosen at commit under a lock, so concurrent pushes through one server
get distinct versions. A retried chunk or commit (same push id) is recognised, not repeated.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse import contract
from evalhouse.config import Settings
from evalhouse.dataset_rows import (
    DatasetError,
    NormalisedRow,
    check_name,
    json_text,
    normalise_row,
)
from evalhouse.encoding import row_id as input_row_id
from evalhouse.errors import EvalhouseError, QueryError, StoreUnavailable
from evalhouse.store import Store
from evalhouse.store._dataset_schema import ROWS_TABLE, STAGING_TABLE, VERSIONS_TABLE
from evalhouse.surfaces._api_common import error

__all__ = ["DatasetNotFound", "Datasets", "StoredRow", "routes"]

MAX_REQUEST_ROWS = 50_000
MAX_REQUEST_BYTES = 256 * 1024 * 1024
MAX_PAGE_ROWS = 50_000
DEFAULT_PAGE_ROWS = 10_000
_PUSH_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_MAX_TEXT = 10_000


class DatasetNotFound(EvalhouseError):
    """No such dataset, version or experiment."""


class StoredRow(NamedTuple):
    """A row as the tables keep it: JSON texts."""

    id: str
    input: str
    expected: str
    metadata: str
    deleted: bool = False


def stored_row(row: NormalisedRow, where: str) -> StoredRow:
    return StoredRow(
        row.id,
        json_text(row.input, where, "input"),
        json_text(row.expected, where, "expected"),
        json_text(row.metadata, where, "metadata"),
    )


def wire_rows(items: Any, offset: int = 0) -> list[StoredRow]:
    """Rows of a request body, checked; tombstones are ``{"id": ..., "deleted": true}``."""
    if not isinstance(items, list):
        raise DatasetError('"rows" must be a list of row objects')
    if len(items) > MAX_REQUEST_ROWS:
        raise DatasetError(
            f"{len(items)} rows in one request; send at most {MAX_REQUEST_ROWS} per request "
            "(split a large push with /pushes/{push_id}/rows)"
        )
    out = []
    for index, item in enumerate(items):
        where = f"row {offset + index}"
        if isinstance(item, dict) and item.get("deleted") is True:
            row_id = item.get("id")
            if not isinstance(row_id, str) or not row_id or set(item) - {"id", "deleted"}:
                raise DatasetError(f'{where}: a deletion is {{"id": "<row id>", "deleted": true}}')
            out.append(StoredRow(row_id, "null", "null", "null", True))
        else:
            out.append(stored_row(normalise_row(item, where), where))
    return out


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

    >>> datasets = Datasets(store)                                          # doctest: +SKIP
    >>> datasets.push("qa", [StoredRow("1", '"2+2"', '"4"', "null")])       # doctest: +SKIP
    {'name': 'qa', 'version': 1, 'rows': 1, 'changed': 1, ...}
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        # Versions are numbered at commit; one commit at a time keeps them distinct.
        self._commit_lock = threading.Lock()

    def summaries(self) -> dict[str, Any]:
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
        self, name: str, experiment: str, *, description: str | None = None
    ) -> dict[str, Any]:
        """A new version of ``name`` from an experiment's ``eval`` root spans: one row per
        row id, from its lowest trial (trial 0 when the emitter numbers trials from 0)."""
        found = self.store.query(
            """SELECT ExperimentId FROM otel_traces
WHERE Purpose = 'eval' AND (ExperimentId = {e:String} OR ExperimentName = {e:String})
GROUP BY ExperimentId
ORDER BY ExperimentId = {e:String} DESC, max(Timestamp) DESC LIMIT 1""",
            {"e": experiment},
        )
        if not found or not found[0][0]:
            raise DatasetNotFound(
                f"no experiment with id or name {experiment!r} (no eval root spans carry it); "
                "check the id with 'evalhouse sql \"SELECT DISTINCT ExperimentId, "
                "ExperimentName FROM otel_traces WHERE Purpose = 'eval'\"'"
            )
        experiment_id = found[0][0]
        spans = self.store.query(
            """SELECT RowId,
    SpanAttributes[{input:String}], mapContains(SpanAttributes, {input:String}),
    SpanAttributes[{expected:String}], mapContains(SpanAttributes, {expected:String}),
    SpanAttributes[{metadata:String}], mapContains(SpanAttributes, {metadata:String})
FROM otel_traces
WHERE Purpose = 'eval' AND ExperimentId = {id:String}
ORDER BY Trial, Timestamp, SpanId""",
            {
                "id": experiment_id,
                "input": contract.INPUT,
                "expected": contract.EXPECTED,
                "metadata": contract.METADATA,
            },
        )
        rows: dict[str, StoredRow] = {}
        for row_id, text_in, has_in, text_exp, has_exp, text_meta, has_meta in spans:
            value_in = _attribute_json(text_in, has_in)
            key = row_id or input_row_id(json.loads(value_in))
            if key not in rows:
                rows[key] = StoredRow(
                    key,
                    value_in,
                    _attribute_json(text_exp, has_exp),
                    _attribute_json(text_meta, has_meta),
                )
        return self.push(
            name,
            list(rows.values()),
            description=description,
            source=f"experiment:{experiment_id}",
        )


def _attribute_json(text: str, present: bool) -> str:
    """A wire-contract JSON attribute as stored JSON; text that is not JSON stays a string."""
    if not present:
        return "null"
    try:
        return json_text(json.loads(text), "span", "attribute")
    except (ValueError, DatasetError):
        return json.dumps(text, ensure_ascii=False)


def _ranges(numbers: list[int]) -> str:
    if numbers == list(range(numbers[0], numbers[-1] + 1)):
        return f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
    return ", ".join(map(str, numbers))


# --- HTTP ---------------------------------------------------------------------------------


def _int_param(request: Request, key: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise DatasetError(f"query parameter {key}={raw} must be an integer in {low}..{high}")
    return value


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise _TooLarge()
    body = await request.body()
    if len(body) > MAX_REQUEST_BYTES:
        raise _TooLarge()
    return body


class _TooLarge(EvalhouseError):
    def __init__(self) -> None:
        super().__init__(
            f"request body over {MAX_REQUEST_BYTES // 2**20} MiB; send the rows in chunks "
            "with POST /api/datasets/{name}/pushes/{push_id}/rows"
        )


def _decode(body: bytes, usage: str) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise DatasetError(f"body is not valid JSON ({exc}); {usage}") from exc
    if not isinstance(payload, dict):
        raise DatasetError(f"body must be a JSON object; {usage}")
    return payload


def _text(payload: dict[str, Any], key: str) -> str | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise DatasetError(f'"{key}" must be a string of at most {_MAX_TEXT} characters')
    return value


def _push_id(value: Any) -> str:
    if not isinstance(value, str) or not _PUSH_ID.fullmatch(value):
        raise DatasetError(
            f"invalid push id {value!r}: use 8-64 letters, digits, '_' or '-' (e.g. a uuid4 hex)"
        )
    return value


_PUSH_USAGE = 'send {"rows": [{"input": ..., "expected": ..., "metadata": ..., "id": ...}]}'


def routes(store: Store, settings: Settings) -> list[Route]:
    datasets = Datasets(store)

    def handle(
        work: Callable[[Request, Any], Any], *, body: bool = False
    ) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                raw = await _json_body(request) if body else None
                result = await run_in_threadpool(work, request, raw)
            except _TooLarge as exc:
                return error(413, str(exc))
            except (DatasetError, QueryError) as exc:
                return error(400, str(exc))
            except DatasetNotFound as exc:
                return error(404, str(exc))
            except StoreUnavailable as exc:
                return error(503, str(exc))
            except EvalhouseError as exc:
                return error(500, str(exc))
            if isinstance(result, bytes):
                return Response(result, 200, media_type="application/json")
            return JSONResponse(result)

        return endpoint

    def name_of(request: Request) -> str:
        return check_name(request.path_params["name"])

    def list_all(request: Request, raw: Any) -> Any:
        return datasets.summaries()

    def load(request: Request, raw: Any) -> Any:
        version = _int_param(request, "version", None, 1, 2**32 - 1)
        offset = _int_param(request, "offset", 0, 0, 2**63 - 1)
        limit = _int_param(request, "limit", DEFAULT_PAGE_ROWS, 1, MAX_PAGE_ROWS)
        return datasets.load_json(name_of(request), version, offset or 0, limit)

    def versions(request: Request, raw: Any) -> Any:
        return datasets.versions(name_of(request))

    def push(request: Request, raw: Any) -> Any:
        name = name_of(request)
        payload = _decode(raw, _PUSH_USAGE)
        push_id = payload.get("push_id")
        return datasets.push(
            name,
            wire_rows(payload.get("rows")),
            description=_text(payload, "description"),
            source=_text(payload, "source"),
            push_id=None if push_id is None else _push_id(push_id),
        )

    def stage(request: Request, raw: Any) -> Any:
        name, push_id = name_of(request), _push_id(request.path_params["push_id"])
        payload = _decode(raw, '{"offset": N, "rows": [...]}')
        offset = payload.get("offset")
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise DatasetError('"offset" must be the index of the chunk\'s first row (>= 0)')
        rows = wire_rows(payload.get("rows"), offset)
        datasets.stage(name, push_id, offset, rows)
        return {"staged": len(rows)}

    def commit(request: Request, raw: Any) -> Any:
        name, push_id = name_of(request), _push_id(request.path_params["push_id"])
        payload = _decode(raw, '{"rows": TOTAL, "description": "...", "source": "..."}')
        total = payload.get("rows")
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise DatasetError('"rows" must be the number of rows sent in the push (>= 1)')
        return datasets.commit(
            name,
            push_id,
            total,
            description=_text(payload, "description"),
            source=_text(payload, "source"),
        )

    def from_experiment(request: Request, raw: Any) -> Any:
        name = name_of(request)
        payload = _decode(raw, '{"experiment": "<experiment id or name>"}')
        experiment = _text(payload, "experiment")
        if not experiment:
            raise DatasetError('"experiment" must name an experiment id or name')
        return datasets.from_experiment(name, experiment, description=_text(payload, "description"))

    return [
        Route("/api/datasets", handle(list_all), methods=["GET"]),
        Route("/api/datasets/{name}", handle(load), methods=["GET"]),
        Route("/api/datasets/{name}", handle(push, body=True), methods=["POST"]),
        Route("/api/datasets/{name}/versions", handle(versions), methods=["GET"]),
        Route(
            "/api/datasets/{name}/pushes/{push_id}/rows", handle(stage, body=True), methods=["POST"]
        ),
        Route(
            "/api/datasets/{name}/pushes/{push_id}/commit",
            handle(commit, body=True),
            methods=["POST"],
        ),
        Route(
            "/api/datasets/{name}/from-experiment",
            handle(from_experiment, body=True),
            methods=["POST"],
        ),
    ]
