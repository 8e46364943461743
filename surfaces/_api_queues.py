"""Review queues over HTTP (the service is :class:`evalhouse.online.Queues`).

- ``POST /api/queues`` ``{"name", "filter"/"where", "since", "sample", "limit",
  "score_configs": [{"name", "type": "numeric"|"categorical"|"boolean", "min", "max",
  "categories"}], "lock_seconds"}`` — a queue, filled with the traces chosen (201).
- ``GET /api/queues`` and ``GET /api/queues/{name}`` — queues and their progress.
- ``GET /api/queues/{name}/next?reviewer=ana`` — claims the next item for the reviewer (the
  one they hold, if any) for ``lock_seconds``; ``item`` is null when none is left.
- ``POST /api/queues/{name}/items/{trace_id}`` ``{"reviewer", "scores": {...}, "comment"}``
  or ``{"reviewer", "skip": true}`` — the reviewer's scores (``source = 'human'``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.online import QUEUE_USAGE, REVIEW_USAGE, Queues, decode_body
from evalhouse.store import Store
from evalhouse.surfaces._api_common import threaded

__all__ = ["routes"]


def routes(store: Store, settings: Settings) -> list[Route]:
    queues = Queues(store)

    def name(request: Request) -> str:
        value: str = request.path_params["name"]
        return value

    return [
        Route(
            "/api/queues",
            threaded(lambda r, b: queues.create(decode_body(b, QUEUE_USAGE)), 201),
            methods=["POST"],
        ),
        Route("/api/queues", threaded(lambda r, b: queues.list()), methods=["GET"]),
        Route(
            "/api/queues/{name}/next",
            threaded(lambda r, b: queues.next(name(r), r.query_params.get("reviewer", ""))),
            methods=["GET"],
        ),
        Route(
            "/api/queues/{name}/items/{trace_id}",
            threaded(
                lambda r, b: queues.review(
                    name(r), r.path_params["trace_id"], decode_body(b, REVIEW_USAGE)
                )
            ),
            methods=["POST"],
        ),
        Route("/api/queues/{name}", threaded(lambda r, b: queues.get(name(r))), methods=["GET"]),
    ]
