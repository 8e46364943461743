"""The write-ahead log: every accepted request is on disk before it is acknowledged.

Requests are appended to numbered segment files and fsynced in groups (one fsync covers every
request written before it). A writer thread reads them back in batches and inserts them into
ClickHouse; the WAL is therefore also the spool that holds data while ClickHouse is down.

Record layout (little endian): magic ``EHW1``, signal (u8), payload length (u32), span count
(u32), CRC-32 of the payload (u32), arrival time (u32 seconds), request digest (16 bytes),
payload. A torn record at the tail of the last segment (a crash mid-write, never acknowledged)
is cut off on start-up.

Retries: the digest of each request's original bytes is remembered for the dedup window
(in memory, rebuilt on start from the segments and ``dedup.log``), so a client re-sending a
request whose acknowledgement it lost — even across a restart — does not duplicate data.

Batches are replayed exactly once: before inserting, the writer records the batch's range as
in flight; the insert carries a token derived from that range, so replaying it after a crash
is dropped by ClickHouse if the first attempt had landed.
"""

from __future__ import annotations

import json
import logging
import os
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from evalhouse.store import SIGNALS, Signal

logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<4sBIIII16s")
_MAGIC = b"EHW1"
_DIGEST = struct.Struct("<16sI")
_MAX_DIGESTS = 1_000_000


@dataclass(frozen=True)
class _Record:
    signal: int
    spans: int
    seen: int
    digest: bytes
    payload: bytes | None
    end: int


def _records(handle: BinaryIO, *, payloads: bool = True) -> Iterator[_Record]:
    """Complete, intact records from the handle's position; stops at a torn or bad one."""
    while True:
        header = handle.read(_HEADER.size)
        if len(header) < _HEADER.size:
            return
        magic, signal, length, spans, crc, seen, digest = _HEADER.unpack(header)
        if magic != _MAGIC:
            return
        payload: bytes | None = None
        if payloads:
            payload = handle.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
        else:
            handle.seek(length, os.SEEK_CUR)
        yield _Record(signal, spans, seen, digest, payload, handle.tell())


class Backlogged(Exception):
    """The spool is full: the client should retry later."""


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment}:{self.offset}"


@dataclass
class Batch:
    start: Position
    end: Position
    payloads: dict[Signal, list[bytes]] = field(default_factory=dict)
    spans: int = 0
    nbytes: int = 0

    @property
    def token(self) -> str:
        return f"evalhouse-wal:{self.start}-{self.end}"


