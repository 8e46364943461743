"""Replays over HTTP (the service is :class:`evalhouse.replay.Replays`, ``docs/replay.md``).

- ``POST /api/replays`` ``{"filter", "where", "since", "limit", "models", "base_url",
  "scorers", "concurrency", "budget_usd", "name"}`` — checks the request and the cohort, starts
  the replay in the background: 202 ``{"id", "state", ...}``.
- ``GET /api/replays/{id}`` — its progress (state, calls done per model, spend), then
  ``result``: the same body ``evalhouse replay --json`` prints. ``GET /api/replays`` — recent
  replays of this server.
- ``POST /api/replays/estimate`` (same fields; ``models`` optional) — the dry run: the cohort
  and, per model, the tokens and cost a replay would take, spending nothing.

Routes parse, call one service method and answer its JSON; errors become statuses in
``_api_common.py``.
"""

from __future__ import annotations

from starlette.routing import Route

from evalhouse.config import Settings
from evalhouse.evaluators.results import Results
from evalhouse.online import decode_body
from evalhouse.replay import REPLAY_USAGE, Replays, ReplaySpec
from evalhouse.store import Store
from evalhouse.surfaces._api_common import threaded
from evalhouse.surfaces._replay_child import ChildReplayer
from evalhouse.surfaces._replay_sdk import collector_endpoint, sdk_runner

__all__ = ["routes"]


def routes(store: Store, settings: Settings) -> list[Route]:
    replays = Replays(
        store,
        lambda: sdk_runner(settings),
        Results.from_settings(store, settings),
        replayer=ChildReplayer(
            collector_endpoint(settings), next(iter(settings.api_key_values()), None)
        ),
    )

    def spec(body: bytes, *, need_models: bool = True) -> ReplaySpec:
        return ReplaySpec.from_json(decode_body(body, REPLAY_USAGE), need_models=need_models)

    return [
        Route(
            "/api/replays/estimate",
            threaded(lambda r, b: replays.estimate(spec(b, need_models=False))),
            methods=["POST"],
        ),
        Route("/api/replays", threaded(lambda r, b: replays.start(spec(b)), 202), methods=["POST"]),
        Route("/api/replays", threaded(lambda r, b: replays.list()), methods=["GET"]),
        Route(
            "/api/replays/{id}",
            threaded(lambda r, b: replays.get(r.path_params["id"])),
            methods=["GET"],
        ),
    ]
