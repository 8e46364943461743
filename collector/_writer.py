"""The thread that moves batches from the write-ahead log into ClickHouse."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from evalhouse.collector._metrics import Metrics
from evalhouse.collector._wal import Batch, Wal
from evalhouse.errors import EvalhouseError, QueryError
from evalhouse.store import SpanSink

logger = logging.getLogger(__name__)

_MAX_BATCH_BYTES = 64 * 1024 * 1024
_MAX_BACKOFF = 30.0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(payloads: list[bytes]) -> bytes:
    """ClickHouse's ``Protobuf`` format: one varint-length-prefixed message per row."""
    return b"".join(_varint(len(p)) + p for p in payloads)


class Writer:
    """Insert WAL batches, one thread per sink, each on its own batches; on failure a thread
    keeps its batch (it stays in the WAL) and retries it with backoff.

    Two inserts at once keep both cores of a small machine busy: ClickHouse parses and
    flattens one batch while the other is written (``benchmarks/ingest.py``).
    """

    def __init__(
        self,
        wal: Wal,
        sinks: Sequence[SpanSink],
        metrics: Metrics,
        *,
        max_spans: int,
        prepare_store: Callable[[], None] | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("a writer needs at least one sink")
        self.wal = wal
        self.metrics = metrics
        self.max_spans = max_spans
        self.prepare_store = prepare_store
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=self._run, args=(sink,), name=f"evalhouse-writer-{i}", daemon=True
            )
            for i, sink in enumerate(sinks)
        ]
        self._prepare_lock = threading.Lock()
        self._store_ready = prepare_store is None
        self.store_healthy = True

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop after writing what is pending, waiting at most ``drain_seconds``."""
        deadline = time.monotonic() + drain_seconds
        while self.wal.backlog_bytes and self.store_healthy and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=drain_seconds + 30)

    def _run(self, sink: SpanSink) -> None:
        """One writer thread. An unexpected error (a full disk under the checkpoint, a bug)
        must not end it silently: it is logged, counted (``writer_errors``) and retried."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                self._step(sink)
                backoff = 0.5
            except Exception:
                self.metrics.add("writer_errors")
                logger.exception("WAL writer error; retrying in %.1f s", backoff)
                if self._stop.wait(backoff):
                    return
                backoff = min(_MAX_BACKOFF, backoff * 2)

    def _step(self, sink: SpanSink) -> None:
        """Claim the next batch and insert it (retrying with backoff until it is stored)."""
        if not self.wal.wait_for_data(timeout=0.2):
            return
        batch = self.wal.claim(self.max_spans, _MAX_BATCH_BYTES)
        if batch is None:
            return
        backoff = 0.5
        while not self._write(sink, batch):
            if self._stop.wait(backoff):
                return  # the batch stays in the WAL, in flight: replayed on restart
            backoff = min(_MAX_BACKOFF, backoff * 2)

    def _prepare(self) -> None:
        with self._prepare_lock:
            if not self._store_ready and self.prepare_store is not None:
                self.prepare_store()
                self._store_ready = True

    def _write(self, sink: SpanSink, batch: Batch) -> bool:
        try:
            if not self._store_ready:
                self._prepare()
            started = time.perf_counter()
            for signal, payloads in sorted(batch.payloads.items()):
                sink.insert_otlp(signal, _length_delimited(payloads), f"{batch.token}:{signal}")
            self.metrics.observe_insert(time.perf_counter() - started)
        except QueryError as exc:
            self.metrics.add("insert_failures")
            self.store_healthy = True
            logger.error(
                "ClickHouse refused a batch (%s); it stays in the spool and is retried", exc
            )
            return False
        except EvalhouseError as exc:
            self.metrics.add("insert_failures")
            if self.store_healthy:
                logger.warning("spooling to disk: %s", exc)
            self.store_healthy = False
            return False
        except Exception:
            # Not the store's answer: a bug or the disk. The batch is kept and retried, so
            # the committed position is never stuck behind a batch nobody retries.
            self.metrics.add("writer_errors")
            logger.exception("unexpected error writing a batch; it is retried")
            return False
        if not self.store_healthy:
            logger.info("ClickHouse is back; replaying the spool")
        self.store_healthy = True
        try:
            self.wal.commit(batch)
        except Exception:
            # Stored but not marked: the retry inserts it again, and ClickHouse drops that
            # insert by its deduplication token.
            self.metrics.add("writer_errors")
            logger.exception("could not mark a stored batch in the WAL; it is retried")
            return False
        self.metrics.add("written", batch.spans)
        return True
