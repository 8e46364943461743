"""Work on an existing experiment over the API: retrospective scoring and repricing.

``evalhouse score`` and ``evalhouse reprice`` call these when ``evalhouse serve`` holds the
embedded data directory (chDB allows one process per directory), so both run inside serve:

- ``POST /api/experiments/{id}/score`` with JSON ``{"scorers": ["exact_match"],
  "where": "scores['accuracy'] < 0.5", "rescore": false}`` (``where`` and ``rescore``
  optional) answers ``{"experiment_id", "rows", "runs", "skipped", "errors"}``.
- ``POST /api/experiments/{id}/reprice`` (no body) answers ``{"experiment_id", "rows",
  "price_data_version", "previous_versions"}``.

``{id}`` is an experiment id, or a name when exactly one run has it (both write to one run,
so a name several runs share is a 409 listing them). Errors are ``{"error": "..."}``
(statuses from ``_api_common.py``): 400 for a bad body or ``where`` expression, 404 for an
unknown experiment, 503 when ClickHouse is down. Scorers run with the server's settings
(timeout, concurrency, judge credentials).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest
from evalhouse.store import Store

__all__ = ["routes", "score_request"]

_SCORE_USAGE = (
    'body must be JSON: {"scorers": ["exact_match", ...], "where": "SQL condition" '
    '(optional), "rescore": false (optional)}'
)


def score_request(payload: Any) -> tuple[list[str], str | None, bool]:
    """(scorers, where, rescore) of a score request body; :class:`InvalidRequest` if bad.

    >>> score_request({"scorers": ["exact_match"], "rescore": True})
    (['exact_match'], None, True)
    """
    if not isinstance(payload, dict):
        raise InvalidRequest(_SCORE_USAGE)
    unknown = sorted(set(payload) - {"scorers", "where", "rescore"})
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; {_SCORE_USAGE}")
    scorers = payload.get("scorers")
    if (
        not isinstance(scorers, list)
        or not scorers
        or not all(isinstance(s, str) and s.strip() for s in scorers)
    ):
        raise InvalidRequest(f"'scorers' must be a non-empty list of scorer names; {_SCORE_USAGE}")
    where = payload.get("where")
    if where is not None and not isinstance(where, str):
        raise InvalidRequest(f"'where' must be a string of SQL; {_SCORE_USAGE}")
    rescore = payload.get("rescore", False)
    if not isinstance(rescore, bool):
        raise InvalidRequest(f"'rescore' must be true or false; {_SCORE_USAGE}")
    return scorers, where or None, rescore


def routes(store: Store, settings: Settings) -> list[Route]:
    def handle(work: Callable[[str, bytes], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            body = await request.body()
            report = await run_in_threadpool(work, request.path_params["id"], body)
            return JSONResponse(dataclasses.asdict(report))

        return endpoint

    def score(experiment: str, body: bytes) -> Any:
        from evalhouse.evaluators import score_experiment

        try:
            payload = json.loads(body or b"null")
        except ValueError as exc:
            raise InvalidRequest(_SCORE_USAGE) from exc
        scorers, where, rescore = score_request(payload)
        return score_experiment(
            store, experiment, scorers, settings=settings, where=where, rescore=rescore
        )

    def reprice(experiment: str, body: bytes) -> Any:
        from evalhouse.evaluators import reprice_experiment

        return reprice_experiment(store, experiment, settings=settings)

    # {id:path}: experiment names may hold slashes ("team/qa"); the suffix still anchors.
    return [
        Route("/api/experiments/{id:path}/score", handle(score), methods=["POST"]),
        Route("/api/experiments/{id:path}/reprice", handle(reprice), methods=["POST"]),
    ]