class Wal:
    def __init__(
        self,
        directory: Path,
        *,
        fsync: bool = True,
        max_backlog_bytes: int = 4 * 1024**3,
        segment_bytes: int = 64 * 1024**2,
        dedup_window_seconds: int = 900,
    ) -> None:
        self.directory = directory
        self.fsync = fsync
        self.max_backlog_bytes = max_backlog_bytes
        self.segment_bytes = segment_bytes
        self.dedup_window = dedup_window_seconds
        directory.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._data = threading.Condition(self._lock)
        self._sync_cond = threading.Condition()
        self._syncing = False
        self._synced_seq = 0
        self._seq = 0
        self._digests: OrderedDict[bytes, int] = OrderedDict()
        self._backlog_spans = 0
        self._checkpoint_path = directory / "checkpoint.json"
        self._dedup_path = directory / "dedup.log"
        self.committed, self.inflight = self._load_checkpoint()
        self._recover()

    # ---- start-up -------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.wal"))

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}.wal"

    def _load_checkpoint(self) -> tuple[Position, Position | None]:
        if not self._checkpoint_path.exists():
            segments = self._segments()
            return Position(segments[0] if segments else 1, 0), None
        state = json.loads(self._checkpoint_path.read_text())
        committed = Position(*state["committed"])
        inflight = Position(*state["inflight"]) if state.get("inflight") else None
        return committed, inflight

    def _recover(self) -> None:
        now = int(time.time())
        if self._dedup_path.exists():
            data = self._dedup_path.read_bytes()
            usable = len(data) - len(data) % _DIGEST.size
            for at in range(0, usable, _DIGEST.size):
                digest, seen = _DIGEST.unpack_from(data, at)
                if now - seen <= self.dedup_window:
                    self._remember(digest, seen)
        segments = self._segments()
        backlog = 0
        for segment in segments:
            path = self._path(segment)
            good_end = 0
            with path.open("rb") as handle:
                for record in _records(handle):
                    size = record.end - good_end
                    good_end = record.end
                    if now - record.seen <= self.dedup_window:
                        self._remember(record.digest, record.seen)
                    if Position(segment, good_end) > self.committed:
                        self._backlog_spans += record.spans
                        backlog += size
            if good_end < path.stat().st_size:
                logger.warning(
                    "cut a torn record at the end of %s (%d bytes, never acknowledged)",
                    path.name,
                    path.stat().st_size - good_end,
                )
                os.truncate(path, good_end)
        self._backlog_bytes = backlog
        self._segment = (segments[-1] + 1) if segments else max(1, self.committed.segment)
        if self.committed.segment > self._segment:
            self._segment = self.committed.segment
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._offset = os.fstat(self._fd).st_size
        self._compact_dedup_log()

    def _compact_dedup_log(self) -> None:
        tmp = self._dedup_path.with_suffix(".tmp")
        tmp.write_bytes(b"".join(_DIGEST.pack(d, s) for d, s in self._digests.items()))
        os.replace(tmp, self._dedup_path)

    def _remember(self, digest: bytes, seen: int) -> None:
        self._digests[digest] = seen
        self._digests.move_to_end(digest)
        while len(self._digests) > _MAX_DIGESTS:
            self._digests.popitem(last=False)

    # ---- appending ------------------------------------------------------------------------
    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    @property
    def backlog_spans(self) -> int:
        return self._backlog_spans

    def append(self, signal: Signal, digest: bytes, spans: int, payload: bytes) -> bool:
        """Make a request durable. Returns False if it is a retry of one already stored.

        Raises :class:`Backlogged` when the spool holds ``max_backlog_bytes`` already.
        """
        now = int(time.time())
        with self._lock:
            seen = self._digests.get(digest)
            if seen is not None and now - seen <= self.dedup_window:
                return False
            if self._backlog_bytes >= self.max_backlog_bytes:
                raise Backlogged(f"{self._backlog_bytes} bytes wait to be written to ClickHouse")
            header = _HEADER.pack(
                _MAGIC, SIGNALS.index(signal), len(payload), spans, zlib.crc32(payload), now, digest
            )
            record = header + payload
            os.write(self._fd, record)
            self._offset += len(record)
            self._backlog_bytes += len(record)
            self._backlog_spans += spans
            self._remember(digest, now)
            self._seq += 1
            seq = self._seq
            if self._offset >= self.segment_bytes:
                self._rotate()
            self._data.notify_all()
        self._sync(seq)
        return True

    def _rotate(self) -> None:
        if self.fsync:
            os.fsync(self._fd)
        os.close(self._fd)
        self._segment += 1
        self._fd = os.open(self._path(self._segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._offset = 0

    def _sync(self, seq: int) -> None:
        """Group commit: one fsync covers every record written before it started."""
        if not self.fsync:
            return
        with self._sync_cond:
            while self._synced_seq < seq:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                with self._lock:
                    target = self._seq
                    current = self._fd
                self._sync_cond.release()
                try:
                    # Records of a rotated segment were fsynced when it was closed, so
                    # syncing the current segment covers everything up to ``target``.
                    os.fsync(current)
                except OSError:
                    logger.debug("fsync raced with a segment rotation")
                finally:
                    self._sync_cond.acquire()
                    self._syncing = False
                self._synced_seq = max(self._synced_seq, target)
                self._sync_cond.notify_all()

    # ---- reading back ---------------------------------------------------------------------
    def _end(self) -> Position:
        return Position(self._segment, self._offset)

    def wait_for_data(self, timeout: float) -> bool:
        with self._lock:
            if self._end() > self.committed:
                return True
            self._data.wait(timeout)
            return self._end() > self.committed

    def read_batch(self, max_spans: int, max_bytes: int) -> Batch | None:
        """The next batch after the committed position; an in-flight batch comes back whole."""
        with self._lock:
            end = self._end()
        replay = self.inflight
        until = replay if replay is not None else end
        batch = Batch(start=self.committed, end=self.committed)

        def full() -> bool:
            return replay is None and (batch.spans >= max_spans or batch.nbytes >= max_bytes)

        segment, offset = self.committed.segment, self.committed.offset
        while Position(segment, offset) < until and not full():
            path = self._path(segment)
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    for record in _records(handle):
                        if Position(segment, offset) >= until or full():
                            break
                        assert record.payload is not None
                        batch.payloads.setdefault(SIGNALS[record.signal], []).append(record.payload)
                        batch.spans += record.spans
                        batch.nbytes += record.end - offset
                        offset = record.end
                        batch.end = Position(segment, offset)
            if full() or segment >= until.segment:
                break
            segment, offset = segment + 1, 0
            batch.end = Position(segment, 0)
        return None if batch.end == batch.start else batch

    def begin(self, batch: Batch) -> None:
        """Record ``batch`` as in flight, so a restart replays exactly it (same token)."""
        self.inflight = batch.end
        self._write_checkpoint()

    def commit(self, batch: Batch) -> None:
        self.committed = batch.end
        self.inflight = None
        self._write_checkpoint()
        with self._lock:
            self._backlog_bytes = max(0, self._backlog_bytes - batch.nbytes)
            self._backlog_spans = max(0, self._backlog_spans - batch.spans)
            current = self._segment
        for segment in self._segments():
            if segment < min(self.committed.segment, current):
                self._retire(segment)

    def _retire(self, segment: int) -> None:
        """Delete an inserted segment, keeping its digests for the dedup window."""
        path = self._path(segment)
        with path.open("rb") as handle:
            digests = [_DIGEST.pack(r.digest, r.seen) for r in _records(handle, payloads=False)]
        with self._dedup_path.open("ab") as log:
            log.write(b"".join(digests))
        path.unlink()
        if self._dedup_path.stat().st_size > 4 * _DIGEST.size * _MAX_DIGESTS:
            with self._lock:
                self._compact_dedup_log()

    def _write_checkpoint(self) -> None:
        state = {
            "committed": [self.committed.segment, self.committed.offset],
            "inflight": [self.inflight.segment, self.inflight.offset] if self.inflight else None,
        }
        tmp = self._checkpoint_path.with_suffix(".tmp")
        with tmp.open("w") as handle:
            handle.write(json.dumps(state))
            handle.flush()
            if self.fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, self._checkpoint_path)

    def close(self) -> None:
        with self._lock:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
