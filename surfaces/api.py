"""The HTTP API on the UI port: read-only SQL over the store, health.

``POST /api/sql`` with JSON ``{"query": "...", "format": "JSONEachRow"}`` runs the query with
ClickHouse's ``readonly=1`` and returns ClickHouse's output in that format. This is how
``evalhouse sql`` reaches an embedded store that ``evalhouse serve`` holds.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.collector._auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.errors import QueryError, StoreUnavailable
from evalhouse.store import Store

__all__ = ["SQL_FORMATS", "api_app"]

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


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status)


def api_app(store: Store, keys: ApiKeys) -> Starlette:
    async def sql(request: Request) -> Response:
        if not keys.allows(request.headers):
            return _error(401, UNAUTHENTICATED_MESSAGE)
        try:
            payload: Any = json.loads(await request.body())
        except ValueError:
            return _error(400, 'body must be JSON: {"query": "SELECT ...", "format": "CSV"}')
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return _error(400, 'body must be JSON: {"query": "SELECT ...", "format": "CSV"}')
        fmt = payload.get("format") or "TabSeparatedWithNames"
        if fmt not in SQL_FORMATS:
            return _error(400, f"unknown format {fmt!r}; choose one of {', '.join(SQL_FORMATS)}")
        try:
            output = await run_in_threadpool(store.readonly_query, payload["query"], fmt)
        except QueryError as exc:
            return _error(400, str(exc))
        except StoreUnavailable as exc:
            return _error(503, str(exc))
        return Response(output, 200, media_type="text/plain; charset=utf-8")

    async def health(request: Request) -> Response:
        up = await run_in_threadpool(store.ping)
        return JSONResponse({"status": "ok" if up else "store unreachable"}, 200 if up else 503)

    return Starlette(
        routes=[
            Route("/api/sql", sql, methods=["POST"]),
            Route("/api/health", health, methods=["GET"]),
        ]
    )
