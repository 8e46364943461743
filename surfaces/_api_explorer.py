"""The production explorer over HTTP: ``GET /api/traces``, ``/api/sessions``,
``/api/sessions/{session_id}`` and ``/api/usage``.

Each route reads its parameters with the request type of :mod:`evalhouse.explorer` (one
declaration for the API and the CLI), calls one explorer function in a worker thread and
answers its JSON. Errors are raised (a bad filter term is an ``InvalidRequest``) and become
statuses in ``_api_common.py``. ``GET /api/traces/{trace_id}`` lives in ``_api_traces.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.explorer import (
    SessionRequest,
    SessionsRequest,
    TracesRequest,
    UsageRequest,
    list_sessions,
    list_traces,
    session_detail,
    usage,
)
from evalhouse.store import Store

__all__ = ["routes"]


def routes(store: Store, settings: Settings) -> list[Route]:
    def answer(work: Callable[[dict[str, str]], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            params = dict(request.query_params)
            params.update(request.path_params)
            return JSONResponse(await run_in_threadpool(work, params))

        return endpoint

    return [
        Route(
            "/api/traces",
            answer(lambda p: list_traces(store, TracesRequest.from_params(p))),
            methods=["GET"],
        ),
        Route(
            "/api/sessions",
            answer(lambda p: list_sessions(store, SessionsRequest.from_params(p))),
            methods=["GET"],
        ),
        Route(
            "/api/sessions/{session_id:path}",
            answer(lambda p: session_detail(store, SessionRequest.from_params(p["session_id"], p))),
            methods=["GET"],
        ),
        Route(
            "/api/usage",
            answer(lambda p: usage(store, UsageRequest.from_params(p))),
            methods=["GET"],
        ),
    ]
