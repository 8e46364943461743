"""Pieces every API route module uses: error bodies, the one error → status table, the API-key
gate.

Routes raise evalhouse errors and never catch them to pick a status: :data:`STATUSES` maps
each error type to its status once, and :func:`exception_handlers` gives Starlette a handler
per type (Starlette picks the most specific class of the error's MRO), so every route, old or
new, answers the same error the same way, as ``{"error": "<what went wrong, what to do>"}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from evalhouse.auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.dataset_rows import DatasetError
from evalhouse.errors import (
    Conflict,
    EvalhouseError,
    ExperimentAmbiguous,
    InvalidRequest,
    NotFound,
    QueryError,
    StoreUnavailable,
)
from evalhouse.store import SessionsBusy

__all__ = [
    "PUBLIC_PATHS",
    "RETRY_AFTER_SECONDS",
    "STATUSES",
    "BodyTooLarge",
    "RequireApiKey",
    "error",
    "exception_handlers",
    "threaded",
]

# Reachable without a key, so load balancers and probes can check liveness.
PUBLIC_PATHS = frozenset({"/api/health"})
# What a client told "busy" waits before asking again.
RETRY_AFTER_SECONDS = 2


class BodyTooLarge(EvalhouseError):
    """A request body over a route's own limit (the listener's limit answers before this)."""


# Each error type's status; a subclass not listed takes its nearest listed base's.
STATUSES: Mapping[type[EvalhouseError], int] = {
    InvalidRequest: 400,  # a parameter or body the caller can fix
    DatasetError: 400,  # rows, a file or a name that cannot become a dataset
    QueryError: 400,  # ClickHouse refused the caller's SQL (QueryRefused: our checks did)
    NotFound: 404,  # no such experiment, dataset or version
    ExperimentAmbiguous: 409,  # a name several runs share, where one run is needed
    Conflict: 409,  # a rule or queue name already taken
    BodyTooLarge: 413,
    StoreUnavailable: 503,  # ClickHouse unreachable
    SessionsBusy: 503,  # every read-only session busy: retry after RETRY_AFTER_SECONDS
    EvalhouseError: 500,
}


def error(status: int, message: str) -> JSONResponse:
    """The API's error body: ``{"error": "<what went wrong and what to do>"}``."""
    return JSONResponse({"error": message}, status)


async def _answer(request: Request, exc: Exception) -> Response:
    status = next(STATUSES[cls] for cls in type(exc).__mro__ if cls in STATUSES)
    response = error(status, str(exc))
    if isinstance(exc, SessionsBusy):
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def exception_handlers() -> dict[Any, Any]:
    """Starlette's ``exception_handlers`` for every type of :data:`STATUSES`."""
    return dict.fromkeys(STATUSES, _answer)


class RequireApiKey:
    """ASGI middleware: every ``/api/`` request except ``PUBLIC_PATHS`` needs a valid key.

    The web UI's pages and static assets hold no data, so they load without a key; the
    browser then sends the key with each API call.
    """

    def __init__(self, app: ASGIApp, keys: ApiKeys) -> None:
        self.app = app
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if path.startswith("/api/") and path not in PUBLIC_PATHS and self.keys.enabled:
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            if not self.keys.allows(headers):
                response: Response = error(401, UNAUTHENTICATED_MESSAGE)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def threaded(
    work: Callable[[Request, bytes], Any], status: int = 200
) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint that runs ``work(request, body)`` (store calls block) in the thread pool
    and answers its JSON with ``status``; errors go to the exception handlers."""

    async def endpoint(request: Request) -> Response:
        body = await request.body() if request.method in ("POST", "PUT") else b""
        return JSONResponse(await run_in_threadpool(work, request, body), status)

    return endpoint
