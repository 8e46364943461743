"""What every ``evalhouse`` subcommand shares: store and listener flags, settings, the API."""

from __future__ import annotations

import argparse
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from evalhouse.config import Settings, load_settings
from evalhouse.errors import EvalhouseError

__all__ = ["api_request", "listener_flags", "open_store", "settings_from", "store_flags"]

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


def open_store(settings: Settings) -> Any:
    """The store the settings name (DSN and cluster); the caller closes it."""
    from evalhouse.store import Store

    return Store(
        settings.dsn,
        cluster=settings.cluster,
        readonly=settings.readonly_limits(),
        readonly_dsn=settings.readonly_clickhouse_url,
    )


def api_request(
    api: str, path: str, payload: Any | None = None, *, api_key: str | None = None
) -> bytes:
    """Call the running server's HTTP API (POST JSON when ``payload`` is given, else GET)."""
    request = urllib.request.Request(
        f"{api}{path}",
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise EvalhouseError(message) from exc
    except urllib.error.URLError as exc:
        raise EvalhouseError(f"cannot reach the running server at {api}: {exc.reason}") from exc
