"""The HTTP API on the UI port; the CLI, the SDK and the web UI all use it.

``POST /api/sql`` with JSON ``{"query": "...", "format": "JSONEachRow"}`` runs the query with
ClickHouse's ``readonly=1`` and returns ClickHouse's output in that format. This is how
``evalhouse sql`` reaches an embedded store that ``evalhouse serve`` holds. Each group of
routes lives in an ``_api_*`` module with a ``routes(store, settings)`` function; routes raise
evalhouse errors and the handlers of ``_api_common.py`` turn them into statuses; API keys,
when configured, guard every route except ``GET /api/health``. Bodies are capped at
``api_max_body_bytes`` and the listener limits of :mod:`evalhouse.asgi` apply to every route.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware

from evalhouse.asgi import GuardedApp, Limits
from evalhouse.auth import ApiKeys
from evalhouse.config import Settings, load_settings
from evalhouse.store import Store
from evalhouse.surfaces import (
    _api_datasets,
    _api_evaluator,
    _api_experiments,
    _api_explorer,
    _api_feedback,
    _api_from_traces,
    _api_queues,
    _api_replays,
    _api_rules,
    _api_sql,
    _api_traces,
    _ui,
)
from evalhouse.surfaces._api_common import PUBLIC_PATHS, RequireApiKey, exception_handlers
from evalhouse.surfaces._api_sql import SQL_FORMATS

__all__ = ["SQL_FORMATS", "api_app"]

# The UI last: its catch-all page route must not shadow an API route.
_ROUTE_MODULES = (
    _api_sql,
    _api_datasets,
    _api_traces,
    _api_explorer,
    _api_feedback,
    _api_from_traces,
    _api_queues,
    _api_rules,
    _api_replays,
    _api_experiments,
    _api_evaluator,
    _ui,
)


def api_app(store: Store, keys: ApiKeys, settings: Settings | None = None) -> GuardedApp:
    """The API and UI over ``store``; ``settings`` (read once, default: the environment and
    evalhouse.toml) give the routes their scorer, judge and comparison settings, and the
    listener its limits."""
    settings = settings if settings is not None else load_settings()
    app = Starlette(
        routes=[route for module in _ROUTE_MODULES for route in module.routes(store, settings)],
        middleware=[Middleware(RequireApiKey, keys=keys)],
        # Errors become statuses here, in one table (surfaces/_api_common.py), not per route.
        exception_handlers=exception_handlers(),
    )
    return GuardedApp(
        app,
        Limits.from_settings(settings, max_body_bytes=settings.api_max_body_bytes),
        # Probes (the public paths) are answered even when every request slot is busy.
        health_paths=PUBLIC_PATHS,
        too_large_advice="send less per request (split a dataset upload into several), or "
        "raise EVALHOUSE_API_MAX_BODY_BYTES",
    )
