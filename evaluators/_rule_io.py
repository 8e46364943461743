"""What the online rules read from and write to the store besides spans: spend, checkpoints,
late spans, backfill requests, and a batch of results."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from evalhouse.evaluators._rule_rows import TARGET_COLUMNS, now_ns
from evalhouse.evaluators._rule_targets import Target
from evalhouse.evaluators._rules import REQUEST_SHARD, StoredRule
from evalhouse.store import (
    RULE_BACKFILLS,
    RULE_CHECKPOINTS,
    RULE_SPEND,
    RULE_TARGETS,
    SCORE_COLUMNS,
    ScoreRecord,
    Store,
)

__all__ = [
    "Backfill",
    "Spend",
    "backfill_done",
    "backfill_requests",
    "count_late",
    "read_checkpoints",
    "save_checkpoints",
    "spend_today",
    "write_results",
]

# Judge spend of one batch: (rule, UTC day) -> [USD, calls, input tokens, output tokens].
Spend = dict[tuple[str, date], list[float]]


def spend_today(store: Store, names: Sequence[str]) -> dict[str, float]:
    """What each rule's judges spent today (UTC), every worker and version together."""
    rows = store.query(
        f"SELECT rule, sum(cost_usd) FROM {RULE_SPEND} "
        "WHERE day = toDate(now(), 'UTC') AND rule IN {names:Array(String)} GROUP BY rule",
        {"names": list(names)},
    )
    return {name: float(total) for name, total in rows}


def read_checkpoints(store: Store, rule: StoredRule, shards: list[int]) -> dict[int, int]:
    """Per shard, how far the rule version looked (ms of ``InsertedAt``); a new version
    starts at its creation minus its delay: traces going quiet from its creation on."""
    rows = store.query(
        f"SELECT shard, toUnixTimestamp64Milli(watermark) FROM {RULE_CHECKPOINTS} FINAL "
        "WHERE rule = {rule:String} AND rule_version = {version:UInt32} "
        "AND shard IN {shards:Array(UInt16)}",
        {"rule": rule.name, "version": rule.version, "shards": shards},
    )
    found = {int(shard): int(mark) for shard, mark in rows}
    start = max(0, rule.created_at_ms - rule.delay_ms)
    return {shard: found.get(shard, start) for shard in shards}


def save_checkpoints(store: Store, rule: StoredRule, marks: Mapping[int, int], worker: str) -> None:
    store.insert_rows(
        RULE_CHECKPOINTS,
        [(rule.name, rule.version, shard, mark, worker) for shard, mark in sorted(marks.items())],
        ["rule", "rule_version", "shard", "watermark", "worker"],
    )


def count_late(store: Store, rule: StoredRule, late: list[Target]) -> None:
    """Spans stored after a target was decided: counted on its row, nothing re-scored."""
    by_key = {t.key: t for t in late}
    rows = store.query_dicts(
        f"SELECT * FROM {RULE_TARGETS} FINAL WHERE rule = {{rule:String}} "
        "AND rule_version = {version:UInt32} AND trace_id IN {ids:Array(String)} "
        "AND session_id IN {sessions:Array(String)}",
        {
            "rule": rule.name,
            "version": rule.version,
            "ids": sorted({t.trace_id for t in late}),
            "sessions": sorted({t.session_id for t in late}),
        },
    )
    updated = []
    for row in rows:
        target = by_key.get((row["trace_id"], row["span_id"], row["session_id"]))
        if target is None:
            continue
        row["late_spans"] = max(0, target.spans - row["spans"])
        row["updated_ns"] = now_ns()
        updated.append(tuple(row[c] for c in TARGET_COLUMNS))
    if updated:
        store.insert_rows(RULE_TARGETS, updated, TARGET_COLUMNS)


@dataclass
class Backfill:
    """A backfill request, as a worker goes through it."""

    id: str
    rule: str
    version: int
    start_ns: int
    end_ns: int
    done_shards: set[int] = field(default_factory=set)
    position: int = 0  # where the next slice starts (ns)


def backfill_requests(
    store: Store, names: Sequence[str], known: dict[str, Backfill]
) -> list[Backfill]:
    """The backfill requests of these rules, with the shards done; ``known`` keeps a worker's
    progress through them between cycles."""
    rows = store.query(
        f"SELECT id, rule, rule_version, toUnixTimestamp64Nano(since), "
        f"toUnixTimestamp64Nano(until), groupArrayIf(shard, shard != {REQUEST_SHARD}), "
        f"countIf(shard = {REQUEST_SHARD}) FROM {RULE_BACKFILLS} FINAL "
        "WHERE rule IN {names:Array(String)} GROUP BY id, rule, rule_version, since, until",
        {"names": list(names)},
    )
    found = []
    for backfill_id, rule, version, start, end, done, requested in rows:
        if not requested:
            continue
        request = known.get(backfill_id)
        if request is None:
            request = known[backfill_id] = Backfill(
                backfill_id, rule, int(version), int(start), int(end), position=int(start)
            )
        request.done_shards.update(int(s) for s in done)
        found.append(request)
    return found


def backfill_done(store: Store, request: Backfill, shards: list[int]) -> None:
    store.insert_rows(
        RULE_BACKFILLS,
        [
            (request.id, request.rule, request.version, request.start_ns, request.end_ns, s)
            for s in shards
        ],
        ["id", "rule", "rule_version", "since", "until", "shard"],
    )


def write_results(
    store: Store,
    worker: str,
    runs: Sequence[str],
    records: list[ScoreRecord],
    spend: Spend,
    rows: list[tuple[Any, ...]],
) -> None:
    """Scores first (once a result is in ``scores`` it is done), then the judges' spend (its
    insert deduplicated by the ``runs`` of the batch, so a retried flush counts once), then
    the targets now complete."""
    if records:
        store.insert_rows("scores", [r.values() for r in records], SCORE_COLUMNS)
    if spend:
        digest = hashlib.sha256("|".join(sorted(runs)).encode()).hexdigest()
        store.insert_rows(
            RULE_SPEND,
            [
                (rule, day, worker, t[0], int(t[1]), int(t[2]), int(t[3]))
                for (rule, day), t in sorted(spend.items())
            ],
            ["rule", "day", "worker", "cost_usd", "judge_calls", "input_tokens", "output_tokens"],
            settings={"insert_deduplication_token": f"rule-spend:{digest}"},
        )
    if rows:
        store.insert_rows(RULE_TARGETS, rows, TARGET_COLUMNS)
