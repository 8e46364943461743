"""Datasets over the API: ``/api/datasets...`` (the service is :mod:`evalhouse.datasets`).

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

Each route parses its request, calls one method of :class:`evalhouse.datasets.Datasets` and
maps the answer; errors become statuses in ``_api_common.py``. ``from-experiment`` first
resolves the experiment with the one rule every ``{id}`` follows
(:func:`evalhouse.evaluators.resolve_experiment`: an id, or a name meaning its latest run,
including a run stored but not yet rebuilt by the evaluator).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.dataset_rows import DatasetError, check_name
from evalhouse.datasets import Datasets, wire_rows
from evalhouse.evaluators import resolve_experiment
from evalhouse.store import Store
from evalhouse.surfaces._api_common import BodyTooLarge

__all__ = ["routes"]

MAX_REQUEST_BYTES = 256 * 1024 * 1024
MAX_PAGE_ROWS = 50_000
DEFAULT_PAGE_ROWS = 10_000
_PUSH_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_MAX_TEXT = 10_000


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


_TOO_LARGE = (
    f"request body over {MAX_REQUEST_BYTES // 2**20} MiB; send the rows in chunks "
    "with POST /api/datasets/{name}/pushes/{push_id}/rows"
)


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_REQUEST_BYTES:
        raise BodyTooLarge(_TOO_LARGE)
    body = await request.body()
    if len(body) > MAX_REQUEST_BYTES:
        raise BodyTooLarge(_TOO_LARGE)
    return body


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
            raw = await _json_body(request) if body else None
            result = await run_in_threadpool(work, request, raw)
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
        run = resolve_experiment(store, experiment, stored=True)
        return datasets.from_experiment(name, run.id, description=_text(payload, "description"))

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
