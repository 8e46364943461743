"""One evaluator worker: each cycle it finds quiet experiment traces in its shards, computes
their rows, and runs the scorers not run yet.

Exactly once, across restarts and several workers:

- a shard is worked on only by its lease owner (``_leases``);
- a row is recomputed only when its watched spans changed (a newer ``InsertedAt`` or another
  span count), so a restart or a rescan computes nothing twice;
- a (row, scorer) runs only when ``scores`` has no result for it, it is not queued or running
  here, and the lease leaves time for it to finish;
- the shard's stored checkpoint never passes a trace with work left, so after a crash the next
  owner finds that work again. (In memory the worker scans ahead of it, so rows waiting for a
  slow judge are not rescanned every cycle.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evalhouse.errors import StoreUnavailable
from evalhouse.evaluators._leases import Leases, LeaseView
from evalhouse.evaluators._online import RuleRunner
from evalhouse.evaluators._output import item_from_row, load_items, write_outcomes, write_rows
from evalhouse.evaluators._rows import ComputedRow, Row, compute_row, failed_row
from evalhouse.evaluators._scoring import Outcome, ScorerPool, ScoringItem
from evalhouse.evaluators._summaries import Summarizer
from evalhouse.evaluators._traces import Candidate, fetch_spans, find_candidates
from evalhouse.store import Store

__all__ = ["Counters", "EvaluatorConfig", "Observer", "Worker", "pause"]

logger = logging.getLogger(__name__)

# Spans can become visible a little after the InsertedAt they carry (a long insert): every
# few seconds, scan this far behind the cursor. Rescanned traces that are done cost one
# comparison each.
VISIBILITY_MARGIN_MS = 60_000
_MARGIN_SCAN_SECONDS = 15.0
_CHUNK_TRACES = 2_000
_FLUSH_SECONDS = 0.5
# How long before a lease would fall below the score margin it is renewed (at most).
_RENEW_SLACK_MS = 15_000
# Scorer runs remembered while waiting for a free slot; beyond it they stay in ClickHouse
# (the cursor holds back) and are found again.
_MAX_QUEUED = 200_000


@dataclass(frozen=True)
class EvaluatorConfig:
    quiet_ms: int
    poll_seconds: float
    lease_seconds: float
    scorer_timeout: float
    scorer_concurrency: int
    scorers: Mapping[str, Sequence[str | Mapping[str, Any]]]
    cluster: bool = False
    # Production traces are summarized for the explorer this long after their last span.
    summary_quiet_ms: int = 2_000

    @property
    def max_in_flight(self) -> int:
        # Enough started runs to keep every scorer busy between two cycles.
        return max(256, self.scorer_concurrency * 32)


async def pause(stop: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds``, or less when ``stop`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Observer(Protocol):
    """Told about every row computed and every scorer result stored (tests, logs)."""

    def row_computed(self, worker: str, trace_id: str, watermark_ms: int) -> None: ...

    def scored(self, worker: str, trace_id: str, scorer_id: str) -> None: ...


class Counters:
    """The default observer: totals for the daemon's log lines."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.rows = 0
        self.scores = 0

    def row_computed(self, worker: str, trace_id: str, watermark_ms: int) -> None:
        with self._lock:
            self.rows += 1

    def scored(self, worker: str, trace_id: str, scorer_id: str) -> None:
        with self._lock:
            self.scores += 1


@dataclass(frozen=True)
class CycleStats:
    shards: int
    candidates: int
    computed: int
    started: int  # scorer runs started
    queued: int  # scorer runs waiting for a slot
    summarized: int = 0  # trace summaries written (the explorer's rows)
    ruled: int = 0  # online rules: targets decided and scorer runs started

    @property
    def idle(self) -> bool:
        return (
            self.computed == 0
            and self.started == 0
            and self.queued == 0
            and self.summarized == 0
            and self.ruled == 0
        )


@dataclass(frozen=True, slots=True)
class _Owed:
    """A scorer run owed on a row: where it lives, and the row if computed this cycle."""

    trace_id: str
    shard: int
    watermark_ms: int
    scorer_id: str
    row: Row | None


