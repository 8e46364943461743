"""What every ``evalhouse`` subcommand shares: store and listener flags, settings, and the
switch between the running server's API and a store opened here (:func:`served_or_store`).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalhouse.api_client import ApiClient
from evalhouse.config import Settings, load_settings
from evalhouse.errors import EvalhouseError

# The store needs the server extra: imported when a command opens one, not at CLI start.
if TYPE_CHECKING:
    from evalhouse.store import Store

__all__ = [
    "listener_flags",
    "open_store",
    "require_data",
    "served_or_store",
    "serving",
    "settings_from",
    "store_flags",
]

# argparse's type for ``add_subparsers()`` results; private in the standard library.
Commands = Any


def store_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--data-dir", type=Path, help="embedded store directory (default .evalhouse)"
    )
    group.add_argument(
        "--clickhouse", metavar="DSN", help="ClickHouse DSN, e.g. http://user:pass@host:8123/db"
    )


def listener_flags(parser: argparse.ArgumentParser, *, ui: bool) -> None:
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
    parser.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318)")
    if ui:
        parser.add_argument("--ui-port", type=int, help="API and UI port (default 8700)")


def settings_from(args: argparse.Namespace) -> Settings:
    """Settings with the command line on top (flags > env > evalhouse.toml > defaults)."""
    return load_settings(
        data_dir=getattr(args, "data_dir", None) or getattr(args, "spool_dir", None),
        clickhouse_url=getattr(args, "clickhouse", None),
        host=getattr(args, "host", None),
        grpc_port=getattr(args, "grpc_port", None),
        http_port=getattr(args, "http_port", None),
        ui_port=getattr(args, "ui_port", None),
        cluster=getattr(args, "cluster", None),
    )


def open_store(settings: Settings) -> Store:
    """The store the settings name (DSN and cluster); the caller closes it."""
    from evalhouse.store import Store

    return Store(
        settings.dsn,
        cluster=settings.cluster,
        readonly=settings.readonly_limits(),
        readonly_dsn=settings.readonly_clickhouse_url,
    )


def _own_store(settings: Settings) -> bool:
    """The store is the data directory's embedded one (not a DSN given explicitly)."""
    return settings.embedded and not settings.clickhouse_url


def serving(settings: Settings) -> ApiClient | None:
    """The API of the ``evalhouse serve`` (or ``ui``) that owns the data directory's embedded
    store, if one runs: chDB allows one process per directory, so commands ask it."""
    from evalhouse.surfaces.serve import running_server

    server = running_server(settings.data_dir) if _own_store(settings) else None
    if server is None:
        return None
    return ApiClient(
        server["api"],
        api_key=next(iter(settings.api_key_values()), None),
        unreachable_advice=f"the evalhouse process that owns {settings.data_dir} does not "
        "answer; check that it still runs (or stop it and try again)",
    )


def require_data(settings: Settings) -> None:
    """Refuse, saying what to do, when the data directory holds no embedded store yet."""
    if _own_store(settings) and not (settings.data_dir / "clickhouse").exists():
        raise EvalhouseError(
            f"no evalhouse data in {settings.data_dir}; start 'evalhouse serve' there first, "
            "or pass --data-dir / --clickhouse"
        )


@contextmanager
def served_or_store(settings: Settings, *, create: bool = False) -> Iterator[ApiClient | Store]:
    """The running server's API client when one owns the data directory, else the store the
    settings name, opened here and closed on exit. A command does the same work either way
    (the API routes call the same middle-layer functions) and prints the same answer.

    ``create``: an embedded store that does not exist yet is created and migrated (a first
    dataset push) instead of refused.

    >>> with served_or_store(settings) as target:               # doctest: +SKIP
    ...     rows = target.get("/api/datasets") if isinstance(target, ApiClient) else ...
    """
    client = serving(settings)
    if client is not None:
        yield client
        return
    if not create:
        require_data(settings)
    store = open_store(settings)
    try:
        if create:
            from evalhouse.store import migrate

            migrate(store, cluster=settings.cluster)
        yield store
    finally:
        store.close()
