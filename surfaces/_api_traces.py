"""``GET /api/traces/{trace_id}``: every span of one trace, for the web UI's trace page.

The trace is read by :func:`evalhouse.evaluators.read_trace` (spans, costs, messages, values,
which model calls count: the rules the experiment rows use); this route checks the id and
maps the answer (errors become statuses in ``_api_common.py``).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest, NotFound
from evalhouse.evaluators import normalise_trace_id, read_trace
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
        found = await run_in_threadpool(read_trace, store, trace_id)
        if found is None:
            raise NotFound(
                f"no span of trace {trace_id} is stored; check the id, and that the app sends "
                "its spans to this evalhouse (recent spans can take a moment to arrive)"
            )
        return JSONResponse(found)

    return [Route("/api/traces/{trace_id}", trace, methods=["GET"])]
