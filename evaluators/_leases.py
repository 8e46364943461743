"""Shard leases and checkpoints in ClickHouse, so several daemons split the work exactly once.

Traces are split into ``SHARDS`` shards by ``cityHash64(TraceId)``. Time is cut into epochs of
``lease`` length, read from the ClickHouse server's clock (so daemons on different hosts
agree). A worker owns shard *s* during epoch *e* when its claim ``(s, e)`` is the one stored:
a claim is a one-row insert whose ``insert_deduplication_token`` is the claim key, so of
concurrent claims the first one stored wins and the others are dropped by ClickHouse; reading
the claim back tells every worker who the owner is (``tests/test_evaluator_claims.py`` checks
this with racing threads).

- An owner renews its shards for the next epoch half-way through the current one, or
  earlier when the worker asks (``renew_ahead_seconds``: a worker that starts a scorer only
  with the scorer's timeout left on its lease renews before the lease falls below that, or no
  scorer could start for the seconds between); others only claim shards nobody holds in the
  *current* epoch, so a live owner never loses a shard.
- Each worker holds at most ``ceil(SHARDS / live workers)`` shards (heartbeats in
  ``evaluator_workers``); an owner with too many stops renewing the extra ones, and the
  newcomer claims them when the next epoch starts. A worker that stops on purpose removes its
  heartbeat (:meth:`Leases.leave`), so the others take its share when its claims end.
- Work on a shard only starts when the lease has time left for it to finish (the scorer
  timeout), so two owners never work on one shard at the same time.
- Progress per shard is a watermark on ``otel_traces.InsertedAt`` in
  ``evaluator_checkpoints``: whoever owns the shard next resumes from it.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from evalhouse.clock import Clock, ServerClock
from evalhouse.store import SHARDS, Store

__all__ = ["LeaseView", "Leases"]


@dataclass(frozen=True)
class LeaseView:
    """The shards a worker owns now, with when each lease ends (server time, ms)."""

    now_ms: int
    taken_at: float  # the clock's monotonic() when now_ms was read
    owned: Mapping[int, int]
    clock: Clock

    def now(self) -> int:
        """Server time now, advanced by the local monotonic clock since the lease check."""
        return self.now_ms + int((self.clock.monotonic() - self.taken_at) * 1000)

    def time_left_ms(self, shard: int) -> int:
        end = self.owned.get(shard)
        return -1 if end is None else end - self.now()


class Leases:
    """One worker's view of the claims table.

    >>> leases = Leases(store, "host-1", lease_seconds=120)   # doctest: +SKIP
    >>> view = leases.refresh()
    >>> sorted(view.owned)                                     # doctest: +SKIP
    [0, 1, 2, ...]
    """

    def __init__(
        self,
        store: Store,
        worker: str,
        *,
        lease_seconds: float,
        cluster: bool = False,
        clock: Clock | None = None,
        renew_ahead_seconds: float = 0.0,
    ) -> None:
        self.store = store
        self.worker = worker
        self.clock = clock or ServerClock(store)
        self.lease_ms = max(1, int(lease_seconds * 1000))
        # Renew half-way through an epoch, or once less than renew_ahead is left of it.
        ahead_ms = int(renew_ahead_seconds * 1000)
        self._renew_at_ms = max(0, min(self.lease_ms // 2, self.lease_ms - ahead_ms))
        # Replicas must see the claim that won, not a stale copy.
        self._read_settings = {"select_sequential_consistency": 1} if cluster else None
        self._last_heartbeat_ms = -(10**18)
        start = zlib.crc32(worker.encode()) % SHARDS
        # Workers try shards in different orders, so they rarely race for the same one.
        self._preference = [(start + i) % SHARDS for i in range(SHARDS)]

    def server_now_ms(self) -> int:
        return self.clock.now_ms()

    def refresh(self) -> LeaseView:
        """Heartbeat, claim free shards up to a fair share, renew owned ones; return owned."""
        now = self.server_now_ms()
        taken_at = self.clock.monotonic()
        self._heartbeat(now)
        target = math.ceil(SHARDS / self._live_workers(now))
        epoch = now // self.lease_ms
        claims = self._claims(epoch)
        mine = [s for s in self._preference if claims.get((s, epoch)) == self.worker]
        free = [s for s in self._preference if (s, epoch) not in claims]
        wanted = free[: max(0, target - len(mine))]
        if wanted:
            for shard in wanted:
                self._claim(shard, epoch)
            claims = self._claims(epoch)
            mine = [s for s in self._preference if claims.get((s, epoch)) == self.worker]
        if now - epoch * self.lease_ms >= self._renew_at_ms:
            keep = mine[:target]
            renew = [s for s in keep if (s, epoch + 1) not in claims]
            if renew:
                for shard in renew:
                    self._claim(shard, epoch + 1)
                claims = self._claims(epoch)
        owned = {}
        for shard in mine:
            last = epoch + 1 if claims.get((shard, epoch + 1)) == self.worker else epoch
            owned[shard] = (last + 1) * self.lease_ms
        return LeaseView(now_ms=now, taken_at=taken_at, owned=owned, clock=self.clock)

    def _heartbeat(self, now: int) -> None:
        if now - self._last_heartbeat_ms < self.lease_ms // 4:
            return
        self.store.insert_rows("evaluator_workers", [(self.worker, now)], ["worker", "heartbeat"])
        self._last_heartbeat_ms = now

    def leave(self) -> None:
        """A worker stopping on purpose takes its heartbeat with it: the others count one
        worker fewer at once and claim its shards as soon as its current claims end (the
        heartbeat of a worker that crashed ages out after one lease instead)."""
        self.store.command(
            "DELETE FROM evaluator_workers WHERE worker = {worker:String}", {"worker": self.worker}
        )
        self._last_heartbeat_ms = -(10**18)

    def _live_workers(self, now: int) -> int:
        rows = self.store.query(
            "SELECT uniqExact(worker) FROM evaluator_workers "
            "WHERE heartbeat >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')",
            {"since": now - self.lease_ms},
        )
        return max(1, int(rows[0][0]))

    def _claims(self, epoch: int) -> dict[tuple[int, int], str]:
        rows = self.store.query(
            "SELECT shard, epoch, argMin(owner, (claimed_at, owner)) FROM evaluator_claims "
            "WHERE epoch IN ({e:UInt64}, {e:UInt64} + 1) GROUP BY shard, epoch",
            {"e": epoch},
            settings=self._read_settings,
        )
        return {(int(shard), int(e)): owner for shard, e, owner in rows}

    def _claim(self, shard: int, epoch: int) -> None:
        # First insert with this token wins; later ones are dropped as duplicates. Async
        # inserts would deduplicate differently (ClickHouse >= 26.2 servers default to them).
        self.store.insert_rows(
            "evaluator_claims",
            [(shard, epoch, self.worker)],
            ["shard", "epoch", "owner"],
            settings={
                "insert_deduplication_token": f"evaluator-claim:{shard}:{epoch}",
                "async_insert": 0,
            },
        )

    # --- checkpoints --------------------------------------------------------------------------

    def checkpoints(self, shards: list[int]) -> dict[int, int]:
        """Watermark (ms) per shard; 0 for a shard never checkpointed."""
        if not shards:
            return {}
        rows = self.store.query(
            "SELECT shard, toUnixTimestamp64Milli(watermark) FROM evaluator_checkpoints FINAL "
            "WHERE shard IN {shards:Array(UInt16)}",
            {"shards": shards},
            settings=self._read_settings,
        )
        found = {int(shard): int(mark) for shard, mark in rows}
        return {shard: found.get(shard, 0) for shard in shards}

    def save_checkpoints(self, marks: Mapping[int, int]) -> None:
        if not marks:
            return
        # updated_at defaults to the server's clock: the newest checkpoint wins whichever
        # worker (on whichever host) wrote it.
        self.store.insert_rows(
            "evaluator_checkpoints",
            [(shard, mark, self.worker) for shard, mark in sorted(marks.items())],
            ["shard", "watermark", "worker"],
        )
