"""What the online-evaluation tests share: a store with a collector and the HTTP API on loopback
(module-scoped), production traces sent by the real OpenTelemetry SDK, JSON calls.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import clone_database, collector_settings, wait_for
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.config import Settings, load_settings
from evalhouse.evaluators._summaries import Summarizer
from evalhouse.store import SHARDS, Store
from evalhouse.surfaces.api import api_app

API_KEY = "online-test-key"


@dataclass
class Online:
    """A store, a collector writing into it, and the API over it."""

    store: Store
    grpc: str
    api: str
    settings: Settings


@contextmanager
def online(
    chdb_dsn: str,
    template: str,
    folder: Path,
    *,
    keys: frozenset[str] = frozenset(),
    **overrides: Any,
) -> Iterator[Online]:
    store = clone_database(chdb_dsn, template, f"online_{uuid.uuid4().hex[:10]}")
    collector = Collector(collector_settings(folder / "collector"), store)
    addresses = collector.start()
    settings = load_settings(data_dir=folder / "data", **overrides)
    server = AsgiServer.start(api_app(store, ApiKeys(keys), settings), "127.0.0.1", 0, "API")
    try:
        yield Online(store, addresses.grpc, f"http://127.0.0.1:{server.port}", settings)
    finally:
        server.stop()
        collector.stop()
        evalhouse.init(exporter=InMemorySpanExporter())  # stop exporting to the collector


def call(
    api: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    **params: Any,
) -> tuple[int, Any]:
    """One JSON call; (status, decoded body)."""
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{api}{path}" + (f"?{query}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def summarize_all(store: Store) -> int:
    """The summarizer over every shard until idle (as the daemon does, nothing left waiting)."""
    summarizer = Summarizer(store, quiet_ms=0, worker=f"test-{uuid.uuid4().hex[:6]}")
    written = 0
    while True:
        now = store.query("SELECT toUnixTimestamp64Milli(now64(3))")[0][0] + 1
        written += summarizer.run(range(SHARDS), now)
        if not summarizer.behind:
            return written


def stored_spans(store: Store, at_least: int, timeout: float = 60) -> None:
    wait_for(lambda: store.query("SELECT count() FROM otel_traces")[0][0] >= at_least, timeout)
