"""Durability of acknowledged spans: spool while ClickHouse is down, replay exactly once."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import count, wait_for
from otlp_builders import span, trace_request
from test_collector_receivers import grpc_export

from evalhouse.collector._wal import Batch, Wal
from evalhouse.collector._writer import _length_delimited
from evalhouse.errors import StoreUnavailable
from evalhouse.store import OtlpSink, Signal, Store


class OutageSink:
    """The real sink behind a switch: while ``down``, inserts fail as with an unreachable server."""

    def __init__(self, store: Store) -> None:
        self.real = OtlpSink(store)
        self.down = threading.Event()
        self.down.set()
        self.attempts = 0

    def insert_otlp(self, signal: Signal, payload: bytes, token: str) -> None:
        self.attempts += 1
        if self.down.is_set():
            raise StoreUnavailable("http://127.0.0.1:1", "connection refused")
        self.real.insert_otlp(signal, payload, token)


def test_spans_are_spooled_while_store_is_down_and_replayed_when_it_returns(
    start_collector: Any, store: Store
) -> None:
    sink = OutageSink(store)
    collector, addresses = start_collector(sink=sink)
    for _ in range(5):
        grpc_export(addresses.grpc, trace_request([span(), span()]).SerializeToString())
    wait_for(lambda: sink.attempts >= 2)
    snapshot = collector.metrics.snapshot()
    assert snapshot["accepted"] == 10
    assert snapshot["spool_spans"] == 10
    assert snapshot["store_up"] == 0
    assert count(store) == 0
    sink.down.clear()
    wait_for(lambda: count(store) == 10, timeout=60)
    wait_for(lambda: collector.metrics.snapshot()["spool_spans"] == 0)
    assert collector.metrics.snapshot()["store_up"] == 1


def test_full_spool_answers_resource_exhausted_with_retry_info(
    start_collector: Any, store: Store
) -> None:
    sink = OutageSink(store)
    collector, addresses = start_collector(sink=sink, spool_max_bytes=2000)
    body = trace_request([span("x" * 200) for _ in range(10)]).SerializeToString()
    grpc_export(addresses.grpc, body)
    with pytest.raises(grpc.RpcError) as raised:
        grpc_export(addresses.grpc, trace_request([span()]).SerializeToString())
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    trailers = dict(raised.value.trailing_metadata() or ())
    assert "grpc-status-details-bin" in trailers
    assert collector.metrics.snapshot()["throttled_requests"] == 1
    sink.down.clear()
    wait_for(lambda: count(store) == 10, timeout=60)
    grpc_export(addresses.grpc, trace_request([span()]).SerializeToString())
    wait_for(lambda: count(store) == 11)


def _append(wal: Wal, n: int) -> list[bytes]:
    payloads = []
    for _ in range(n):
        payload = trace_request([span(), span()]).SerializeToString()
        wal.append("traces", os.urandom(16), 2, payload)
        payloads.append(payload)
    return payloads


def _insert(sink: OtlpSink, batch: Batch) -> None:
    sink.insert_otlp("traces", _length_delimited(batch.payloads["traces"]), f"{batch.token}:traces")


def _store(sink: OtlpSink, wal: Wal, batch: Batch) -> None:
    """What a writer does with a batch it claimed: insert it, then commit it."""
    _insert(sink, batch)
    wal.commit(batch)


def test_batch_in_flight_at_a_crash_is_replayed_exactly_once(tmp_path: Path, store: Store) -> None:
    wal = Wal(tmp_path, fsync=False)
    _append(wal, 3)
    batch = wal.claim(10_000, 10**9)
    assert batch is not None and batch.spans == 6
    sink = OtlpSink(store)
    _insert(sink, batch)
    wal.close()  # crash: inserted, never committed; more data arrived meanwhile
    restarted = Wal(tmp_path, fsync=False)
    _append(restarted, 2)
    replay = restarted.claim(1, 10**9)
    assert replay is not None
    assert (replay.start, replay.end, replay.spans) == (batch.start, batch.end, 6)
    _store(sink, restarted, replay)
    rest = restarted.claim(10_000, 10**9)
    assert rest is not None and rest.spans == 4
    _store(sink, restarted, rest)
    assert count(store) == 10
    assert restarted.claim(10_000, 10**9) is None
    assert restarted.backlog_spans == 0


def test_writers_finishing_out_of_order_replay_only_unfinished_batches(
    tmp_path: Path, store: Store
) -> None:
    """Two writers: the later batch is stored first, then a crash before the earlier one."""
    wal = Wal(tmp_path, fsync=False)
    _append(wal, 4)
    first = wal.claim(4, 10**9)  # two requests of two spans
    second = wal.claim(4, 10**9)
    assert first is not None and second is not None
    assert (first.spans, second.spans, second.start) == (4, 4, first.end)
    assert wal.claim(4, 10**9) is None  # nothing else to hand out
    sink = OtlpSink(store)
    _store(sink, wal, second)
    assert wal.committed == first.start  # the earlier batch is not stored yet
    _insert(sink, first)  # ... it was, but the crash came before its commit
    wal.close()

    restarted = Wal(tmp_path, fsync=False)
    assert restarted.backlog_spans == 4  # the stored later batch is not counted as pending
    _append(restarted, 1)
    replay = restarted.claim(10_000, 10**9)
    assert replay is not None
    assert (replay.start, replay.end, replay.token) == (first.start, first.end, first.token)
    _store(sink, restarted, replay)  # same token: ClickHouse drops it
    assert restarted.committed == second.end
    fresh = restarted.claim(10_000, 10**9)
    assert fresh is not None and (fresh.start, fresh.spans) == (second.end, 2)
    _store(sink, restarted, fresh)
    assert count(store) == 10
    assert restarted.backlog_spans == 0


def test_a_checkpoint_of_the_single_writer_version_is_replayed(
    tmp_path: Path, store: Store
) -> None:
    wal = Wal(tmp_path, fsync=False)
    _append(wal, 3)
    wal.close()
    segment = sorted(tmp_path.glob("*.wal"))[0]
    end = segment.stat().st_size
    number = int(segment.stem)
    (tmp_path / "checkpoint.json").write_text(
        json.dumps({"committed": [number, 0], "inflight": [number, end]})
    )
    restarted = Wal(tmp_path, fsync=False)
    replay = restarted.claim(1, 10**9)
    assert replay is not None and (replay.spans, replay.end.offset) == (6, end)


def test_torn_tail_is_cut_and_complete_records_survive(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync=False)
    _append(wal, 2)
    wal.close()
    segment = sorted(tmp_path.glob("*.wal"))[-1]
    with segment.open("ab") as handle:
        handle.write(b"EHW1\x00partial")
    restarted = Wal(tmp_path, fsync=False)
    assert restarted.backlog_spans == 4
    batch = restarted.claim(10_000, 10**9)
    assert batch is not None and len(batch.payloads["traces"]) == 2


def test_retry_is_recognised_after_restart_and_after_segment_retired(tmp_path: Path) -> None:
    wal = Wal(tmp_path, fsync=False, segment_bytes=1)  # every record in its own segment
    digest = os.urandom(16)
    assert wal.append("traces", digest, 1, b"payload")
    assert not wal.append("traces", digest, 1, b"payload")
    _append(wal, 1)
    batch = wal.claim(10_000, 10**9)
    assert batch is not None
    wal.commit(batch)
    assert len(list(tmp_path.glob("*.wal"))) == 1  # inserted segments are deleted
    wal.close()
    restarted = Wal(tmp_path, fsync=False)
    assert not restarted.append("traces", digest, 1, b"payload")
    expired = Wal(tmp_path / "other", fsync=False, dedup_window_seconds=0)
    assert expired.append("traces", digest, 1, b"payload")