_Key = tuple[str, str]  # (trace id, scorer id)


class Worker:
    """Runs cycles against one store; async, with blocking store calls in threads."""

    def __init__(
        self,
        store: Store,
        config: EvaluatorConfig,
        worker_id: str,
        *,
        pool: ScorerPool,
        observer: Observer,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.id = worker_id
        self.pool = pool
        self.observer = observer
        lease_ms = int(config.lease_seconds * 1000)
        self._compute_margin_ms = min(10_000, lease_ms // 4)
        self._score_margin_ms = int(config.scorer_timeout * 1000) + min(5_000, lease_ms // 10)
        # Renewed while a cycle or two can still pass before the lease falls below the score
        # margin: renewing only half-way left 5 s of each 120 s lease (time left 65 -> 60 s)
        # when no scorer could start (benchmarks/README.md, online evaluation).
        renew_ahead_ms = self._score_margin_ms + min(_RENEW_SLACK_MS, lease_ms // 10)
        self.leases = Leases(
            store,
            worker_id,
            lease_seconds=config.lease_seconds,
            cluster=config.cluster,
            renew_ahead_seconds=renew_ahead_ms / 1000,
        )
        self.summarizer = Summarizer(
            store, quiet_ms=config.summary_quiet_ms, worker=worker_id, busy=busy
        )
        # Online rules score production traffic in the same shards (evaluators/_online.py).
        self.rules = RuleRunner(store, worker_id, pool, score_margin_ms=self._score_margin_ms)
        self._cursor: dict[int, int] = {}  # shard -> scanned up to (ms), ahead of checkpoint
        self._stored: dict[int, int] = {}  # shard -> checkpoint as stored
        self._margin_scanned = 0.0
        self._queue: dict[_Key, _Owed] = {}
        self._in_flight: dict[_Key, tuple[_Owed, asyncio.Task[None]]] = {}
        self._results: list[Outcome] = []
        self._flushed: dict[_Key, float] = {}
        self._flush_lock = asyncio.Lock()
        # Set when half the scorer runs in flight are stored: time to start more.
        self._room = asyncio.Event()

    # --- the cycle ----------------------------------------------------------------------------

    async def cycle(self) -> CycleStats:
        await self.flush()
        view = await asyncio.to_thread(self.leases.refresh)
        shards = sorted(s for s in view.owned if view.time_left_ms(s) > self._compute_margin_ms)
        self._forget_other_shards(set(shards))
        if not shards:
            return CycleStats(0, 0, 0, 0, len(self._queue))
        new = [shard for shard in shards if shard not in self._cursor]
        if new:
            stored = await asyncio.to_thread(self.leases.checkpoints, new)
            self._stored.update(stored)
            self._cursor.update(stored)
        horizon = view.now() - self.config.quiet_ms
        started = time.monotonic()
        since = min(self._cursor[s] for s in shards)
        if new or started - self._margin_scanned >= _MARGIN_SCAN_SECONDS:
            since -= VISIBILITY_MARGIN_MS
            self._margin_scanned = started
        candidates = await asyncio.to_thread(
            find_candidates, self.store, shards=shards, since_ms=max(0, since), horizon_ms=horizon
        )
        computed = await self._compute([c for c in candidates if c.needs_compute])
        held = self._owe(candidates, computed)
        for shard in shards:
            self._cursor[shard] = min(horizon, held.get(shard, horizon))
        self._flushed = {key: at for key, at in self._flushed.items() if at >= started}
        begun = await self._start(view)
        await self._checkpoint(shards, horizon)
        summarized = await asyncio.to_thread(self.summarizer.run, shards, view.now())
        summarized += int(self.summarizer.behind)  # a backlog left: not idle
        ruled = await self.rules.cycle(view, shards, hold=self.summarizer.deferred)
        return CycleStats(
            len(shards), len(candidates), len(computed), begun, len(self._queue), summarized, ruled
        )

    def _forget_other_shards(self, shards: set[int]) -> None:
        """A shard no longer owned is someone else's: drop its cursor and queued runs."""
        for shard in [s for s in self._cursor if s not in shards]:
            del self._cursor[shard]
            self._stored.pop(shard, None)
        self.summarizer.forget(shards)
        self._queue = {k: o for k, o in self._queue.items() if o.shard in shards}

    async def _compute(self, stale: list[Candidate]) -> dict[str, ComputedRow]:
        done: dict[str, ComputedRow] = {}
        for at in range(0, len(stale), _CHUNK_TRACES):
            chunk = stale[at : at + _CHUNK_TRACES]
            rows = await asyncio.to_thread(self._compute_chunk, chunk)
            done.update(rows)
            for candidate in chunk:
                if candidate.trace_id in rows:
                    self.observer.row_computed(self.id, candidate.trace_id, candidate.watermark_ms)
        return done

    def _compute_chunk(self, chunk: list[Candidate]) -> dict[str, ComputedRow]:
        traces = fetch_spans(self.store, [candidate.trace_id for candidate in chunk])
        computed: dict[str, ComputedRow] = {}
        failed: list[Row] = []
        for candidate in chunk:
            spans = traces.get(candidate.trace_id)
            if not spans:
                continue
            try:
                result = compute_row(
                    spans, previous=candidate, scorer_config=self.config.scorers, worker=self.id
                )
            except Exception as exc:  # one malformed trace must not stop the others
                logger.warning(
                    "evaluator: cannot compute the row of trace %s: %s", candidate.trace_id, exc
                )
                row = failed_row(spans, f"{type(exc).__name__}: {exc}", worker=self.id)
                if row is not None:
                    failed.append(row)
                continue
            if result is not None:
                computed[candidate.trace_id] = result
        write_rows(self.store, list(computed.values()), failed)
        return computed

    def _owe(self, candidates: list[Candidate], computed: dict[str, ComputedRow]) -> dict[int, int]:
        """Queue the scorer runs still owed; return, per shard, a watermark the cursor must
        stay below because runs did not fit in the queue."""
        held: dict[int, int] = {}
        for candidate in candidates:
            result = computed.get(candidate.trace_id)
            if candidate.needs_compute and result is None:
                continue  # not an experiment row after all
            scorers = result.row.scorers if result is not None else candidate.scorers
            for scorer_id in scorers:
                key = (candidate.trace_id, scorer_id)
                if (
                    scorer_id in candidate.done
                    or key in self._flushed
                    or key in self._in_flight
                    or key in self._queue
                ):
                    continue
                if len(self._queue) >= _MAX_QUEUED:
                    mark = held.get(candidate.shard)
                    if mark is None or candidate.watermark_ms - 1 < mark:
                        held[candidate.shard] = candidate.watermark_ms - 1
                    continue
                self._queue[key] = _Owed(
                    candidate.trace_id,
                    candidate.shard,
                    candidate.watermark_ms,
                    scorer_id,
                    result.row if result is not None else None,
                )
        return held

    async def _start(self, view: LeaseView) -> int:
        """Start queued runs while there is room and their lease leaves time to finish."""
        room = self.config.max_in_flight - len(self._in_flight)
        chosen: list[_Owed] = []
        for owed in self._queue.values():
            if len(chosen) >= room:
                break
            if view.time_left_ms(owed.shard) >= self._score_margin_ms:
                chosen.append(owed)
        if not chosen:
            return 0
        for owed in chosen:
            del self._queue[(owed.trace_id, owed.scorer_id)]
        items = [
            item_from_row(owed.row, owed.shard, owed.scorer_id)
            for owed in chosen
            if owed.row is not None
        ]
        earlier = [(o.trace_id, o.shard, o.scorer_id) for o in chosen if o.row is None]
        if earlier:
            items += await asyncio.to_thread(load_items, self.store, earlier)
        by_key = {(owed.trace_id, owed.scorer_id): owed for owed in chosen}
        for item in items:
            key = (item.trace_id, item.scorer_id)
            self._in_flight[key] = (by_key[key], asyncio.create_task(self._score(item)))
        return len(items)

    async def _score(self, item: ScoringItem) -> None:
        outcome = await self.pool.run(item)
        # Look the list up after the await: flush() swaps it while scorers run.
        self._results.append(outcome)

    async def _checkpoint(self, shards: list[int], horizon: int) -> None:
        """Store, per shard, how far every trace is done: the cursor, held below owed work."""
        lowest = dict(self._cursor)
        owed = [*self._queue.values(), *(o for o, _ in self._in_flight.values())]
        for item in owed:
            if item.shard in lowest and item.watermark_ms - 1 < lowest[item.shard]:
                lowest[item.shard] = item.watermark_ms - 1
        changed = {s: lowest[s] for s in shards if lowest[s] != self._stored.get(s)}
        if changed:
            await asyncio.to_thread(self.leases.save_checkpoints, changed)
            self._stored.update(changed)

    # --- results ------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Store finished scorer results; only then are they no longer "in flight"."""
        await self.rules.flush()
        async with self._flush_lock:
            if not self._results:
                return
            batch, self._results = self._results, []
            try:
                await asyncio.to_thread(write_outcomes, self.store, batch)
            except BaseException:
                self._results = batch + self._results
                raise
            now = time.monotonic()
            for outcome in batch:
                key = (outcome.item.trace_id, outcome.item.scorer_id)
                self._in_flight.pop(key, None)
                self._flushed[key] = now
            if len(self._in_flight) <= self.config.max_in_flight // 2:
                self._room.set()
        for outcome in batch:
            self.observer.scored(self.id, outcome.item.trace_id, outcome.item.scorer_id)

    @property
    def busy(self) -> bool:
        return bool(self._in_flight or self._results or self._queue or self.rules.busy)

    async def _flush_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.flush()
            except Exception as exc:  # the cycle reports store trouble; keep results for later
                logger.debug("evaluator %s: flush failed, will retry: %s", self.id, exc)
            await pause(stop, _FLUSH_SECONDS)

    # --- running ------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event, *, until_idle: bool = False) -> None:
        """Cycle until ``stop`` (or, with ``until_idle``, until nothing is left to do).

        Between cycles it waits the poll interval, or less: as soon as half the scorer runs
        in flight are stored, so scorers never run dry while work is waiting. It backs off
        while ClickHouse is unreachable.
        """
        flushing = asyncio.Event()
        flusher = asyncio.create_task(self._flush_loop(flushing))
        delay = self.config.poll_seconds
        down = False
        try:
            while not stop.is_set():
                try:
                    stats = await self.cycle()
                    if down:
                        logger.warning("evaluator %s: ClickHouse is reachable again", self.id)
                    down = False
                    delay = self.config.poll_seconds
                except StoreUnavailable as exc:
                    if not down:
                        logger.warning("evaluator %s: %s; retrying", self.id, exc)
                    down = True
                    delay = min(30.0, max(delay, 0.5) * 2)
                    await pause(stop, delay)
                    continue
                except Exception:
                    logger.exception("evaluator %s: cycle failed; retrying", self.id)
                    delay = min(30.0, max(delay, 0.5) * 2)
                    await pause(stop, delay)
                    continue
                if self._in_flight:
                    self._room.clear()
                    await pause(self._room, delay)
                elif until_idle:
                    if stats.idle and not self.busy:
                        return
                    if stats.computed == 0 and stats.started == 0 and stats.summarized == 0:
                        await pause(stop, min(delay, 0.2))
                else:
                    await pause(stop, delay)
        finally:
            flushing.set()
            await asyncio.gather(flusher, return_exceptions=True)
            await self.close()

    async def close(self) -> None:
        """Cancel running scorers (their rows stay owed, found again later), keep results."""
        tasks = [task for _, task in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("evaluator %s: results not stored at shutdown: %s", self.id, exc)
        self._in_flight.clear()
        self._queue.clear()
        await self.rules.close()
        await self.pool.aclose()
        try:
            await asyncio.to_thread(self.leases.leave)
        except Exception as exc:  # its heartbeat then ages out after one lease
            logger.warning("evaluator %s: could not sign off: %s", self.id, exc)
