"""Which targets of a rule are ready, and what the rule already did with them.

A target is ready (``docs/online.md``, "When a target is ready"):

- a **trace** once its root span (the span without a parent) is stored, which an OTel SDK
  does when the root ends, and no span of it was stored for the rule's ``delay_s``: a long
  agent whose spans keep arriving is never scored early, however long it runs;
- a **span** once it is stored (stored spans have ended);
- a **session** once no span of any of its traces was stored for ``delay_s``.

Live traffic is found by ``otel_traces.InsertedAt``, like the experiment rows: each cycle reads
the spans stored since the rule's checkpoint (per shard) up to ``now - delay``, so a trace is
looked at when its last span is older than the delay, whoever wrote it. A backfill reads a
time window of ``trace_summaries`` instead. Either way one query per rule brings, for each
target, its readiness, whether the rule's filter and ``where`` match it (on the trace row the
explorer reads, ``trace_summaries``), whether it is sampled (:func:`sampled_sql`), what the
rule version decided before (``rule_targets``) and which scorers already have a score of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse.evaluators._rules import StoredRule, sample_params, sampled_sql
from evalhouse.evaluators._tree import MODEL_CALLS
from evalhouse.store import RULE_TARGETS, SHARDS, Store

__all__ = ["Target", "Window", "find_targets", "span_condition"]

# Turns of a session a scorer sees (the latest ones).
SESSION_TURNS = 50


@dataclass(frozen=True)
class Window:
    """Where targets are looked for: spans stored in ``(since_ms, horizon_ms]`` (live), or
    traces started in ``[start_ns, end_ns)`` (a backfill), quiet by ``horizon_ms``."""

    horizon_ms: int
    since_ms: int = 0
    start_ns: int | None = None
    end_ns: int | None = None

    @property
    def backfill(self) -> bool:
        return self.start_ns is not None


@dataclass(slots=True)
class Target:
    """One target of a rule as found this cycle (``state`` is what the version decided
    before: '' when nothing yet)."""

    scope: str
    trace_id: str
    span_id: str
    session_id: str
    shard: int
    watermark_ms: int
    spans: int
    has_root: bool
    summarized: bool
    matched: bool
    sampled: bool
    state: str
    decided_spans: int
    late_spans: int
    done: frozenset[str]
    input_tokens: int = 0
    output_tokens: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.trace_id, self.span_id, self.session_id)


def span_condition(rule: StoredRule) -> str:
    """Which spans a span rule looks at: its ``where`` (over ``otel_traces`` columns), else
    the model calls."""
    if rule.where:
        return f"({rule.where})"
    return "LlmOperation IN (" + ", ".join(f"'{op}'" for op in sorted(MODEL_CALLS)) + ")"


def _trace_filter(rule: StoredRule, filter_sql: str) -> str:
    where = f"({rule.where})" if rule.where and rule.scope != "span" else "1"
    return f"kind = 'production' AND ({filter_sql}) AND {where}"


_SHARD = f"cityHash64({{column}}) % {SHARDS} IN {{{{shards:Array(UInt16)}}}}"
_LIVE_SPANS = (
    "InsertedAt > fromUnixTimestamp64Milli({since:Int64}, 'UTC') "
    "AND InsertedAt <= fromUnixTimestamp64Milli({horizon:Int64}, 'UTC')"
)
_WINDOW = (
    "start_time >= fromUnixTimestamp64Nano({start:Int64}, 'UTC') "
    "AND start_time < fromUnixTimestamp64Nano({end:Int64}, 'UTC')"
)
# Spans of the changed traces, read within the time range the trace-id lookup knows for them.
_BOUNDED = """TraceId IN changed
      AND Timestamp >= (SELECT toDateTime64(min(Start), 9, 'UTC') FROM otel_traces_trace_id_ts
                        WHERE TraceId IN changed)
      AND Timestamp < (SELECT toDateTime64(max(End), 9, 'UTC') + INTERVAL 1 SECOND
                       FROM otel_traces_trace_id_ts WHERE TraceId IN changed)"""
_SUMMARY_LOW = """start_time >= (SELECT toDateTime64(min(Start), 9, 'UTC')
                          FROM otel_traces_trace_id_ts WHERE TraceId IN changed)"""


def _changed_traces(window: Window, *, sharded: bool) -> str:
    if window.backfill:
        shard = f" AND {_SHARD.format(column='trace_id')}" if sharded else ""
        return (
            f"SELECT DISTINCT trace_id FROM trace_summaries WHERE {_WINDOW} "
            f"AND kind = 'production'{shard}"
        )
    shard = f" AND {_SHARD.format(column='TraceId')}" if sharded else ""
    return f"SELECT DISTINCT TraceId FROM otel_traces WHERE {_LIVE_SPANS}{shard}"


_DECIDED = (
    """
    SELECT trace_id, span_id, session_id, state, spans, late_spans
    FROM """
    + RULE_TARGETS
    + """ FINAL
    WHERE rule = {{rule:String}} AND rule_version = {{version:UInt32}} AND {where}"""
)
_DONE = """
    SELECT trace_id, target_span_id, session_id, groupUniqArray(scorer) AS done
    FROM scores
    WHERE source = 'rule' AND rule = {{rule:String}} AND rule_version = {{version:UInt32}}
      AND {where}
    GROUP BY trace_id, target_span_id, session_id"""

_TRACES = """
WITH changed AS ({changed})
SELECT
    t.trace_id, t.shard, t.watermark_ms, t.spans, t.has_root,
    s.trace_id != '' AS summarized, s.matched, s.sampled,
    d.state, d.spans, d.late_spans, c.done,
    s.input_tokens, s.output_tokens,
    s.session_id, s.user_id, s.tags, s.models, s.root_name, s.service_name,
    s.input_preview, s.output_preview
