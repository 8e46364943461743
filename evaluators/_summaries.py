"""The trace summarizer: one row per quiet trace in ``trace_summaries`` (the explorer's list).

Each cycle of a worker, for the shards it leases, it takes the spans stored since its
cursor, in slices of at most ``SLICE_SPANS`` spans (``InsertedAt`` marks each insert), and
summarizes the traces they belong to whose last span was stored ``quiet_ms`` ago or more
(:mod:`._summary_rows`). A trace's spans are read between the first and last start time the
trace-id lookup (``otel_traces_trace_id_ts``) knows, so a slice reads a narrow time range of
``otel_traces`` however large the table is.

A re-summary (late spans) writes the new row and a signed copy of the previous one: the
copy is a tombstone in ``trace_summaries``/``trace_rank`` and subtracts what the trace added
to ``usage_rollup`` (``evalhouse/store/_explorer_schema.py``). A trace whose span count and
last insert time are unchanged is not written again, so a rescan after a restart, or two
cycles over the same slice, change nothing. Progress per shard is stored in
``trace_summary_checkpoints``, like the experiment rows' checkpoints.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from evalhouse.evaluators._cost import price_data_version
from evalhouse.evaluators._summary_rows import (
    MESSAGE_KEYS,
    MESSAGE_PREFIXES,
    SESSION_KEYS,
    TAG_KEYS,
    USER_KEYS,
    Link,
    Summary,
    TraceSpans,
    summarize,
)
from evalhouse.evaluators._traces import Span
from evalhouse.evaluators._tree import MODEL_CALLS
from evalhouse.evaluators._values import INPUT, OUTPUT
from evalhouse.store import (
    CALL_COLUMNS,
    EVALUATOR_SCOPE,
    EXPERIMENT_SPAN,
    SHARDS,
    SUMMARIES_INPUT,
    SUMMARY_CHECKPOINTS,
    SUMMARY_COLUMNS,
    Store,
    in_ids,
)

__all__ = ["SLICE_SPANS", "Summarizer"]

logger = logging.getLogger(__name__)

# Spans read per slice: a slice's spans and their traces fit in memory (~100 MiB at most).
SLICE_SPANS = 100_000
# Spans summarized per cycle at most, so a backlog never starves the experiment rows.
CYCLE_SPANS = 1_000_000
# While the collector in the same process has spans not yet written (``busy``), summaries
# wait, at most this long: ingest first. The ingest benchmark lost 7-64% of its throughput
# to a summarizer running beside it on the 2-core machine (benchmarks/README.md).
MAX_DEFER_SECONDS = 30.0
# Rescan this far behind the cursor every few seconds: an insert can become visible a little
# after the InsertedAt it carries (as in the experiment worker).
VISIBILITY_MARGIN_MS = 60_000
_MARGIN_SCAN_SECONDS = 15.0


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(f"'{key}'" for key in keys)


_MODEL_CALL = f"LlmOperation IN ({_keys(sorted(MODEL_CALLS))})"
_VALUE_KEYS = [INPUT.own, *INPUT.others, OUTPUT.own, *OUTPUT.others]
_PREFIXES = " OR ".join(f"startsWith(k, '{p}')" for p in MESSAGE_PREFIXES)
_MARKS = (
    f"mapFilter((k, v) -> k IN ({_keys([*SESSION_KEYS, *USER_KEYS, *TAG_KEYS])}), SpanAttributes)"
)
_VALUES = f"mapFilter((k, v) -> k IN ({_keys(_VALUE_KEYS)}), SpanAttributes)"
_MESSAGES = f"mapFilter((k, v) -> k IN ({_keys(MESSAGE_KEYS)}) OR {_PREFIXES}, SpanAttributes)"
_RESOURCE = f"mapFilter((k, v) -> k IN ({_keys([*SESSION_KEYS, *USER_KEYS])}), ResourceAttributes)"
_SHARD_OF = f"cityHash64(TraceId) % {SHARDS} IN {{shards:Array(UInt16)}}"
_SLICE = (
    "InsertedAt > fromUnixTimestamp64Milli({since:Int64}, 'UTC') "
    "AND InsertedAt <= fromUnixTimestamp64Milli({upto:Int64}, 'UTC')"
)
_STAMPS = f"""
SELECT toUnixTimestamp64Milli(InsertedAt) AS at, count() AS spans
FROM otel_traces WHERE {_SLICE} AND {_SHARD_OF}
GROUP BY at ORDER BY at LIMIT {{limit:UInt32}}"""
_STAMPS_READ = 10_000
_SPAN_COLUMNS = f"""
    TraceId, SpanId, ParentSpanId, SpanName,
    toUnixTimestamp64Nano(Timestamp) AS span_start, Duration,
    StatusCode = 'STATUS_CODE_ERROR' AS failed, '' AS status_message, '' AS exception_message,
    Purpose, ExperimentName, ExperimentId, RowId, Trial,
    LlmProvider, LlmRequestModel, LlmResponseModel, LlmOperation,
    InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, ReasoningTokens,
    ProvidedCostUsd,
    ScopeName = '{EVALUATOR_SCOPE}' AS by_evaluator,
    toUnixTimestamp64Milli(InsertedAt) AS span_inserted,
    ServiceName AS service, ParentSpanId = '' AS is_root,
    {EXPERIMENT_SPAN} AS span_experimental,
    {_MODEL_CALL} AS model_call,
    mapUpdate({_RESOURCE}, {_MARKS}) AS span_marks,
    if(is_root, {_VALUES}, map()) AS root_values,
    if(model_call, {_MESSAGES}, map()) AS messages,
    if(model_call, arrayFilter(n -> startsWith(n, 'gen_ai.content.'), Events.Name), [])
        AS event_names,
    if(model_call, arrayFilter((a, n) -> startsWith(n, 'gen_ai.content.'),
        Events.Attributes, Events.Name), []) AS event_attributes"""
# The traces with a span in a slice, or given by id.
_SLICE_IDS = f"SELECT DISTINCT TraceId FROM otel_traces WHERE {_SLICE} AND {_SHARD_OF}"
_GIVEN_IDS = "SELECT arrayJoin({ids:Array(String)}) AS TraceId"
_TRACE_SPANS = """
    FROM otel_traces
    WHERE TraceId IN ids
      AND Timestamp >= (SELECT toDateTime64(min(Start), 9, 'UTC') FROM otel_traces_trace_id_ts
                        WHERE TraceId IN ids)
      AND Timestamp < (SELECT toDateTime64(max(End), 9, 'UTC') + INTERVAL 1 SECOND
                       FROM otel_traces_trace_id_ts WHERE TraceId IN ids)"""
# What tells whether a trace changed since its summary, and nothing more: a rescan of the
# margin finds nearly every trace unchanged, and reading their spans whole took the server's
# interpreter from the judges (benchmarks/README.md, online evaluation).
_SEEN = f"""
WITH ids AS ({_SLICE_IDS})
SELECT TraceId, count() AS span_count, max(toUnixTimestamp64Milli(InsertedAt)) AS inserted_ms,
    min(toUnixTimestamp64Nano(Timestamp)) AS start_ns
{_TRACE_SPANS}
GROUP BY TraceId"""
# One row per trace: ClickHouse adds up the spans; Python gets the links, the root, the spans
# that name a session, user or tags, and the model calls (2-5x faster than a row per span).
_SPANS = """
WITH ids AS ({ids})
SELECT
    TraceId AS trace_id,
    min(span_start) AS start_ns,
    max(span_start + Duration) AS end_ns,
    count() AS span_count,
    countIf(failed) AS error_count,
    max(span_inserted) AS inserted_ms,
    max(span_experimental) AS experimental,
    anyIf(ExperimentId, ExperimentId != '') AS experiment_id,
    argMin(tuple(SpanId, SpanName, service, root_values), tuple(NOT is_root, span_start, SpanId))
        AS root,
    arrayMap(m -> m.2, arraySort(m -> m.1,
        groupArrayIf(tuple(tuple(NOT is_root, span_start), span_marks), notEmpty(span_marks))))
        AS marks,
    groupArray(tuple(SpanId, ParentSpanId, LlmOperation)) AS links,
    groupArrayIf(tuple(SpanId, ParentSpanId, SpanName, span_start, Duration, failed,
        status_message, exception_message, Purpose, ExperimentName, ExperimentId, RowId, Trial,
        LlmProvider, LlmRequestModel, LlmResponseModel, LlmOperation, InputTokens, OutputTokens,
        CacheReadTokens, CacheWriteTokens, ReasoningTokens, ProvidedCostUsd, by_evaluator,
        span_inserted, messages, event_names, event_attributes), model_call) AS calls
