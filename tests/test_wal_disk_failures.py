"""The write-ahead log on a full or failing disk: a request is acknowledged only when its whole
record is written and fsynced; anything less is a retryable refusal that leaves nothing behind.
Writer threads survive errors and two of them retire segments without racing.

The full disk is real: the data directory sits on a small tmpfs (the tests run as root, as
the CI does, and mount it). A failing fsync and a short write cannot be made on demand by a
real disk here, so those two tests replace ``os.fsync`` / ``os.write`` for the WAL alone.
"""

from __future__ import annotations

import errno
import os
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import collector_settings, wait_for
from otlp_builders import span, trace_request
from test_collector_receivers import grpc_export

from evalhouse.collector import Collector
from evalhouse.collector import _wal as wal_module
from evalhouse.collector._metrics import Metrics
from evalhouse.collector._wal import Wal, WalUnavailable
from evalhouse.collector._writer import Writer
from evalhouse.store import OtlpSink, Signal, Store

PAYLOAD = 8 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs for the full-disk test ({done.stderr.strip()}); "
            "run the suite as root, as CI does"
        )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about ``leave`` bytes free."""
    ballast = disk / "ballast"
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    with ballast.open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return ballast


def stored_payloads(directory: Path) -> list[bytes]:
    """Everything a restarted WAL hands to writers, in order."""
    restarted = Wal(directory, fsync=True)
    payloads = []
    while (batch := restarted.claim(10**9, 10**12)) is not None:
        payloads += [p for ps in batch.payloads.values() for p in ps]
        restarted.commit(batch)
    restarted.close()
    return payloads


def test_a_full_disk_refuses_requests_and_keeps_every_acknowledged_one(small_disk: Path) -> None:
    directory = small_disk / "wal"
    wal = Wal(directory, fsync=True, segment_bytes=64 * 1024)
    ballast = fill(small_disk, leave=200 * 1024)
    acknowledged: list[bytes] = []
    refusals: list[WalUnavailable] = []
    for i in range(60):
        payload = i.to_bytes(4, "little") + os.urandom(PAYLOAD)
        try:
            assert wal.append("traces", os.urandom(16), 1, payload)
            acknowledged.append(payload)
        except WalUnavailable as exc:
            refusals.append(exc)
    assert acknowledged and refusals, (len(acknowledged), len(refusals))
    assert {exc.errno for exc in refusals} == {errno.ENOSPC}
    assert "retry later" in str(refusals[0]) and "free space" in str(refusals[0])
    # Space returns: the same WAL takes requests again, after the ones it refused.
    ballast.unlink()
    later = [os.urandom(PAYLOAD) for _ in range(3)]
    for payload in later:
        assert wal.append("traces", os.urandom(16), 1, payload)
    wal.close()
    assert stored_payloads(directory) == acknowledged + later


def test_a_retry_of_a_refused_request_is_stored_not_dropped_as_a_duplicate(
    small_disk: Path,
) -> None:
    wal = Wal(small_disk / "wal", fsync=True, segment_bytes=64 * 1024)
    ballast = fill(small_disk, leave=16 * 1024)
    digest, payload = os.urandom(16), os.urandom(64 * 1024)
    with pytest.raises(WalUnavailable):
        wal.append("traces", digest, 1, payload)
    ballast.unlink()
    assert wal.append("traces", digest, 1, payload)  # stored now, not "already seen"
    assert not wal.append("traces", digest, 1, payload)  # and a second retry is a duplicate
    wal.close()
    assert stored_payloads(small_disk / "wal") == [payload]


def test_a_failed_fsync_refuses_every_request_not_yet_durable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wal = Wal(tmp_path, fsync=True)
    kept = os.urandom(1000)
    assert wal.append("traces", os.urandom(16), 1, kept)
    real_fsync = os.fsync

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(wal_module.os, "fsync", failing_fsync)
    lost = os.urandom(1000)
    with pytest.raises(WalUnavailable) as raised:
        wal.append("traces", os.urandom(16), 1, lost)
    assert raised.value.errno == errno.EIO
    assert wal.backlog_spans == 1
    monkeypatch.setattr(wal_module.os, "fsync", real_fsync)
    after = os.urandom(1000)
    assert wal.append("traces", os.urandom(16), 1, after)
    wal.close()
    assert stored_payloads(tmp_path) == [kept, after]


def test_a_short_write_is_completed_not_taken_for_the_whole_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write

    def short_write(fd: int, data: Any) -> int:
        return real_write(fd, bytes(data)[: max(1, len(data) // 3)])

    wal = Wal(tmp_path, fsync=True)
    monkeypatch.setattr(wal_module.os, "write", short_write)
    payloads = [os.urandom(5000) for _ in range(3)]
    for payload in payloads:
        assert wal.append("traces", os.urandom(16), 1, payload)
    monkeypatch.setattr(wal_module.os, "write", real_write)
    wal.close()
    assert stored_payloads(tmp_path) == payloads


class RecordingSink:
    """Stores what writers insert, by token; fails once on demand like a bug would."""

    def __init__(self, store: Store, fail_first: bool = False) -> None:
        self.real = OtlpSink(store)
        self.fail_next = fail_first
        self.lock = threading.Lock()

    def insert_otlp(self, signal: Signal, payload: bytes, token: str) -> None:
        with self.lock:
            if self.fail_next:
                self.fail_next = False
                raise RuntimeError("unexpected")
        self.real.insert_otlp(signal, payload, token)


def test_two_writers_with_tiny_segments_retire_each_segment_once_and_survive_errors(
    tmp_path: Path, store: Store
) -> None:
    wal = Wal(tmp_path, fsync=False, segment_bytes=4096)
    metrics = Metrics()
    sinks = [RecordingSink(store, fail_first=True), RecordingSink(store)]
    writer = Writer(wal, sinks, metrics, max_spans=20)
    writer.start()
    names = []
    try:
        for i in range(300):
            name = f"tiny-{i}"
            names.append(name)
            body = trace_request([span(name)]).SerializeToString()
            assert wal.append("traces", os.urandom(16), 1, body)
        wait_for(lambda: metrics.snapshot()["written"] == 300, timeout=60)
        assert all(thread.is_alive() for thread in writer._threads)
        assert metrics.snapshot()["writer_errors"] == 1  # the sink's one failure, retried
    finally:
        writer.stop()
        wal.close()
    rows = store.query("SELECT SpanName, count() FROM otel_traces GROUP BY SpanName")
    assert Counter({name: n for name, n in rows}) == Counter(dict.fromkeys(names, 1))
    assert len(list(tmp_path.glob("*.wal"))) <= 2


def test_the_collector_on_a_full_disk_answers_unavailable_and_stores_every_acknowledged_span(
    small_disk: Path, store: Store
) -> None:
    settings = collector_settings(small_disk / "collector", wal_fsync=True)
    collector = Collector(settings, store)
    addresses = collector.start()
    ballast = fill(small_disk, leave=300 * 1024)
    acked: list[str] = []
    refused = Counter[str]()
    try:
        for i in range(80):
            names = [f"full-{i}-{j}-{uuid.uuid4().hex[:6]}" for j in range(20)]
            body = trace_request([span(name, {"pad": "x" * 300}) for name in names])
            try:
                grpc_export(addresses.grpc, body.SerializeToString())
                acked += names
            except grpc.RpcError as exc:
                refused[exc.code().name] += 1
        assert refused and set(refused) == {"UNAVAILABLE"}, refused
        assert acked
        assert collector.metrics.snapshot()["wal_failures"] == sum(refused.values())
    finally:
        collector.stop()
    ballast.unlink()
    again = Collector(settings, store)  # restart once space has returned
    again.start()
    try:

        def stored() -> dict[str, int]:
            rows = store.query(
                "SELECT SpanName, count() FROM otel_traces WHERE SpanName LIKE 'full-%' "
                "GROUP BY SpanName"
            )
            return {name: n for name, n in rows}

        wait_for(lambda: set(acked) <= set(stored()), timeout=60)
        counts = stored()
        assert all(counts[name] == 1 for name in acked)
    finally:
        again.stop()
