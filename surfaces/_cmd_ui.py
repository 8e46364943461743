"""``evalhouse ui``: the HTTP API and web UI alone, without the collector.

For server mode (``--clickhouse DSN``: the UI as its own service beside ``evalhouse
collector`` and ``evalhouse evaluator``), or to look at an embedded data directory that no
``evalhouse serve`` is running on (``serve`` already serves the UI on its UI port).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from evalhouse.errors import EvalhouseError, StoreUnavailable
from evalhouse.surfaces._cli_common import Commands, open_store, settings_from, store_flags

logger = logging.getLogger(__name__)


def register(commands: Commands) -> None:
    ui = commands.add_parser(
        "ui", help="the web UI and HTTP API alone (server mode: --clickhouse DSN)"
    )
    store_flags(ui)
    ui.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    ui.add_argument("--ui-port", type=int, help="API and UI port (default 8700)")
    ui.set_defaults(run=_ui, log_info=True)


def _ui(args: argparse.Namespace) -> int:
    from evalhouse.asgi import AsgiServer, bind
    from evalhouse.auth import ApiKeys
    from evalhouse.store import migrate
    from evalhouse.surfaces.api import api_app
    from evalhouse.surfaces.serve import _wait_for_signal, running_server, server_file

    def say(line: str) -> None:
        print(line, flush=True)

    settings = settings_from(args)
    if settings.embedded:
        server = running_server(settings.data_dir)
        if server is not None:
            raise EvalhouseError(
                f"an evalhouse process (serve or ui) already runs on {settings.data_dir} and "
                f"serves the UI at {server['api']}/ : open that, or stop it first"
            )
        if not (settings.data_dir / "clickhouse").exists():
            raise EvalhouseError(
                f"no evalhouse data in {settings.data_dir}; start 'evalhouse serve' there first "
                "or pass --data-dir / --clickhouse"
            )
    bind(settings.host, settings.ui_port, "UI").close()
    store = open_store(settings)
    try:
        _prepare(store, settings.cluster, migrate)
        api = AsgiServer.start(
            api_app(store, ApiKeys(settings.api_key_values()), settings),
            settings.host,
            settings.ui_port,
            "UI",
        )
        address = f"http://{_display_host(settings.host)}:{api.port}"
        wrote_server_file = False
        try:
            if settings.embedded:
                # This process now owns the data directory: let `evalhouse sql` find its API.
                info = {"pid": os.getpid(), "api": f"http://{settings.host}:{api.port}"}
                server_file(settings.data_dir).write_text(json.dumps(info))
                wrote_server_file = True
            say(f"evalhouse ui on {store.safe_dsn}")
            say(f"  UI   {address}/")
            say(f"  API  {address}/api")
            say("Ctrl-C to stop.")
            _wait_for_signal()
        finally:
            api.stop()
            if wrote_server_file:
                server_file(settings.data_dir).unlink(missing_ok=True)
    finally:
        store.close()
    say("stopped.")
    return 0


def _prepare(store: Any, cluster: str | None, migrate: Any) -> None:
    """Create the schema when it is missing; a UI may run as a user without DDL rights."""
    try:
        migrate(store, cluster=cluster)
    except StoreUnavailable:
        raise
    except EvalhouseError as exc:
        logger.warning(
            "could not apply schema migrations (%s); the UI reads the tables as they are. "
            "Run 'evalhouse migrate' as a user allowed to create tables",
            exc,
        )


def _display_host(host: str) -> str:
    # 0.0.0.0 is where it listens, not an address a browser can open.
    return "127.0.0.1" if host in ("0.0.0.0", "") else f"[{host}]" if ":" in host else host