FROM (
    SELECT {columns}
    {spans}
)
GROUP BY TraceId"""
_SLICE_SPANS = _SPANS.format(ids=_SLICE_IDS, columns=_SPAN_COLUMNS, spans=_TRACE_SPANS)
_GIVEN_SPANS = _SPANS.format(ids=_GIVEN_IDS, columns=_SPAN_COLUMNS, spans=_TRACE_SPANS)

_CALL_NAMES = [f"calls.{name}" for name, _ in CALL_COLUMNS]
_PLAIN_NAMES = [name for name, _ in SUMMARY_COLUMNS if name != "is_deleted"]
# What is stored of some traces: first only what tells whether a trace changed (a rescan, the
# common case, reads no more), then the whole rows to replace, for the traces that did.
# A slice holds up to SLICE_SPANS spans' traces, and the rescan of the margin tens of
# thousands: the ids go through in_ids (3.0 s -> 0.2 s for 30,000).
_STORED = f"""
SELECT trace_id, span_count, toUnixTimestamp64Milli(inserted_watermark) AS inserted_ms
FROM trace_summaries FINAL
WHERE {in_ids("trace_id", "ids")}
  AND start_time >= fromUnixTimestamp64Nano({{lo:Int64}}, 'UTC')"""
_PREVIOUS = f"""
SELECT {", ".join(_PLAIN_NAMES)}, {", ".join(f"`{n}`" for n in _CALL_NAMES)},
    toUnixTimestamp64Nano(start_time) AS start_ns, toUnixTimestamp64Nano(end_time) AS end_ns
