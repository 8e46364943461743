"""Pieces every API route module uses: error bodies and the API-key gate."""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from evalhouse.auth import UNAUTHENTICATED_MESSAGE, ApiKeys

# Reachable without a key, so load balancers and probes can check liveness.
PUBLIC_PATHS = frozenset({"/api/health"})


def error(status: int, message: str) -> JSONResponse:
    """The API's error body: ``{"error": "<what went wrong and what to do>"}``."""
    return JSONResponse({"error": message}, status)


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
