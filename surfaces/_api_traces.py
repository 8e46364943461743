"""``GET /api/traces/{trace_id}``: every span of one trace, for the web UI's trace page.

The trace is read by :func:`evalhouse.explorer.trace_detail`: the tree of
:func:`evalhouse.evaluators.read_trace` (spans, costs, messages, values, which model calls
count: the rules the experiment rows use), the trace's row and each model call's chat. This
route checks the id and
maps the answer (errors become statuses in ``_api_common.py``).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import normalise_trace_id
from evalhouse.explorer import trace_detail
from evalhouse.store import Store

__all__ = ["routes"]


def routes(store: Store, settings: Settings) -> list[Route]:
    async def trace(request: Request) -> Response:
        raw = request.path_params["trace_id"]
        trace_id = normalise_trace_id(raw)
        if trace_id is None:
            raise InvalidRequest(
                f"{raw!r} is not a trace id: expected hex digits "
                "(32 of them, as in the experiment rows' trace_id)"
            )
        return JSONResponse(await run_in_threadpool(trace_detail, store, trace_id))

    return [Route("/api/traces/{trace_id}", trace, methods=["GET"])]
