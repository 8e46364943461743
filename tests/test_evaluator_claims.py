"""Claims and leases in ClickHouse: racing inserts have one winner that every worker agrees on.

A claim is a one-row insert whose ``insert_deduplication_token`` is the claim key, into a
MergeTree with ``non_replicated_deduplication_window``: ClickHouse keeps the first and drops the
others. These tests race real threads (each with its own client) on the embedded store.
"""

from __future__ import annotations

import threading
import time

from conftest import wait_for

from evalhouse.clock import ManualClock
from evalhouse.evaluators._leases import Leases
from evalhouse.evaluators._scoring import ScorerPool
from evalhouse.evaluators._worker import Counters, EvaluatorConfig, Worker
from evalhouse.store import Store
from evalhouse.store._evaluator_schema import SHARDS


def _clients(store: Store, count: int) -> list[Store]:
    return [Store(store.dsn, database=store.database) for _ in range(count)]


def test_racing_claims_have_one_winner_that_everyone_reads(store: Store) -> None:
    threads_count, epoch = 8, 123_456
    leases = [
        Leases(client, f"worker-{i}", lease_seconds=60)
        for i, client in enumerate(_clients(store, threads_count))
    ]
    barrier = threading.Barrier(threads_count)
    seen: list[dict[tuple[int, int], str]] = [{} for _ in leases]

    def race(index: int) -> None:
        barrier.wait()
        # Each thread starts at another shard, so the threads meet all along the way (in
        # one order, the first thread to run could win every shard before the others start).
        for step in range(SHARDS):
            leases[index]._claim((step + index * 4) % SHARDS, epoch)
        seen[index] = leases[index]._claims(epoch)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stored = store.query(
        "SELECT shard, count(), any(owner) FROM evaluator_claims WHERE epoch = {e:UInt64} "
        "GROUP BY shard ORDER BY shard",
        {"e": epoch},
    )
    assert [(shard, count) for shard, count, _ in stored] == [(s, 1) for s in range(SHARDS)]
    winners = {(shard, epoch): owner for shard, _, owner in stored}
    assert all(view == winners for view in seen)
    # Several workers won some shards: the race was real.
    assert len(set(winners.values())) > 1


def test_workers_split_the_shards_fairly_and_never_share_one(store: Store) -> None:
    leases = [
        Leases(client, f"w{i}", lease_seconds=1.0) for i, client in enumerate(_clients(store, 4))
    ]
    for lease in leases:
        lease._heartbeat(lease.server_now_ms())

    def owned_now() -> list[set[int]]:
        views = []
        threads = [
            threading.Thread(target=lambda lease=lease: views.append(lease.refresh()))
            for lease in leases
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        epochs = {view.now_ms // 1000 for view in views}
        sets = [set(view.owned) for view in views]
        if len(epochs) == 1:  # all views in one epoch: no shard may have two owners
            everything = [shard for owned in sets for shard in owned]
            assert len(everything) == len(set(everything))
        return sets

    def fair() -> bool:
        sets = owned_now()
        return sorted(len(owned) for owned in sets) == [8, 8, 8, 8]

    wait_for(fair, timeout=15, interval=0.2)


def test_a_stopped_workers_shards_are_taken_over_when_its_lease_ends(store: Store) -> None:
    # One clock for both workers, moved by the test: a 60 s lease runs out without waiting.
    # It starts at an epoch boundary, so `first` holds the current epoch only.
    clock = ManualClock(now_ms=29_000_000 * 60_000)
    first, second = (
        Leases(client, name, lease_seconds=60, clock=clock)
        for client, name in zip(_clients(store, 2), ("first", "second"), strict=True)
    )
    assert len(first.refresh().owned) == SHARDS
    assert second.refresh().owned == {}
    clock.advance(59)  # `first` stops renewing; while its lease lasts nobody takes a shard
    assert second.refresh().owned == {}
    clock.advance(2)  # its lease has run out
    assert len(second.refresh().owned) == SHARDS


def test_a_worker_that_leaves_lets_the_others_take_its_share_when_its_claims_end(
    store: Store,
) -> None:
    # 60 s leases from an epoch boundary t0: `staying` claims every shard, hands half to
    # `leaving` at the next epoch (t0+61), then `leaving` stops on purpose.
    # Today's time (heartbeats older than a day are dropped by the table's TTL), at a boundary.
    clock = ManualClock(now_ms=(time.time_ns() // 60_000_000_000 + 1) * 60_000)
    staying, leaving = (
        Leases(client, name, lease_seconds=60, clock=clock)
        for client, name in zip(_clients(store, 2), ("staying", "leaving"), strict=True)
    )
    assert len(staying.refresh().owned) == SHARDS and leaving.refresh().owned == {}
    clock.advance(31)  # second half of the epoch: `staying` renews its fair half only
    staying.refresh()
    leaving.refresh()
    clock.advance(30)
    shares = staying.refresh(), leaving.refresh()
    assert [len(view.owned) for view in shares] == [SHARDS // 2, SHARDS // 2]
    leaving.leave()
    clock.advance(30)
    staying.refresh()
    clock.advance(30)  # t0+121: `leaving`'s claims have ended; its heartbeat (t0+61) has
    # not aged out of a lease yet, so only its leaving lets `staying` take every shard now.
    assert staying._live_workers(clock.now_ms()) == 1
    assert len(staying.refresh().owned) == SHARDS


def test_checkpoints_resume_where_the_last_owner_stopped(store: Store) -> None:
    owner, successor = (
        Leases(client, name, lease_seconds=60)
        for client, name in zip(_clients(store, 2), ("a", "b"), strict=True)
    )
    assert owner.checkpoints([0, 1]) == {0: 0, 1: 0}
    owner.save_checkpoints({0: 1_700_000_000_000, 1: 1_700_000_000_500})
    owner.save_checkpoints({1: 1_700_000_001_000})
    assert successor.checkpoints([0, 1, 2]) == {
        0: 1_700_000_000_000,
        1: 1_700_000_001_000,
        2: 0,
    }


def test_a_worker_can_start_a_scorer_at_any_moment_of_its_leases(store: Store) -> None:
    # A scorer run starts only while the lease has the scorer's timeout and a margin left
    # (65 s here). Renewing only half-way through a 120 s epoch left 65 -> 60 s in the five
    # seconds before it: no judge call started then (benchmarks/README.md, online).
    config = EvaluatorConfig(
        quiet_ms=0,
        poll_seconds=1,
        lease_seconds=120,
        scorer_timeout=60,
        scorer_concurrency=1,
        scorers={},
    )
    worker = Worker(
        store, config, "solo", pool=ScorerPool(timeout=60, concurrency=1), observer=Counters()
    )
    worker.leases.clock = clock = ManualClock(now_ms=(time.time_ns() // 120_000_000_000) * 120_000)
    lowest = []
    for _ in range(125):  # a cycle every 2 s through two epochs
        view = worker.leases.refresh()
        lowest.append(min(view.time_left_ms(shard) for shard in view.owned))
        clock.advance(2)
    assert len(view.owned) == SHARDS
    assert min(lowest) >= worker._score_margin_ms
