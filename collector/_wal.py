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

Full or failing disks (ENOSPC, EIO, short writes): a request is acknowledged only once every
byte of its record is written and fsynced. A write that fails is cut off again (or, if even
that fails, the segment is abandoned: nothing is ever appended behind a torn record). An
fsync that fails refuses every request not yet durable, and their records are removed, since
after a failed fsync the kernel may have dropped the pages (PostgreSQL's "fsyncgate"). Either
way the client is told to retry (:class:`WalUnavailable`), writers read only what is durable,
and a retry is never mistaken for a duplicate of a record that was refused.

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

from evalhouse.errors import EvalhouseError
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


class WalUnavailable(EvalhouseError):
    """The request could not be made durable (disk full or failing): retry later."""

    def __init__(self, what: str, exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        super().__init__(
            f"the write-ahead log could not {what} ({reason}); nothing of this request was "
            "kept: retry later, and free space in the data directory if it is full"
        )
        self.errno = exc.errno


@dataclass
class _Ticket:
    """One appended record until its fsync: durable (``ok``) or refused (``error``)."""

    end: Position
    digest: bytes
    spans: int
    size: int
    ok: bool = False
    error: OSError | None = None


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
        # Written but not yet fsynced, oldest first; and segments rotated before their fsync.
        self._unsynced: list[_Ticket] = []
        self._unsynced_digests: dict[bytes, _Ticket] = {}
        self._unsynced_fds: list[int] = []
        self._retire_lock = threading.Lock()
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
        # What writers may read: everything on disk at start, then what each fsync covered.
        self._durable = Position(self._segment, self._offset)
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

        Raises :class:`Backlogged` when the spool holds ``max_backlog_bytes`` already, and
        :class:`WalUnavailable` when the disk refused the write or the fsync; in both cases
        nothing of the request is kept.
        """
        now = int(time.time())
        with self._lock:
            seen = self._digests.get(digest)
            if seen is not None and now - seen <= self.dedup_window:
                return False
            ticket = self._unsynced_digests.get(digest)
            duplicate = ticket is not None
            if ticket is None:
                ticket = self._write(signal, digest, spans, payload, now)
        if ticket.error is None and not ticket.ok:
            self._sync(ticket)
        if ticket.error is not None:
            raise WalUnavailable("fsync the request", ticket.error)
        return not duplicate

    def _write(
        self, signal: Signal, digest: bytes, spans: int, payload: bytes, now: int
    ) -> _Ticket:
        """Append one record (under ``_lock``); a failed write leaves nothing behind."""
        if self._backlog_bytes >= self.max_backlog_bytes:
            raise Backlogged(f"{self._backlog_bytes} bytes wait to be written to ClickHouse")
        header = _HEADER.pack(
            _MAGIC, SIGNALS.index(signal), len(payload), spans, zlib.crc32(payload), now, digest
        )
        record = header + payload
        try:
            if self._fd < 0:
                self._open_segment()
            start = self._offset
            try:
                _write_all(self._fd, record)
            except OSError:
                self._cut(start)
                raise
        except OSError as exc:
            logger.error("could not write a request to the WAL: %s", exc)
            raise WalUnavailable("write the request", exc) from exc
        self._offset += len(record)
        self._backlog_bytes += len(record)
        self._backlog_spans += spans
        ticket = _Ticket(Position(self._segment, self._offset), digest, spans, len(record))
        if self._offset >= self.segment_bytes:
            self._rotate()
        if self.fsync:
            self._unsynced.append(ticket)
            self._unsynced_digests[digest] = ticket
        else:
            ticket.ok = True
            self._remember(digest, now)
            # The write position: past a full segment once the next is open (so a batch can
            # end there and the full segment be retired).
            self._durable = Position(self._segment, self._offset) if self._fd >= 0 else ticket.end
            self._data.notify_all()
        return ticket

    def _cut(self, start: int) -> None:
        """Remove a record that was only partly written; if that fails too, never write to
        this segment again (a torn record stops a reader, so nothing may follow it)."""
        try:
            os.ftruncate(self._fd, start)
        except OSError as exc:
            logger.error("could not cut a torn WAL record (%s); starting a new segment", exc)
            self._offset = start
            self._rotate()

    def _open_segment(self) -> None:
        """Start the next segment (numbers only grow: a number is never written twice)."""
        segment = self._segment + 1
        fd = os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        self._segment, self._fd, self._offset = segment, fd, 0

    def _rotate(self) -> None:
        """Continue in a new segment. Records of the old one are fsynced by the next group
        commit (which also closes it); opening the new one may fail on a full disk, and the
        next append tries again."""
        if self.fsync:
            self._unsynced_fds.append(self._fd)
        else:
            os.close(self._fd)
        self._fd = -1
        try:
            self._open_segment()
        except OSError as exc:
            logger.error("could not start a new WAL segment: %s", exc)
            self._fd = -1

    def _sync(self, ticket: _Ticket) -> None:
        """Group commit: one fsync covers every record written before it started."""
        with self._sync_cond:
            while not ticket.ok and ticket.error is None:
                if self._syncing:
                    self._sync_cond.wait()
                    continue
                self._syncing = True
                with self._lock:
                    batch, self._unsynced = self._unsynced, []
                    rotated, self._unsynced_fds = self._unsynced_fds, []
                    fds = [*rotated, self._fd] if self._fd >= 0 else rotated
                    target = Position(self._segment, self._offset)
                self._sync_cond.release()
                error: OSError | None = None
                try:
                    for fd in fds:
                        os.fsync(fd)
                except OSError as exc:
                    error = exc
                finally:
                    self._sync_cond.acquire()
                    self._syncing = False
                with self._lock:
                    for fd in rotated:
                        _close_quietly(fd)
                    if error is None:
                        self._synced(batch, target)
                    else:
                        self._refuse_unsynced(batch, error)
                self._sync_cond.notify_all()

    def _synced(self, batch: list[_Ticket], target: Position) -> None:
        now = int(time.time())
        for done in batch:
            done.ok = True
            self._unsynced_digests.pop(done.digest, None)
            self._remember(done.digest, now)
        self._durable = max(self._durable, target)
        self._data.notify_all()

    def _refuse_unsynced(self, batch: list[_Ticket], error: OSError) -> None:
        """An fsync failed: refuse every record after the last durable position (those in
        the failed group and those written since) and remove them from disk."""
        logger.error("WAL fsync failed (%s); refusing %d request(s)", error, len(batch))
        refused = [*batch, *self._unsynced]
        self._unsynced = []
        for fd in self._unsynced_fds:
            _close_quietly(fd)
        self._unsynced_fds = []
        if self._fd >= 0:
            _close_quietly(self._fd)
            self._fd = -1
        for ticket in refused:
            ticket.error = error
            self._unsynced_digests.pop(ticket.digest, None)
            self._backlog_bytes = max(0, self._backlog_bytes - ticket.size)
            self._backlog_spans = max(0, self._backlog_spans - ticket.spans)
        durable = self._durable
        for segment in range(durable.segment, self._segment + 1):
            path = self._path(segment)
            try:
                if segment == durable.segment:
                    os.truncate(path, durable.offset)
                else:
                    path.unlink(missing_ok=True)
            except OSError as exc:
                # Refused records may then come back after a restart and be stored as well
                # as the client's retry: a duplicate, never a loss.
                logger.error("could not remove refused WAL records from %s: %s", path.name, exc)
        self._offset = 0
        try:
            self._open_segment()
        except OSError as exc:
            logger.error("could not start a new WAL segment: %s", exc)
            self._fd = -1

    # ---- reading back ---------------------------------------------------------------------
    def wait_for_data(self, timeout: float) -> bool:
        with self._lock:
            if self._replays or self._durable > self._next:
                return True
            self._data.wait(timeout)
            return bool(self._replays) or self._durable > self._next

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
                    self._save_checkpoint()
                return batch
            with self._lock:
                end = self._durable  # never a record whose fsync may still fail
            batch = self._read(self._next, end, max_spans, max_bytes)
            if batch is None:
                return None
            # On disk first: if the checkpoint cannot be written, the batch stays unclaimed.
            ranges = [*self._ranges, _Range(batch.start, batch.end)]
            self._write_checkpoint(self.committed, ranges)
            self._ranges = ranges
            self._next = batch.end
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
            self._save_checkpoint()
            committed = self.committed
        with self._lock:
            self._backlog_bytes = max(0, self._backlog_bytes - batch.nbytes)
            self._backlog_spans = max(0, self._backlog_spans - batch.spans)
            current = self._segment
        with self._retire_lock:  # two writers committing at once must not retire one segment twice
            for segment in self._segments():
                if segment < min(committed.segment, current):
                    self._retire(segment)

    def _advance(self) -> None:
        while self._ranges and self._ranges[0].done:
            self.committed = self._ranges.pop(0).end

    def _save_checkpoint(self) -> None:
        """Persist the committed position. Failing is tolerable here: the batches behind it
        are stored, a restart replays them and ClickHouse drops the replay by its token; the
        next commit writes the checkpoint again."""
        try:
            self._write_checkpoint(self.committed, self._ranges)
        except OSError as exc:
            logger.error("could not write the WAL checkpoint (%s); retried at the next batch", exc)

    def _retire(self, segment: int) -> None:
        """Delete an inserted segment, keeping its digests for the dedup window."""
        path = self._path(segment)
        try:
            with path.open("rb") as handle:
                digests = [_DIGEST.pack(r.digest, r.seen) for r in _records(handle, payloads=False)]
            with self._dedup_path.open("ab") as log:
                log.write(b"".join(digests))
                log.flush()
            path.unlink()
            if self._dedup_path.stat().st_size > 4 * _DIGEST.size * _MAX_DIGESTS:
                with self._lock:
                    self._compact_dedup_log()
        except FileNotFoundError:
            return
        except OSError as exc:  # a full disk: the segment stays, retired after a later batch
            logger.error("could not retire WAL segment %s: %s", path.name, exc)

    def _write_checkpoint(self, committed: Position, ranges: list[_Range]) -> None:
        state = {
            "committed": [committed.segment, committed.offset],
            "ranges": [
                [[r.start.segment, r.start.offset], [r.end.segment, r.end.offset], r.done]
                for r in ranges
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
            fds = [*self._unsynced_fds, *([self._fd] if self._fd >= 0 else [])]
            self._unsynced_fds = []
            self._fd = -1
        for fd in fds:
            if self.fsync:
                try:
                    os.fsync(fd)
                except OSError as exc:
                    logger.error("WAL fsync at close failed: %s", exc)
            _close_quietly(fd)


def _write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: a short write is not a success."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(0, "the disk accepted no bytes")
        view = view[written:]


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError as exc:
        logger.debug("closing a WAL segment failed: %s", exc)
