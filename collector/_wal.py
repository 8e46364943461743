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

Batches are replayed exactly once: a batch is recorded as in flight (its range, in
``checkpoint.json``) before it is handed to a writer; the insert carries a token derived from
that range, so replaying it after a crash is dropped by ClickHouse if the first attempt had
landed. Several writers insert disjoint batches at once and may finish out of order: the
committed position advances over a batch only when every batch before it is stored too, and
on restart each batch that was in flight is replayed with exactly its old range (and token).
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
class _Range:
    start: Position
    end: Position
    done: bool = False


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
        # Batches handed out and not yet behind ``committed`` (in order), those to hand out
        # again after a restart, and where the next new batch starts.
        self._state = threading.Lock()
        self.committed, self._ranges = self._load_checkpoint()
        self._replays = [r for r in self._ranges if not r.done]
        self._next = self._ranges[-1].end if self._ranges else self.committed
        self._recover()

    # ---- start-up -------------------------------------------------------------------------
    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob("*.wal"))

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:012d}.wal"

    def _load_checkpoint(self) -> tuple[Position, list[_Range]]:
        if not self._checkpoint_path.exists():
            segments = self._segments()
            return Position(segments[0] if segments else 1, 0), []
        state = json.loads(self._checkpoint_path.read_text())
        committed = Position(*state["committed"])
        if state.get("inflight"):  # written by a single-writer version: one batch in flight
            return committed, [_Range(committed, Position(*state["inflight"]))]
        ranges = [
            _Range(Position(*start), Position(*end), done)
            for start, end, done in state.get("ranges", [])
        ]
        return committed, ranges

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
                    if self._pending(Position(segment, good_end)):
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

    def _pending(self, record_end: Position) -> bool:
        """Whether the record ending at ``record_end`` still has to be inserted."""
        if record_end <= self.committed:
            return False
        return not any(r.done and r.start < record_end <= r.end for r in self._ranges)

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
            if self._replays or self._end() > self._next:
                return True
            self._data.wait(timeout)
            return bool(self._replays) or self._end() > self._next

    def claim(self, max_spans: int, max_bytes: int) -> Batch | None:
        """The next batch for a writer, recorded as in flight before it is returned.

        After a restart, the batches that were in flight come back first, each whole; then
        new batches follow the last one handed out. Safe to call from several threads.
        """
        with self._state:
            if self._replays:
                pending = self._replays.pop(0)
                batch = self._read(pending.start, pending.end, None, max_bytes)
                if batch is None:  # its data is gone (segments deleted by hand): skip it
                    pending.done = True
                    self._advance()
                    self._write_checkpoint()
                return batch
            with self._lock:
                end = self._end()
            batch = self._read(self._next, end, max_spans, max_bytes)
            if batch is None:
                return None
            self._ranges.append(_Range(batch.start, batch.end))
            self._next = batch.end
            self._write_checkpoint()
            return batch

    def _read(
        self, start: Position, until: Position, max_spans: int | None, max_bytes: int
    ) -> Batch | None:
        """Records from ``start`` to ``until``, at most ``max_spans`` (None: all of them)."""
        batch = Batch(start=start, end=start)

        def full() -> bool:
            return max_spans is not None and (batch.spans >= max_spans or batch.nbytes >= max_bytes)

        segment, offset = start.segment, start.offset
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

    def commit(self, batch: Batch) -> None:
        """``batch`` is stored; the committed position passes it once all before it are."""
        with self._state:
            for claimed in self._ranges:
                if claimed.start == batch.start:
                    claimed.done = True
            self._advance()
            self._write_checkpoint()
            committed = self.committed
        with self._lock:
            self._backlog_bytes = max(0, self._backlog_bytes - batch.nbytes)
            self._backlog_spans = max(0, self._backlog_spans - batch.spans)
            current = self._segment
        for segment in self._segments():
            if segment < min(committed.segment, current):
                self._retire(segment)

    def _advance(self) -> None:
        while self._ranges and self._ranges[0].done:
            self.committed = self._ranges.pop(0).end

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
            "ranges": [
                [[r.start.segment, r.start.offset], [r.end.segment, r.end.offset], r.done]
                for r in self._ranges
            ],
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
