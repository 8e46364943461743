"""Online rules over HTTP (the service is :class:`evalhouse.online.Rules`).

- ``POST /api/rules`` ``{"name", "scope", "filter", "where", "sample", "scorers", "mapping",
  "budget_usd_per_day", "delay_s", "enabled"}`` — a new rule (version 1); 409 if the name is
  taken.
- ``GET /api/rules`` — every rule with its headline counts; ``GET /api/rules/{name}`` — the
  rule, its status (matched, sampled, sampled out, scored, skipped with reasons, scorer
  errors, spend today, pending, lag, late spans), versions and backfills.
- ``PUT /api/rules/{name}`` — a new version (fields given replace the current ones);
  ``DELETE /api/rules/{name}`` — disable it (scores stay).
- ``POST /api/rules/{name}/estimate?since=7d`` — targets, sampled, judge calls, tokens and
  cost on past traffic, before spending anything; ``POST /api/rules/{name}/backfill?since=``
  — score past targets (the daemon does it, within the budget).
- ``GET /api/rules/{name}/export?format=trainloop&since=`` — the rule as a TrainLoop suite.

Routes parse, call one service method and answer its JSON; errors become statuses in
``_api_common.py``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest
from evalhouse.online import Rules, decode_body, trainloop_suite
from evalhouse.store import Store
from evalhouse.surfaces._api_common import threaded

__all__ = ["routes"]

_USAGE = (
    '{"name": "support-quality", "filter": "tag:support", "sample": 0.2, '
    '"scorers": ["llm_judge:helpfulness"], "budget_usd_per_day": 5}'
)


def routes(store: Store, settings: Settings) -> list[Route]:
    rules = Rules(store, settings)

    def name(request: Request) -> str:
        value: str = request.path_params["name"]
        return value

    def params(request: Request) -> dict[str, str]:
        return dict(request.query_params)

    def export(request: Request, _: bytes) -> Any:
        fmt = request.query_params.get("format", "trainloop")
        if fmt != "trainloop":
            raise InvalidRequest(f"format={fmt!r}: a rule exports as trainloop")
        return trainloop_suite(store, name(request), params(request))

    return [
        Route(
            "/api/rules",
            threaded(lambda r, b: rules.create(decode_body(b, _USAGE)), 201),
            methods=["POST"],
        ),
        Route("/api/rules", threaded(lambda r, b: rules.list()), methods=["GET"]),
        Route(
            "/api/rules/{name}/estimate",
            threaded(lambda r, b: rules.estimate(name(r), params(r))),
            methods=["POST"],
        ),
        Route(
            "/api/rules/{name}/backfill",
            threaded(lambda r, b: rules.backfill(name(r), params(r)), 202),
            methods=["POST"],
        ),
        Route("/api/rules/{name}/export", threaded(export), methods=["GET"]),
        Route("/api/rules/{name}", threaded(lambda r, b: rules.get(name(r))), methods=["GET"]),
        Route(
            "/api/rules/{name}",
            threaded(lambda r, b: rules.update(name(r), decode_body(b, _USAGE))),
            methods=["PUT"],
        ),
        Route(
            "/api/rules/{name}", threaded(lambda r, b: rules.disable(name(r))), methods=["DELETE"]
        ),
    ]
