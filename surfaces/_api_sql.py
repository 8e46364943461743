"""``POST /api/sql`` (read-only SQL) and ``GET /api/health``."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import QueryError, StoreUnavailable
from evalhouse.store import SessionsBusy, Store
from evalhouse.surfaces._api_common import error

# Output formats offered to users; the name is checked against this list, never pasted raw.
SQL_FORMATS = (
    "Pretty",
    "PrettyCompact",
    "PrettyCompactMonoBlock",
    "Vertical",
    "Markdown",
    "CSV",
    "CSVWithNames",
    "TSV",
    "TabSeparated",
    "TabSeparatedWithNames",
    "JSON",
    "JSONEachRow",
    "JSONCompact",
)

_USAGE = 'body must be JSON: {"query": "SELECT ...", "format": "CSV"}'
_RETRY_AFTER_SECONDS = 2
_DISCONNECT_POLL_SECONDS = 0.25


async def _unless_disconnected(request: Request, store: Store, sql: str, fmt: str) -> bytes:
    """Run the query; if the client goes away first, cancel it in the engine (a runaway
    query would otherwise hold a read-only session until its time limit)."""
    tag = store.new_query_tag()
    task = asyncio.ensure_future(run_in_threadpool(store.readonly_query, sql, fmt, tag=tag))
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
        if done:
            return task.result()
        if await request.is_disconnected():
            await run_in_threadpool(store.cancel, tag)
            return await task


def routes(store: Store, settings: Settings) -> list[Route]:
    async def sql(request: Request) -> Response:
        try:
            payload: Any = json.loads(await request.body())
        except ValueError:
            return error(400, _USAGE)
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return error(400, _USAGE)
        fmt = payload.get("format") or "TabSeparatedWithNames"
        if fmt not in SQL_FORMATS:
            return error(400, f"unknown format {fmt!r}; choose one of {', '.join(SQL_FORMATS)}")
        try:
            output = await _unless_disconnected(request, store, payload["query"], fmt)
        except QueryError as exc:
            return error(400, str(exc))
        except SessionsBusy as exc:
            response = error(503, str(exc))
            response.headers["Retry-After"] = str(_RETRY_AFTER_SECONDS)
            return response
        except StoreUnavailable as exc:
            return error(503, str(exc))
        return Response(output, 200, media_type="text/plain; charset=utf-8")

    async def health(request: Request) -> Response:
        up = await run_in_threadpool(store.ping)
        return JSONResponse({"status": "ok" if up else "store unreachable"}, 200 if up else 503)

    return [
        Route("/api/sql", sql, methods=["POST"]),
        Route("/api/health", health, methods=["GET"]),
    ]