FROM trace_summaries FINAL
WHERE {in_ids("trace_id", "ids")}
  AND start_time >= fromUnixTimestamp64Nano({{lo:Int64}}, 'UTC')"""
_INSERT_COLUMNS = [*_PLAIN_NAMES, *_CALL_NAMES, "sign"]


class Summarizer:
    """Summarizes quiet traces of the shards a worker leases; one per worker.

    >>> summarizer = Summarizer(store, quiet_ms=2000, worker="w1")   # doctest: +SKIP
    >>> summarizer.run(shards=range(32), now_ms=server_now_ms)       # traces written
    """

    def __init__(
        self,
        store: Store,
        *,
        quiet_ms: int,
        worker: str,
        busy: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.quiet_ms = quiet_ms
        self.worker = worker
        self.busy = busy
        self._deferred_since: float | None = None
        self._cursor: dict[int, int] = {}
        self._stored: dict[int, int] = {}
        self._margin_scanned = 0.0
        self._version = 0
        # Whether the last run stopped at its span budget rather than at the quiet horizon.
        self.behind = False
        # This cycle was left to ingest: the online rules leave it too (their targets are
        # these rows, and their queries would hold the store the collector is writing to).
        self.deferred = False

    def forget(self, keep: set[int]) -> None:
        """Drop the cursors of shards no longer leased (their new owner resumes them)."""
        for shard in [s for s in self._cursor if s not in keep]:
            del self._cursor[shard]
            self._stored.pop(shard, None)

    def run(self, shards: Sequence[int], now_ms: int) -> int:
        """Summarize what changed in ``shards`` up to ``now_ms - quiet_ms``; traces written."""
        if not shards:
            return 0
        self.deferred = self._deferring()
        if self.deferred:
            self.behind = True
            return 0
        new = [s for s in shards if s not in self._cursor]
        if new:
            stored = self._checkpoints(new)
            self._stored.update(stored)
            self._cursor.update(stored)
        horizon = now_ms - self.quiet_ms
        since = scanned = min(self._cursor[s] for s in shards)
        started = time.monotonic()
        # Not while catching up on a backlog: the rescan would spend the cycle's budget again.
        if not self.behind and (new or started - self._margin_scanned >= _MARGIN_SCAN_SECONDS):
            since = max(0, since - VISIBILITY_MARGIN_MS)
            self._margin_scanned = started
        written, reached = self._slices(list(shards), since, horizon, scanned)
        self.behind = reached < horizon
        for shard in shards:
            self._cursor[shard] = max(self._cursor[shard], reached)
        self._save_checkpoints(shards)
        return written

    def _deferring(self) -> bool:
        """Whether to leave this cycle to ingest (see ``MAX_DEFER_SECONDS``)."""
        if self.busy is None or not self.busy():
            self._deferred_since = None
            return False
        now = time.monotonic()
        if self._deferred_since is None:
            self._deferred_since = now
        if now - self._deferred_since < MAX_DEFER_SECONDS:
            return True
        self._deferred_since = now  # waited long enough: one cycle now, then wait again
        return False

    def _slices(self, shards: list[int], since: int, horizon: int, scanned: int) -> tuple[int, int]:
        """Summarize slice after slice from ``since``, the slices up to ``scanned`` (read
        before, in every shard) as a rescan; (traces written, where it stopped)."""
        written = spent = 0
        while since < horizon:
            stamps = self.store.query(
                _STAMPS, {"shards": shards, "since": since, "upto": horizon, "limit": _STAMPS_READ}
            )
            for upto, spans in _cut(stamps, SLICE_SPANS):
                written += self._slice(shards, since, upto, horizon, rescan=upto <= scanned)
                since, spent = upto, spent + spans
                if spent >= CYCLE_SPANS:
                    return written, since
            if len(stamps) < _STAMPS_READ:
                break
        return written, horizon

    def _slice(
        self, shards: list[int], since: int, upto: int, horizon: int, *, rescan: bool
    ) -> int:
        """Summarize the traces with a span in ``(since, upto]`` that are quiet and changed.
        A ``rescan`` (of a slice summarized before) first reads only what tells a changed
        trace, then the spans of those."""
        where = {"shards": shards, "since": since, "upto": upto}
        if rescan:
            seen = [row for row in self.store.query(_SEEN, where) if row[2] <= horizon]
            if not seen:
                return 0
            stored = self._summarized([row[0] for row in seen], min(row[3] for row in seen))
            changed = [row[0] for row in seen if stored.get(row[0]) != (row[1], row[2])]
            if not changed:
                return 0
            found = self.store.query(_GIVEN_SPANS, {"ids": changed})
        else:
            found = self.store.query(_SLICE_SPANS, where)
        # Not quiet yet: found again once its last span is older.
        rows = [row for row in found if row[5] <= horizon]
        if not rows:
            return 0
        if not rescan:
            stored = self._summarized([row[0] for row in rows], min(row[1] for row in rows))
        summaries: list[Summary] = []
        for row in rows:
            if stored.get(row[0]) == (row[3], row[5]):  # summarized as it is now
                continue
            try:
                summaries.append(summarize(_trace(row)))
            except Exception as exc:  # one malformed trace must not stop the others
                logger.warning("summaries: cannot summarize trace %s: %s", row[0], exc)
        return self._write(summaries, stored)

    def _summarized(self, trace_ids: Sequence[str], lo: int) -> dict[str, tuple[int, int]]:
        """(span count, inserted watermark) of the stored summaries of ``trace_ids``."""
        return {
            trace_id: (spans, inserted)
            for trace_id, spans, inserted in self.store.query(_STORED, {"ids": trace_ids, "lo": lo})
        }

    def write(self, summaries: Sequence[Summary]) -> int:
        """Store ``summaries``, replacing (and un-counting) earlier ones; rows written."""
        if not summaries:
            return 0
        lo = min(s.start_ns for s in summaries)
        return self._write(summaries, self._summarized([s.trace_id for s in summaries], lo))

    def _write(self, summaries: Sequence[Summary], stored: dict[str, tuple[int, int]]) -> int:
        if not summaries:
            return 0
        lo = min(s.start_ns for s in summaries)
        changed = [s for s in summaries if stored.get(s.trace_id) != (s.span_count, s.inserted_ms)]
        replaced = [s.trace_id for s in changed if s.trace_id in stored]
        previous = {
            row["trace_id"]: row
            for row in (
                self.store.query_dicts(_PREVIOUS, {"ids": replaced, "lo": lo}) if replaced else []
            )
        }
        now = datetime.now(UTC)
        rows: list[list[Any]] = []
        for summary in changed:
            before = previous.get(summary.trace_id)
            version = self._next_version()
            if before is not None:
                rows.append(_signed(before, version - 1, -1))
            seen = set(before["calls.span_id"]) if before is not None else set()
            rows.append(_row(summary, seen, version, now))
        if rows:
            self.store.insert_rows(SUMMARIES_INPUT, rows, _INSERT_COLUMNS)
        return sum(1 for row in rows if row[-1] > 0)

    def _next_version(self) -> int:
        # Increasing within the process, and above every earlier process's (a clock in ns).
        self._version = max(self._version + 2, time.time_ns())
        return self._version

    # --- checkpoints --------------------------------------------------------------------------

    def _checkpoints(self, shards: list[int]) -> dict[int, int]:
        rows = self.store.query(
            f"SELECT shard, toUnixTimestamp64Milli(watermark) FROM {SUMMARY_CHECKPOINTS} FINAL "
            "WHERE shard IN {shards:Array(UInt16)}",
            {"shards": shards},
        )
        found = {int(shard): int(mark) for shard, mark in rows}
        return {shard: found.get(shard, 0) for shard in shards}

    def _save_checkpoints(self, shards: Sequence[int]) -> None:
        changed = [
            (shard, datetime.fromtimestamp(self._cursor[shard] / 1000, UTC), self.worker)
            for shard in shards
            if self._cursor[shard] != self._stored.get(shard)
        ]
        if not changed:
            return
        self.store.insert_rows(SUMMARY_CHECKPOINTS, changed, ["shard", "watermark", "worker"])
        self._stored.update({shard: self._cursor[shard] for shard in shards})


_SPAN: Any = Span


def _trace(row: tuple[Any, ...]) -> TraceSpans:
    """One row of ``_SPANS`` as the summary's input."""
    (trace_id, start_ns, end_ns, spans, errors, inserted, experimental, experiment_id) = row[:8]
    root, marks, links, calls = row[8:]
    model_calls = []
    events: dict[str, list[dict[str, Any]]] = {}
    for call in calls:
        # The tuple holds Span's fields in order, after the trace id (see _SPANS).
        model_calls.append(_SPAN(trace_id, *call[:25], attributes=call[25], evaluations=()))
        if call[26]:
            events[call[0]] = [
                {"name": name, "attributes": dict(attrs)}
                for name, attrs in zip(call[26], call[27], strict=False)
            ]
    return TraceSpans(
        trace_id=trace_id,
        start_ns=start_ns,
        end_ns=end_ns,
        span_count=spans,
        error_count=errors,
        inserted_ms=inserted,
        experimental=bool(experimental),
        experiment_id=experiment_id,
        root_span_id=root[0],
        root_name=root[1],
        root_service=root[2],
        root_attributes=root[3],
        marks=marks,
        links=[Link(*link) for link in links],
        calls=model_calls,
        events=events,
    )


