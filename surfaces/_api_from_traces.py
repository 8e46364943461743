"""``POST /api/datasets/{name}/from-traces``: a new dataset version made of production traces
(the service is :func:`evalhouse.online.dataset_from_traces`)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.online import FROM_TRACES_USAGE, dataset_from_traces, decode_body
from evalhouse.store import Store

__all__ = ["routes"]


def routes(store: Store, settings: Settings) -> list[Route]:
    async def from_traces(request: Request) -> Response:
        body = decode_body(await request.body(), FROM_TRACES_USAGE)
        name = request.path_params["name"]
        return JSONResponse(await run_in_threadpool(dataset_from_traces, store, name, body), 201)

    return [Route("/api/datasets/{name}/from-traces", from_traces, methods=["POST"])]
