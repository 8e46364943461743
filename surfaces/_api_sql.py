"""``POST /api/sql`` (read-only SQL) and ``GET /api/health``.

Errors are statuses through ``_api_common.py``: a refused query is a 400, every read-only
session busy a 503 with ``Retry-After``, ClickHouse down a 503.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest
from evalhouse.store import Store

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
        except ValueError as exc:
            raise InvalidRequest(_USAGE) from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            raise InvalidRequest(_USAGE)
        fmt = payload.get("format") or "TabSeparatedWithNames"
        if fmt not in SQL_FORMATS:
            raise InvalidRequest(f"unknown format {fmt!r}; choose one of {', '.join(SQL_FORMATS)}")
        output = await _unless_disconnected(request, store, payload["query"], fmt)
        return Response(output, 200, media_type="text/plain; charset=utf-8")

    async def health(request: Request) -> Response:
        up = await run_in_threadpool(store.ping)
        return JSONResponse({"status": "ok" if up else "store unreachable"}, 200 if up else 503)

    return [
        Route("/api/sql", sql, methods=["POST"]),
        Route("/api/health", health, methods=["GET"]),
    ]
