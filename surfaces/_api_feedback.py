"""Feedback and scores over HTTP: ``POST /api/feedback`` and ``GET /api/scores``.

- ``POST /api/feedback`` ``{"trace_id", "span_id"?, "session_id"?, "name", "value"? |
  "label"?, "comment"?, "author"?}`` stores a score (``source`` ``api`` when the request
  carries an API key, ``human`` otherwise) and answers it.
- ``GET /api/scores?trace_id=...`` (or ``session_id=``) lists every score of a trace (its
  spans' too) or a session, each with its target and source.

The service is :mod:`evalhouse.online`; errors become statuses in ``_api_common.py``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.auth import carries_key
from evalhouse.config import Settings
from evalhouse.online import Feedback, decode_body, list_scores, record_feedback
from evalhouse.store import Store

__all__ = ["routes"]

_USAGE = '{"trace_id": "<hex>", "name": "helpful", "value": 1, "comment": "..."}'


def routes(store: Store, settings: Settings) -> list[Route]:
    async def feedback(request: Request) -> Response:
        body = decode_body(await request.body(), _USAGE)
        source = "api" if carries_key(request.headers) else "human"
        stored = await run_in_threadpool(
            record_feedback, store, Feedback.from_json(body), source=source
        )
        return JSONResponse(stored, 201)

    async def scores(request: Request) -> Response:
        params = request.query_params
        answer = await run_in_threadpool(
            list_scores,
            store,
            trace_id=params.get("trace_id", ""),
            session_id=params.get("session_id", ""),
        )
        return JSONResponse(answer)

    return [
        Route("/api/feedback", feedback, methods=["POST"]),
        Route("/api/scores", scores, methods=["GET"]),
    ]