def _cut(stamps: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """Slices of consecutive insert stamps holding about ``size`` spans: (end, spans)."""
    slices: list[tuple[int, int]] = []
    spans = 0
    for at, count in stamps:
        spans += count
        if spans >= size:
            slices.append((at, spans))
            spans = 0
    if spans:
        slices.append((stamps[-1][0], spans))
    return slices


def _row(summary: Summary, seen: set[str], version: int, now: datetime) -> list[Any]:
    firsts: set[tuple[str, str]] = set()
    first_flags = []
    for call in summary.calls:
        key = (call.provider, call.model)
        first_flags.append(int(key not in firsts))
        firsts.add(key)
    calls = summary.calls
    return [
        summary.trace_id,
        summary.start_ns,
        summary.end_ns,
        (summary.end_ns - summary.start_ns) / 1e6,
        summary.kind,
        summary.root_span_id,
        summary.root_name,
        summary.service_name,
        summary.session_id,
        summary.user_id,
        summary.tags,
        summary.status,
        summary.span_count,
        summary.error_count,
        len(calls),
        summary.models,
        summary.providers,
        summary.input_tokens,
        summary.output_tokens,
        summary.cache_read_tokens,
        summary.cache_write_tokens,
        summary.reasoning_tokens,
        summary.total_tokens,
        summary.cost_usd,
        summary.cost_known_usd,
        summary.cost_provenance,
        price_data_version(),
        summary.input_preview,
        summary.output_preview,
        summary.search_text,
        summary.experiment_id,
        datetime.fromtimestamp(summary.inserted_ms / 1000, UTC),
        now,
        version,
        [c.span_id for c in calls],
        [c.provider for c in calls],
        [c.model for c in calls],
        [c.duration_ms for c in calls],
        [c.input_tokens for c in calls],
        [c.output_tokens for c in calls],
        [c.input_tokens + c.output_tokens for c in calls],
        [c.cost_usd for c in calls],
        [int(c.span_id not in seen) for c in calls],
        first_flags,
        1,
    ]


def _signed(before: dict[str, Any], version: int, sign: int) -> list[Any]:
    """A stored summary written back with ``sign`` (a tombstone when negative)."""
    # Times as nanoseconds, like new rows (a column's values must be of one Python type).
    before = {**before, "start_time": before["start_ns"], "end_time": before["end_ns"]}
    values = [before[name] for name in _PLAIN_NAMES]
    values[_PLAIN_NAMES.index("version")] = version
    return [*values, *(before[name] for name in _CALL_NAMES), sign]
