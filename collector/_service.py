"""The collector as one object: receivers → validation → write-ahead log → ClickHouse."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector._grpc import start_grpc
from evalhouse.collector._http import otlp_http_app
from evalhouse.collector._ingest import Ingest
from evalhouse.collector._metrics import Metrics
from evalhouse.collector._wal import Wal
from evalhouse.collector._writer import Writer
from evalhouse.config import Settings
from evalhouse.store import OtlpSink, SpanSink, Store

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Addresses:
    grpc: str
    http: str


class Collector:
    """Receives OTLP on gRPC and HTTP and stores it in ClickHouse.

    >>> collector = Collector(load_settings(), Store(dsn))   # doctest: +SKIP
    >>> addresses = collector.start()
    >>> collector.stop()
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        sink: SpanSink | None = None,
        prepare_store: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = Metrics()
        self.wal = Wal(
            settings.data_dir / "wal",
            fsync=settings.wal_fsync,
            max_backlog_bytes=settings.spool_max_bytes,
            dedup_window_seconds=settings.dedup_window_seconds,
        )
        self.ingest = Ingest(self.wal, self.metrics, settings.max_attribute_bytes)
        # Each writer thread inserts through a client of its own, so the inserts run at once
        # and the API's queries on ``store`` never wait behind one.
        threads = settings.writer_threads
        self._writer_stores: list[Store] = []
        sinks: list[SpanSink]
        if sink is not None:
            sinks = [sink] * threads
        else:
            self._writer_stores = [store.another() for _ in range(threads)]
            sinks = [OtlpSink(writer_store) for writer_store in self._writer_stores]
        self.writer = Writer(
            self.wal,
            sinks,
            self.metrics,
            max_spans=settings.batch_max_spans,
            prepare_store=prepare_store,
        )
        self.metrics.gauges.update(
            spool_bytes=lambda: self.wal.backlog_bytes,
            spool_spans=lambda: self.wal.backlog_spans,
            store_up=lambda: 1.0 if self.writer.store_healthy else 0.0,
        )
        self.keys = ApiKeys(settings.api_key_values())
        self._grpc: Any = None
        self._http: AsgiServer | None = None
        self._stop_logging = threading.Event()

    def start(self) -> Addresses:
        s = self.settings
        self.writer.start()
        self._grpc, grpc_port = start_grpc(self.ingest, self.keys, s)
        try:
            self._http = AsgiServer.start(
                otlp_http_app(self.ingest, self.keys, s),
                s.host,
                s.http_port,
                "OTLP/HTTP",
            )
        except OSError:
            self._grpc.stop(0)
            raise
        threading.Thread(target=self._log_metrics, name="evalhouse-metrics", daemon=True).start()
        return Addresses(grpc=f"{s.host}:{grpc_port}", http=f"http://{s.host}:{self._http.port}")

    def _log_metrics(self) -> None:
        while not self._stop_logging.wait(self.settings.metrics_log_interval):
            logger.info("collector %s", self.metrics.log_line())

    def stop_receiving(self) -> None:
        """Stop both listeners at once (each lets requests in progress finish, bounded)."""
        grpc_server, http_server = self._grpc, self._http
        self._grpc = self._http = None
        stoppers = []
        if grpc_server is not None:
            stoppers.append(threading.Thread(target=lambda: grpc_server.stop(grace=2).wait()))
        if http_server is not None:
            stoppers.append(threading.Thread(target=http_server.stop))
        for thread in stoppers:
            thread.start()
        for thread in stoppers:
            thread.join()

    def stop(self) -> None:
        """Stop receiving, write what is pending (bounded wait), close the log."""
        self._stop_logging.set()
        self.stop_receiving()
        self.writer.stop()
        self.wal.close()
        for writer_store in self._writer_stores:
            writer_store.close()