FROM (
    SELECT TraceId AS trace_id, toUInt16(cityHash64(TraceId) % {shards_n}) AS shard,
        max(toUnixTimestamp64Milli(InsertedAt)) AS watermark_ms, count() AS spans,
        countIf(ParentSpanId = '') > 0 AS has_root
    FROM otel_traces
    WHERE {bounded}
    GROUP BY TraceId
    HAVING watermark_ms <= {{horizon:Int64}}
) AS t
LEFT JOIN (
    SELECT trace_id, {matched} AS matched, {sampled} AS sampled,
        if(length(calls.input_tokens) > 0, calls.input_tokens[1],
           intDiv(length(input_preview), 4)) AS input_tokens,
        if(length(calls.output_tokens) > 0, calls.output_tokens[-1],
           intDiv(length(output_preview), 4)) AS output_tokens,
        session_id, user_id, tags, models, root_name, service_name,
        input_preview, output_preview
    FROM trace_summaries FINAL
    WHERE trace_id IN changed AND {summary_low}
) AS s ON s.trace_id = t.trace_id
LEFT JOIN ({decided}) AS d ON d.trace_id = t.trace_id
LEFT JOIN ({done}) AS c ON c.trace_id = t.trace_id
ORDER BY t.watermark_ms, t.trace_id"""

_SPANS = """
WITH changed AS ({changed}),
picked AS (
    SELECT TraceId, SpanId, toUnixTimestamp64Milli(InsertedAt) AS watermark_ms,
        InputTokens, OutputTokens, SpanName, LlmRequestModel, LlmResponseModel
    FROM otel_traces
    WHERE {span_source} AND ({span_condition}) AND Purpose = '' AND ExperimentId = ''
      AND ScopeName != 'evalhouse.evaluator'
    LIMIT 1 BY TraceId, SpanId
)
SELECT
    p.TraceId, p.SpanId, toUInt16(cityHash64(p.TraceId) % {shards_n}) AS shard, p.watermark_ms,
    s.trace_id != '' AS summarized, s.matched,
    {sampled} AS sampled, d.state, c.done,
    p.InputTokens, p.OutputTokens, p.SpanName, p.LlmRequestModel, p.LlmResponseModel,
    p.TraceId IN (SELECT TraceId FROM experiment_traces
                  WHERE TraceId IN (SELECT TraceId FROM picked)) AS experimental
FROM picked AS p
LEFT JOIN (
    SELECT trace_id, {matched} AS matched FROM trace_summaries FINAL
    WHERE trace_id IN (SELECT TraceId FROM picked)
) AS s ON s.trace_id = p.TraceId
LEFT JOIN ({decided}) AS d ON d.trace_id = p.TraceId AND d.span_id = p.SpanId
LEFT JOIN ({done}) AS c ON c.trace_id = p.TraceId AND c.target_span_id = p.SpanId
ORDER BY p.watermark_ms, p.TraceId, p.SpanId"""

_SESSIONS = """
WITH changed AS ({changed}),
sess AS (
    SELECT DISTINCT session_id FROM trace_summaries
    WHERE trace_id IN changed AND session_id != '' AND {session_shard}
)
SELECT
    s.session_id, s.shard, s.watermark_ms, s.spans, s.matched, {sampled} AS sampled,
    d.state, d.spans, d.late_spans, c.done, s.input_tokens, s.output_tokens, s.turns,
    s.user_id, s.traces
