"""Writing OTLP requests into ClickHouse: ClickHouse parses them, a view flattens them."""

from __future__ import annotations

from typing import Any, Protocol

from evalhouse.store._client import Store
from evalhouse.store._otlp import SIGNALS, Signal, format_settings, ingest_column_name
from evalhouse.store._schema import ingest_table_name


class SpanSink(Protocol):
    """Where the collector's writer puts batches; the seam tests use to inject outages."""

    def insert_otlp(self, signal: Signal, payload: bytes, token: str) -> None: ...


class OtlpSink:
    """Inserts length-delimited OTLP export requests with a deduplication token.

    A retry of the same batch with the same token is dropped by ClickHouse, so replaying a
    batch after a crash never duplicates spans. On a cluster (``Store(..., cluster=...)``) the
    store adds what carries the token through the ingest view and the Distributed table to the
    shards (:meth:`Topology.insert_settings`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        path = store.embedded_path
        self._schema_dir = path / "format_schemas" if path is not None else None
        self._settings = {signal: format_settings(signal, self._schema_dir) for signal in SIGNALS}

    def settings(self, signal: Signal, token: str) -> dict[str, Any]:
        """Every setting an insert of ``signal`` carries, the store's topology included.

        >>> sink = OtlpSink(Store(dsn, cluster="c"))
        >>> sink.settings("traces", "t")["distributed_foreground_insert"]
        1
        """
        return self.store.write_settings(self._own_settings(signal, token)) or {}

    def _own_settings(self, signal: Signal, token: str) -> dict[str, Any]:
        return {**self._settings[signal], "insert_deduplication_token": token}

    def insert_otlp(self, signal: Signal, payload: bytes, token: str) -> None:
        # The store adds the topology's settings to every insert itself.
        self.store.insert_raw(
            ingest_table_name(signal),
            [ingest_column_name(signal)],
            payload,
            fmt="Protobuf",
            settings=self._own_settings(signal, token),
        )
