"""Online rules in the evaluator daemon: each cycle, for the shards a worker leases, find each
enabled rule's ready targets, decide what to do with each, score the sampled ones.

Exactly once per (rule version, target, scorer), across restarts and several workers, by the
experiment rows' own means (``_worker.py``):

- a shard is worked on only by its lease owner, and a scorer run starts only when the lease
  leaves time for it to finish;
- a target's decision is stored in ``rule_targets`` before its scorers start (``pending``);
  a scorer runs only when ``scores`` has no result of it for the target, and it is not
  queued, running or just stored here;
- per rule version and shard, the stored checkpoint never passes a target with a run owed,
  so after a crash the next owner finds it again, sees ``pending`` and runs what is missing.

The decision, stored once per target (a later look only counts late spans):

- not matched by the filter / ``where``: nothing (not counted);
- matched, not sampled: ``sampled_out``;
- sampled, a trace whose root span is not stored yet: ``waiting`` (decided again when it is);
- sampled, no output or a mapping that names an attribute no span has: ``skipped``;
- sampled, its judges' estimated cost over what is left of today's budget: ``skipped``
  (``budget``), nothing spent;
- otherwise ``pending`` and then ``scored`` once every scorer's result is stored.

Scores are written with ``source = 'rule'``, the rule's name and version, the target and the
judge's tokens and cost; a production trace gets no scorer spans (they would count in its
usage). Spend per rule and day goes to ``rule_spend`` for the budget.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalhouse.evaluators._leases import LeaseView
from evalhouse.evaluators._rule_cost import judge_plan, judge_spend, text_tokens
from evalhouse.evaluators._rule_io import (
    Backfill,
    Spend,
    backfill_done,
    backfill_requests,
    count_late,
    read_checkpoints,
    save_checkpoints,
    spend_today,
    write_results,
)
from evalhouse.evaluators._rule_rows import (
    TARGET_COLUMNS,
    Key,
    Open,
    now_ns,
    score_records,
    scoring_item,
    target_row,
)
from evalhouse.evaluators._rule_targets import Target, Window, find_targets
from evalhouse.evaluators._rule_values import Values, json_text, target_values
from evalhouse.evaluators._rules import StoredRule, read_rules
from evalhouse.evaluators._scoring import Outcome, ScorerPool, ScoringItem
from evalhouse.store import RULE_TARGETS, ScoreRecord, Store

__all__ = ["RuleRunner", "compile_filter"]

logger = logging.getLogger(__name__)

# Rescan this far behind the cursor every few seconds, since an insert can become visible a
# little after the InsertedAt it carries (an insert of a writer's batch takes well under a
# second). Shorter than the experiment worker's minute: a rescan reads every trace of the
# margin, at 1,000 traces/s that is 10,000 of them (benchmarks/online.py).
VISIBILITY_MARGIN_MS = 10_000
_MARGIN_SCAN_SECONDS = 15.0
# A backfill reads its window this many hours of trace starts at a time.
_BACKFILL_SLICE_NS = 3_600 * 10**9
_BACKFILL_SLICES_PER_CYCLE = 4

_RunKey = tuple[str, int, str, str, str, str]  # ... and the scorer id


def compile_filter(rule: StoredRule) -> tuple[str, dict[str, Any]]:
    """The rule's filter as SQL over the trace rows, by the explorer's filter language."""
    if not rule.filter.strip():
        return "1", {}
    # Imported when used: the explorer reads the evaluator's trace view, so a module-level
    # import would run in a cycle at import time.
    from evalhouse.explorer import parse_filter

    parsed = parse_filter(rule.filter, prefix="rf")
    return parsed.sql, dict(parsed.params)


@dataclass(frozen=True, slots=True)
class _Owed:
    """A scorer run owed on a target: where it lives, what the scorer is given, what its
    judges are expected to cost (reserved against the budget until it is stored)."""

    key: Key
    scorer_id: str
    shard: int
    watermark_ms: int
    item: ScoringItem
    reserved: float


class RuleRunner:
    """One worker's share of the online rules (the shards it leases)."""

    def __init__(
        self, store: Store, worker_id: str, pool: ScorerPool, *, score_margin_ms: int
    ) -> None:
        self.store = store
        self.worker = worker_id
        self.pool = pool
        self.score_margin_ms = score_margin_ms
        self._cursor: dict[tuple[str, int], dict[int, int]] = {}
        self._stored: dict[tuple[str, int], dict[int, int]] = {}
        self._margin_scanned: dict[tuple[str, int], float] = {}
        self._filters: dict[tuple[str, int], tuple[str, dict[str, Any]] | None] = {}
        self._queue: dict[_RunKey, _Owed] = {}
        self._in_flight: dict[_RunKey, tuple[_Owed, asyncio.Task[None]]] = {}
        self._results: list[tuple[_Owed, Outcome]] = []
        self._flushed: dict[_RunKey, float] = {}
        self._open: dict[Key, Open] = {}
        self._spent: dict[str, float] = {}  # today's stored spend per rule
        self._unstored: dict[str, float] = {}  # spent here, not in rule_spend yet
        self._reserved: dict[str, float] = {}  # estimates of runs owed here
        self._backfills: dict[str, Backfill] = {}
        self._flush_lock = asyncio.Lock()
        self._running = 0  # scorer runs started and not returned
        self._view: LeaseView | None = None  # the last leases seen, to start runs between cycles
        self._go = asyncio.Event()  # cleared while the collector is behind: runs wait
        self._go.set()
        self._slots = asyncio.Semaphore(pool.concurrency)

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._in_flight or self._results)

    # --- the cycle ----------------------------------------------------------------------------

    async def cycle(self, view: LeaseView, shards: Sequence[int], *, hold: bool = False) -> int:
        """One look at every enabled rule in ``shards``; returns the work done (targets
        decided and scorer runs started), 0 when idle. With ``hold`` (the collector is behind
        by a burst) results are stored, and nothing is decided or scored until a cycle
        without it: a judge call costs the server ten times the CPU of storing a trace."""
        await self.flush()
        if hold:
            self._go.clear()
            return 0
        self._go.set()
        rules = [r for r in await asyncio.to_thread(read_rules, self.store) if r.enabled]
        self._forget(rules, set(shards))
        if not rules or not shards:
            return 0
        started = time.monotonic()
        async with self._flush_lock:
            self._spent = await asyncio.to_thread(spend_today, self.store, [r.name for r in rules])
            self._unstored = {}
        work = 0
        for rule in rules:
            compiled = self._compiled(rule)
            if compiled is None:
                continue
            work += await self._live(rule, compiled, view, list(shards))
        work += await self._backfill(rules, view, list(shards))
        self._flushed = {k: at for k, at in self._flushed.items() if at >= started}
        work += self._start(view)
        return work

    def _forget(self, rules: list[StoredRule], shards: set[int]) -> None:
        """Drop what belongs to rule versions no longer enabled or shards no longer leased."""
        active = {(r.name, r.version) for r in rules}
        for key in [k for k in self._cursor if k not in active]:
            del self._cursor[key]
            self._stored.pop(key, None)
        for cursors in (*self._cursor.values(), *self._stored.values()):
            for shard in [s for s in cursors if s not in shards]:
                del cursors[shard]
        dropped = [
            k for k, o in self._queue.items() if o.shard not in shards or (k[0], k[1]) not in active
        ]
        for run in dropped:
            self._release(self._queue.pop(run))

    def _compiled(self, rule: StoredRule) -> tuple[str, dict[str, Any]] | None:
        key = (rule.name, rule.version)
        if key not in self._filters:
            try:
                self._filters[key] = compile_filter(rule)
            except Exception as exc:  # a filter stored by an older version of the language
                logger.warning("rule %s v%d: its filter cannot be used: %s", *key, exc)
                self._filters[key] = None
        return self._filters[key]

    def spent_today(self, rule: str) -> float:
        return (
            self._spent.get(rule, 0.0)
            + self._unstored.get(rule, 0.0)
            + self._reserved.get(rule, 0.0)
        )

    # --- live traffic -------------------------------------------------------------------------

    async def _live(
        self,
        rule: StoredRule,
        compiled: tuple[str, dict[str, Any]],
        view: LeaseView,
        shards: list[int],
    ) -> int:
        key = (rule.name, rule.version)
        cursors = self._cursor.setdefault(key, {})
        new = [s for s in shards if s not in cursors]
        if new:
            stored = await asyncio.to_thread(read_checkpoints, self.store, rule, new)
            cursors.update(stored)
            self._stored.setdefault(key, {}).update(stored)
        horizon = view.now() - rule.delay_ms
        now = time.monotonic()
        margin = now - self._margin_scanned.get(key, 0.0) >= _MARGIN_SCAN_SECONDS
        if margin:
            self._margin_scanned[key] = now
        # Shards taken over from another worker are read from their checkpoint minus the
        # margin, apart from the others, so a takeover does not rescan every shard.
        groups = [(new, True), ([s for s in shards if s not in new], margin)]
        work = 0
        holds: dict[int, int] = {}
        for group, rescan in groups:
            if not group:
                continue
            since = min(cursors[s] for s in group) - (VISIBILITY_MARGIN_MS if rescan else 0)
            if horizon <= since:
                continue
            targets, held = await asyncio.to_thread(
                find_targets,
                self.store,
                rule,
                shards=group,
                window=Window(horizon_ms=horizon, since_ms=max(0, since)),
                filter_sql=compiled[0],
                filter_params=compiled[1],
            )
            if held is not None:
                holds.update(dict.fromkeys(group, held - 1))
            work += await self._decide(rule, targets, holds, backfill=False)
        for shard in shards:
            cursors[shard] = max(cursors[shard], min(horizon, holds.get(shard, horizon)))
        await self._checkpoint(rule, shards)
        return work

    async def _checkpoint(self, rule: StoredRule, shards: list[int]) -> None:
        """Store how far every target of the rule is done: the cursor, held below runs owed."""
        key = (rule.name, rule.version)
        lowest = dict(self._cursor[key])
        owed = [*self._queue.values(), *(o for o, _ in self._in_flight.values())]
        for item in owed:
            if (item.key[0], item.key[1]) == key and item.shard in lowest:
                lowest[item.shard] = min(lowest[item.shard], item.watermark_ms - 1)
        stored = self._stored.setdefault(key, {})
        changed = {s: lowest[s] for s in shards if lowest[s] != stored.get(s)}
        if not changed:
            return
        await asyncio.to_thread(save_checkpoints, self.store, rule, changed, self.worker)
        stored.update(changed)

    # --- deciding -----------------------------------------------------------------------------

    async def _decide(
        self, rule: StoredRule, targets: list[Target], holds: dict[int, int], *, backfill: bool
    ) -> int:
        """Decide each target (rows written before any scorer starts); queue the runs owed."""
        fresh: list[Target] = []
        late: list[Target] = []
        for target in targets:
            if not target.summarized:
                # The trace row is not written yet: look at the trace again next cycle.
                mark = target.watermark_ms - 1
                holds[target.shard] = min(holds.get(target.shard, mark), mark)
                continue
            if target.state in ("", "waiting", "pending"):
                if target.state or target.matched:
                    fresh.append(target)
            elif target.spans > target.decided_spans + target.late_spans:
                late.append(target)
        if late:
            await asyncio.to_thread(count_late, self.store, rule, late)
        if not fresh:
            return len(late)
        values = await asyncio.to_thread(self._values, rule, fresh)
        rows: list[tuple[Any, ...]] = []
        owed: list[_Owed] = []
        now_ms = now_ns() // 1_000_000
        for target, found in zip(fresh, values, strict=True):
            ready_ms = target.watermark_ms + rule.delay_ms
            common: dict[str, Any] = {
                "backfill": backfill,
                "ready_ms": ready_ms,
                "decided_ms": now_ms,
            }
            if target.state == "" and not target.sampled:
                rows.append(target_row(rule, target, state="sampled_out", reason="", **common))
                continue
            if not target.has_root:
                if target.state != "waiting":
                    rows.append(target_row(rule, target, state="waiting", reason="root", **common))
                continue
            if found is None:
                continue
            if found.problem:
                rows.append(
                    target_row(
                        rule, target, state="skipped", reason=found.problem, values=found, **common
                    )
                )
                continue
            key: Key = (rule.name, rule.version, *target.key)
            missing = [
                s
                for s in rule.scorers
                if s not in target.done
                and (*key, s) not in self._queue
                and (*key, s) not in self._in_flight
                and (*key, s) not in self._flushed
            ]
            if not missing:
                if target.state == "pending" and key not in self._open:
                    rows.append(  # every result is stored: the run before a restart ended
                        target_row(
                            rule,
                            target,
                            state="scored",
                            reason="",
                            scored_ms=now_ms,
                            scorers=len(rule.scorers),
                            values=found,
                            **common,
                        )
                    )
                continue
            costs = {s: self._estimate(rule, [s], target, found) for s in missing}
            estimate = sum(costs.values())
            budget = rule.budget_usd_per_day
            if budget is not None and self.spent_today(rule.name) + estimate > budget:
                rows.append(
                    target_row(
                        rule,
                        target,
                        state="skipped",
                        reason="budget",
                        estimate=estimate,
                        values=found,
                        **common,
                    )
                )
                continue
            if target.state != "pending":
                rows.append(
                    target_row(
                        rule,
                        target,
                        state="pending",
                        reason="",
                        scorers=len(rule.scorers),
                        estimate=estimate,
                        values=found,
                        **common,
                    )
                )
            opened = self._open.get(key)
            if opened is None:
                opened = self._open[key] = Open(
                    rule, target, found, ready_ms, now_ms, backfill, estimate, set()
                )
            # Reserved now: the next target of this batch sees the budget this one takes.
            self._reserved[rule.name] = self._reserved.get(rule.name, 0.0) + estimate
            for scorer_id in missing:
                opened.remaining.add(scorer_id)
                owed.append(
                    _Owed(
                        key=key,
                        scorer_id=scorer_id,
                        shard=target.shard,
                        watermark_ms=target.watermark_ms,
                        item=scoring_item(target, found, scorer_id),
                        reserved=costs[scorer_id],
                    )
                )
        if rows:
            await asyncio.to_thread(self.store.insert_rows, RULE_TARGETS, rows, TARGET_COLUMNS)
        for item in owed:
            self._queue[(*item.key, item.scorer_id)] = item
        return len(rows) + len(late)

    def _values(self, rule: StoredRule, targets: list[Target]) -> list[Values | None]:
        """The values of the sampled targets (None for the others: nothing to read)."""
        wanted = [t for t in targets if (t.sampled or t.state) and t.has_root]
        found = target_values(
            self.store,
            rule.scope,
            [(t.trace_id, t.span_id, t.details) for t in wanted],
            rule.mapping,
        )
        by_key = {t.key: v for t, v in zip(wanted, found, strict=True)}
        return [by_key.get(t.key) for t in targets]

    def _estimate(
        self, rule: StoredRule, scorers: Iterable[str], target: Target, values: Values
    ) -> float:
        """The judges' cost for this target: the values as they will be sent."""
        value_tokens = sum(
            text_tokens(json_text(v) if not isinstance(v, str) else v)
            for v in (values.input, values.output, values.expected)
            if v is not None
        )
        total = 0.0
        for scorer_id in scorers:
            plan = judge_plan(scorer_id)
            if plan is None:
                continue
            usd = plan.call(value_tokens)[2]
            total += usd or 0.0
        return total

    # --- backfills ----------------------------------------------------------------------------

    async def _backfill(self, rules: list[StoredRule], view: LeaseView, shards: list[int]) -> int:
        by_name = {r.name: r for r in rules}
        requests = await asyncio.to_thread(
            backfill_requests, self.store, list(by_name), self._backfills
        )
        work = 0
        for request in requests:
            rule = by_name.get(request.rule)
            if rule is None or rule.version != request.version:
                continue  # superseded by a newer version, or disabled
            compiled = self._compiled(rule)
            if compiled is None:
                continue
            mine = [s for s in shards if s not in request.done_shards]
            if not mine:
                continue
            start = request.position
            for _ in range(_BACKFILL_SLICES_PER_CYCLE):
                if start >= request.end_ns:
                    break
                end = min(request.end_ns, start + _BACKFILL_SLICE_NS)
                horizon = view.now() - rule.delay_ms
                window = Window(horizon_ms=horizon, start_ns=start, end_ns=end)
                targets, _ = await asyncio.to_thread(
                    find_targets,
                    self.store,
                    rule,
                    shards=mine,
                    window=window,
                    filter_sql=compiled[0],
                    filter_params=compiled[1],
                )
                holds: dict[int, int] = {}
                work += await self._decide(rule, targets, holds, backfill=True)
                if holds:
                    break  # a trace row not written yet: this slice again next cycle
                start = end
            request.position = start
            owed = any(
                o.key[:2] == (rule.name, rule.version)
                for o in [*self._queue.values(), *(o for o, _ in self._in_flight.values())]
            )
            if start >= request.end_ns and not owed:
                await asyncio.to_thread(backfill_done, self.store, request, mine)
                request.done_shards.update(mine)
        return work

    # --- scoring ------------------------------------------------------------------------------

    def _start(self, view: LeaseView) -> int:
        """Start queued runs whose lease leaves time to finish, while there is room."""
        self._view = view
        started = 0
        room = max(256, self.pool.concurrency * 8) - self._running
        if room <= 0:
            return 0
        # A bounded look at the front of the queue: this runs each time a run ends.
        for key, owed in list(itertools.islice(self._queue.items(), room + 64)):
            if started >= room:
                break
            if view.time_left_ms(owed.shard) < self.score_margin_ms:
                continue
            del self._queue[key]
            self._running += 1
            self._in_flight[key] = (owed, asyncio.create_task(self._score(owed)))
            started += 1
        return started

    async def _score(self, owed: _Owed) -> None:
        try:
            async with self._slots:  # the gate is looked at by a run about to call its scorer
                await self._go.wait()
                outcome = await self.pool.run(owed.item)
        finally:
            self._running -= 1
        self._results.append((owed, outcome))
        # A slot is free: start the next run now rather than at the next cycle, so judges
        # stay busy while a backlog waits (benchmarks/online.py measures it).
        if self._queue and self._view is not None:
            self._start(self._view)

    async def flush(self) -> None:
        """Store finished results; a target is ``scored`` once all its results are stored."""
        async with self._flush_lock:
            if not self._results:
                return
            batch, self._results = self._results, []
            records, spend, done = self._results_rows(batch)
            now_ms = now_ns() // 1_000_000
            rows = [opened.row(now_ms) for opened in done]
            try:
                runs = [f"{owed.key}{owed.scorer_id}" for owed, _ in batch]
                await asyncio.to_thread(
                    write_results, self.store, self.worker, runs, records, spend, rows
                )
            except BaseException:
                self._results = batch + self._results
                raise
            now = time.monotonic()
            for owed, _ in batch:
                key = (*owed.key, owed.scorer_id)
                self._in_flight.pop(key, None)
                self._flushed[key] = now
                self._release(owed)
                opened = self._open.get(owed.key)
                if opened is not None:
                    opened.remaining.discard(owed.scorer_id)
            for opened in done:
                self._open.pop((opened.rule.name, opened.rule.version, *opened.target.key), None)
            for (rule, _), totals in spend.items():
                self._unstored[rule] = self._unstored.get(rule, 0.0) + totals[0]

    def _release(self, owed: _Owed) -> None:
        rule = owed.key[0]
        self._reserved[rule] = max(0.0, self._reserved.get(rule, 0.0) - owed.reserved)

    def _results_rows(
        self, batch: list[tuple[_Owed, Outcome]]
    ) -> tuple[list[ScoreRecord], Spend, list[Open]]:
        """The score rows of a batch, the judges' spend per (rule, day), and the targets whose
        last result is in it (with their errors and cost added up)."""
        records: list[ScoreRecord] = []
        spend: Spend = {}
        finishing: dict[Key, set[str]] = {}
        now_ms = now_ns() // 1_000_000
        day = datetime.fromtimestamp(now_ms / 1000, UTC).date()
        for owed, outcome in batch:
            used = judge_spend(outcome.scores)
            records += score_records(owed.key, owed.scorer_id, outcome, used, now_ms)
            if used.calls:
                totals = spend.setdefault((owed.key[0], day), [0.0, 0, 0, 0])
                totals[0] += used.cost_usd or 0.0
                totals[1] += used.calls
                totals[2] += used.input_tokens
                totals[3] += used.output_tokens
            opened = self._open.get(owed.key)
            if opened is None:
                continue
            finishing.setdefault(owed.key, set()).add(owed.scorer_id)
            opened.errors += int(bool(outcome.error))
            if used.cost_usd is not None:
                opened.cost = (opened.cost or 0.0) + used.cost_usd
        done = [
            self._open[key]
            for key, scorers in finishing.items()
            if not (self._open[key].remaining - scorers)
        ]
        return records, spend, done

    async def close(self) -> None:
        """Cancel running scorers (their targets stay ``pending``, found again), keep results."""
        tasks = [task for _, task in self._in_flight.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.flush()
        except Exception as exc:
            logger.warning("rules %s: results not stored at shutdown: %s", self.worker, exc)
        self._in_flight.clear()
        self._queue.clear()