FROM (
    SELECT session_id, toUInt16(cityHash64(session_id) % {shards_n}) AS shard,
        max(toUnixTimestamp64Milli(inserted_watermark)) AS watermark_ms,
        toUInt64(sum(span_count)) AS spans, count() AS traces,
        countIf({matched}) > 0 AS matched,
        toUInt64(intDiv(sum(length(input_preview) + length(output_preview)), 4)) AS input_tokens,
        toUInt64(intDiv(length(argMax(output_preview, start_time)), 4)) AS output_tokens,
        arraySlice(arraySort(x -> x.1, groupArray((start_time, input_preview, output_preview))),
                   -{turns}) AS turns,
        anyIf(user_id, user_id != '') AS user_id
    FROM trace_summaries FINAL
    WHERE session_id IN sess
    GROUP BY session_id
    HAVING watermark_ms <= {{horizon:Int64}}
) AS s
LEFT JOIN ({decided}) AS d ON d.session_id = s.session_id
LEFT JOIN ({done}) AS c ON c.session_id = s.session_id
ORDER BY s.watermark_ms, s.session_id"""

# Changed traces of a session rule that have no summary yet: the sessions they belong to are
# unknown until the summarizer writes them, so the rule's checkpoint waits for them.
_UNSUMMARIZED = """
WITH changed AS ({changed})
SELECT max(toUnixTimestamp64Milli(InsertedAt)) AS watermark_ms
FROM otel_traces
WHERE {bounded} AND TraceId NOT IN (SELECT trace_id FROM trace_summaries WHERE trace_id IN changed)
GROUP BY TraceId
ORDER BY watermark_ms
LIMIT 1"""


def _params(rule: StoredRule, shards: Sequence[int], window: Window) -> dict[str, Any]:
    params: dict[str, Any] = {
        "rule": rule.name,
        "version": rule.version,
        "shards": list(shards),
        "horizon": window.horizon_ms,
        **sample_params(rule),
    }
    if window.backfill:
        params.update(start=window.start_ns, end=window.end_ns)
    else:
        params["since"] = window.since_ms
    return params


def find_targets(
    store: Store,
    rule: StoredRule,
    *,
    shards: Sequence[int],
    window: Window,
    filter_sql: str = "1",
    filter_params: Mapping[str, Any] | None = None,
) -> tuple[list[Target], int | None]:
    """The targets of ``rule`` in ``shards`` found in ``window``, and the lowest watermark the
    rule's checkpoint must stay below (a trace whose row the summarizer has not written yet:
    it is looked at again next cycle), or None.

    ``filter_sql`` is the rule's filter compiled by the explorer's filter language, with its
    ``filter_params``.
    """
    if not shards:
        return [], None
    params = {**_params(rule, shards, window), **(filter_params or {})}
    matched = _trace_filter(rule, filter_sql)
    if rule.scope == "trace":
        return _traces(store, rule, params, window, matched), None
    if rule.scope == "span":
        return _spans(store, rule, params, window, matched), None
    return _sessions(store, rule, params, window, matched)


def _traces(
    store: Store, rule: StoredRule, params: dict[str, Any], window: Window, matched: str
) -> list[Target]:
    key = "trace_id IN changed AND span_id = '' AND session_id = ''"
    sql = _TRACES.format(
        changed=_changed_traces(window, sharded=True),
        shards_n=SHARDS,
        bounded=_BOUNDED,
        matched=matched,
        sampled=sampled_sql("trace_id"),
        summary_low=_SUMMARY_LOW,
        decided=_DECIDED.format(where=key),
        done=_DONE.format(where="trace_id IN changed AND target_span_id = '' AND session_id = ''"),
    )
    targets = []
    for row in store.query(sql, params):
        (trace_id, shard, watermark, spans, has_root, summarized, is_match, sampled) = row[:8]
        state, decided_spans, late, done, tokens_in, tokens_out = row[8:14]
        session, user, tags, models, root_name, service, preview_in, preview_out = row[14:]
        targets.append(
            Target(
                scope="trace",
                trace_id=trace_id,
                span_id="",
                session_id="",
                shard=shard,
                watermark_ms=watermark,
                spans=spans,
                has_root=bool(has_root),
                summarized=bool(summarized),
                matched=bool(is_match),
                sampled=bool(sampled),
                state=state,
                decided_spans=decided_spans,
                late_spans=late,
                done=frozenset(done),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                details={
                    "session_id": session,
                    "user_id": user,
                    "tags": list(tags),
                    "models": list(models),
                    "root_name": root_name,
                    "service_name": service,
                    "input_preview": preview_in,
                    "output_preview": preview_out,
                },
            )
        )
    return targets


def _spans(
    store: Store, rule: StoredRule, params: dict[str, Any], window: Window, matched: str
) -> list[Target]:
    if window.backfill:
        source = (
            "TraceId IN changed AND Timestamp >= fromUnixTimestamp64Nano({start:Int64}, 'UTC') "
            "AND Timestamp < fromUnixTimestamp64Nano({end:Int64}, 'UTC') + INTERVAL 1 HOUR"
        )
    else:
        source = f"{_LIVE_SPANS} AND {_SHARD.format(column='TraceId')}"
    sql = _SPANS.format(
        changed=_changed_traces(window, sharded=True),
        span_source=source,
        span_condition=span_condition(rule),
        shards_n=SHARDS,
        matched=matched,
        sampled=sampled_sql("concat(p.TraceId, ':', p.SpanId)"),
        decided=_DECIDED.format(where="trace_id IN (SELECT TraceId FROM picked)"),
        done=_DONE.format(where="trace_id IN (SELECT TraceId FROM picked)"),
    )
    needs_summary = bool(rule.filter)
    targets = []
    for row in store.query(sql, params):
        (trace_id, span_id, shard, watermark, summarized, is_match, sampled, state, done) = row[:9]
        tokens_in, tokens_out, name, request_model, response_model, experimental = row[9:]
        if experimental:
            continue  # a span of an experiment row: the experiment's, not the rule's
        targets.append(
            Target(
                scope="span",
                trace_id=trace_id,
                span_id=span_id,
                session_id="",
                shard=shard,
                watermark_ms=watermark,
                spans=1,
                has_root=True,
                summarized=bool(summarized) or not needs_summary,
                matched=bool(is_match) or not needs_summary,
                sampled=bool(sampled),
                state=state,
                decided_spans=1 if state else 0,
                late_spans=0,
                done=frozenset(done),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                details={"span_name": name, "model": request_model or response_model},
            )
        )
    return targets


def _sessions(
    store: Store, rule: StoredRule, params: dict[str, Any], window: Window, matched: str
) -> tuple[list[Target], int | None]:
    changed = _changed_traces(window, sharded=False)
    sql = _SESSIONS.format(
        changed=changed,
        session_shard=_SHARD.format(column="session_id"),
        shards_n=SHARDS,
        matched=matched,
        sampled=sampled_sql("s.session_id"),
        turns=SESSION_TURNS,
        decided=_DECIDED.format(where="trace_id = '' AND span_id = '' AND session_id IN sess"),
        done=_DONE.format(where="trace_id = '' AND target_span_id = '' AND session_id IN sess"),
    )
    targets = []
    for row in store.query(sql, params):
        (session, shard, watermark, spans, is_match, sampled, state, decided_spans) = row[:8]
        late, done, tokens_in, tokens_out, turns, user, traces = row[8:]
        targets.append(
            Target(
                scope="session",
                trace_id="",
                span_id="",
                session_id=session,
                shard=shard,
                watermark_ms=watermark,
                spans=spans,
                has_root=True,
                summarized=True,
                matched=bool(is_match),
                sampled=bool(sampled),
                state=state,
                decided_spans=decided_spans,
                late_spans=late,
                done=frozenset(done),
                input_tokens=tokens_in,
                output_tokens=tokens_out,
                details={
                    "turns": [(str(i), str(o)) for _, i, o in turns],
                    "user_id": user,
                    "traces": traces,
                },
            )
        )
    held = None
    if not window.backfill:
        rows = store.query(_UNSUMMARIZED.format(changed=changed, bounded=_BOUNDED), params)
        held = int(rows[0][0]) if rows else None
    return targets, held
