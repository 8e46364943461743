"""``evalhouse serve``: collector and API in one process over the embedded store.

chDB allows one process per data directory, so this process owns it; it writes
``<data-dir>/server.json`` so that other commands (``evalhouse sql``) find its API instead.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from evalhouse.asgi import AsgiServer, bind
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.config import Settings
from evalhouse.store import migrate
from evalhouse.surfaces._cli_common import open_store
from evalhouse.surfaces.api import api_app

logger = logging.getLogger(__name__)

SERVER_FILE = "server.json"
# Spans waiting in the WAL above which trace summaries give way to ingest.
_SUMMARIES_YIELD_SPANS = 20_000


def server_file(data_dir: Path) -> Path:
    return data_dir / SERVER_FILE


def running_server(data_dir: Path) -> dict[str, Any] | None:
    """The API address of a live ``serve`` owning ``data_dir``, if there is one."""
    path = server_file(data_dir)
    try:
        info: dict[str, Any] = json.loads(path.read_text())
        os.kill(int(info["pid"]), 0)
    except (OSError, ValueError, KeyError):
        return None
    return info


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait()


def _side_by_side(stops: list[Any]) -> None:
    threads = [threading.Thread(target=stop, name="evalhouse-stop") for stop in stops]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _check_ports(settings: Settings, with_api: bool) -> None:
    """Fail before touching the store when a port is taken: one clear line, nothing half-open."""
    ports = [("OTLP/gRPC", settings.grpc_port), ("OTLP/HTTP", settings.http_port)]
    if with_api:
        ports.append(("API", settings.ui_port))
    for what, port in ports:
        if port:
            bind(settings.host, port, what).close()


def run_collector(settings: Settings, *, with_api: bool, announce: Any = print) -> None:
    """Open the store, migrate, start collector (and API), run until SIGINT/SIGTERM."""
    _check_ports(settings, with_api)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    if settings.embedded:
        migrate(store, cluster=settings.cluster)
        prepare = None
    else:
        # A server may be down at start: the collector spools and migrates once it is up.
        def prepare() -> None:
            migrate(store, cluster=settings.cluster)

    # The evaluator daemon runs in this process: chDB allows one process per data directory.
    evaluator = None
    if with_api and settings.evaluator_enabled:
        from evalhouse.evaluators import Evaluator

        # Trace summaries wait while the collector is behind by a burst: ingest first. Live
        # traffic always has a few batches in flight; waiting on those kept summaries (and
        # the online rules behind them) up to 30 s late at 1,000 traces/s.
        evaluator = Evaluator(
            settings, busy=lambda: collector.wal.backlog_spans > _SUMMARIES_YIELD_SPANS
        )
    collector = Collector(settings, store, prepare_store=prepare)
    addresses = collector.start()
    api: AsgiServer | None = None
    try:
        if evaluator is not None:
            evaluator.start()
        if with_api:
            api = AsgiServer.start(
                api_app(store, ApiKeys(settings.api_key_values()), settings),
                settings.host,
                settings.ui_port,
                "API",
            )
            info = {"pid": os.getpid(), "api": f"http://{settings.host}:{api.port}"}
            server_file(settings.data_dir).write_text(json.dumps(info))
        announce(f"evalhouse {'serve' if with_api else 'collector'} on {store.safe_dsn}")
        announce(f"  OTLP/gRPC  {addresses.grpc}")
        announce(f"  OTLP/HTTP  {addresses.http}  (also /metrics)")
        if api is not None:
            announce(f"  Web UI     http://{settings.host}:{api.port}/")
            announce(f"  API        http://{settings.host}:{api.port}/api")
        if evaluator is not None:
            announce(
                f"  Evaluator  experiment rows {settings.evaluator_quiet_seconds:g} s after a "
                "trace goes quiet"
            )
        announce("Ctrl-C to stop.")
        _wait_for_signal()
        announce("shutting down: writing pending spans...")
    finally:
        # A runaway read-only query would hold its session (and keep the API busy) until its
        # time limit: cancel them before waiting for anything to stop. Then the evaluator, the
        # API and the collector's listeners stop side by side (each bounded), so that SIGTERM
        # ends serve within 10 s; the writer drains what is pending last.
        store.cancel()
        _side_by_side(
            [
                *([evaluator.stop] if evaluator is not None else []),
                *([api.stop] if api is not None else []),
                collector.stop_receiving,
            ]
        )
        if api is not None:
            server_file(settings.data_dir).unlink(missing_ok=True)
        collector.stop()
        store.close()
    announce("stopped.")
