"""Reading traces for the daemon: which experiment traces are ready, and their spans.

Both queries use the normalised columns computed at ingest (``Purpose``, ``Experiment*``,
``Llm*``, tokens, ``ProvidedCostUsd``), so every attribute dialect is read the same way, and
fetch only the few raw attributes that rows and scores need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from evalhouse.evaluators._values import EXPECTED, INPUT, METADATA, OUTPUT
from evalhouse.store import EVALUATOR_SCOPE, EXPERIMENT_SPAN, SHARDS, Store

__all__ = ["WATCHED", "Candidate", "Span", "fetch_spans", "find_candidates"]

# Attributes every span may need (time to first token, Braintrust experiment and metrics).
_SMALL_KEYS = (
    "gen_ai.response.time_to_first_chunk",
    "ai.response.msToFirstChunk",
    "langfuse.observation.completion_start_time",
    "braintrust.parent",
    "braintrust.metrics",
    "langfuse.experiment.dataset.id",
)
# Values in other dialects (the keys of :mod:`._values`, and Braintrust's scores): large on
# model calls, so read only on the spans that can carry a row's values (roots, eval/task/scorer
# spans, spans naming an experiment).
_ROW_KEYS = (
    *INPUT.others,
    *OUTPUT.others,
    *EXPECTED.others,
    *METADATA.others,
    "braintrust.scores",
)


def _keys(keys: Sequence[str]) -> str:
    return ", ".join(f"'{key}'" for key in keys)


_ROWISH = "(Purpose != '' OR ParentSpanId = '' OR ExperimentId != '' OR ExperimentName != '')"
_ATTRIBUTES = (
    "mapFilter((k, v) -> startsWith(k, 'evalhouse.') "
    f"OR k IN ({_keys(_SMALL_KEYS)}) OR ({_ROWISH} AND k IN ({_keys(_ROW_KEYS)})), "
    "SpanAttributes)"
)

_SPAN_COLUMNS = f"""
    TraceId, SpanId, ParentSpanId, SpanName,
    toUnixTimestamp64Nano(Timestamp) AS start_ns, Duration,
    StatusCode = 'STATUS_CODE_ERROR' AS failed,
    if(failed, StatusMessage, '') AS status_message,
    if(failed, Events.Attributes[indexOf(Events.Name, 'exception')]['exception.message'], '')
        AS exception_message,
    Purpose, ExperimentName, ExperimentId, RowId, Trial,
    LlmProvider, LlmRequestModel, LlmResponseModel, LlmOperation,
    InputTokens, OutputTokens, CacheReadTokens, CacheWriteTokens, ReasoningTokens,
    ProvidedCostUsd,
    ScopeName = '{EVALUATOR_SCOPE}' AS by_evaluator,
    toUnixTimestamp64Milli(InsertedAt) AS inserted_ms,
    {_ATTRIBUTES} AS attributes,
    arrayFilter((a, n) -> n = 'gen_ai.evaluation.result', Events.Attributes, Events.Name)
        AS evaluations"""


@dataclass(slots=True)
class Span:
    """The columns of one stored span that experiment rows are computed from."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    start_ns: int
    duration_ns: int
    failed: bool
    status_message: str
    exception_message: str
    purpose: str
    experiment_name: str
    experiment_id: str
    row_id: str
    trial: int
    provider: str
    request_model: str
    response_model: str
    operation: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    provided_cost_usd: float | None
    by_evaluator: bool
    inserted_ms: int
    attributes: Mapping[str, str]
    evaluations: Sequence[Mapping[str, str]]

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns

    @property
    def watched(self) -> bool:
        """False for the daemon's own scorer spans: they must not recompute the row."""
        return not (self.by_evaluator and self.operation == "")


def fetch_spans(store: Store, trace_ids: Sequence[str]) -> dict[str, list[Span]]:
    """Every stored span of ``trace_ids``, grouped by trace."""
    if not trace_ids:
        return {}
    rows = store.query(
        f"SELECT {_SPAN_COLUMNS} FROM otel_traces WHERE TraceId IN {{ids:Array(String)}}",
        {"ids": list(trace_ids)},
    )
    traces: dict[str, list[Span]] = {}
    for row in rows:
        span = Span(*row)
        traces.setdefault(span.trace_id, []).append(span)
    return traces


@dataclass(frozen=True, slots=True)
class Candidate:
    """A quiet experiment trace, and what the daemon already did with it.

    ``watermark_ms`` and ``span_count`` cover the watched spans (see ``WATCHED``);
    ``computations`` is 0 when no row was computed yet; ``done`` lists the scorers that already
    ran on the row (any outcome, errors included).
    """

    trace_id: str
    shard: int
    watermark_ms: int
    span_count: int
    row_experiment_id: str
    row_watermark_ms: int
    row_span_count: int
    initial_span_count: int
    computations: int
    scorers: tuple[str, ...]
    done: tuple[str, ...]

    @property
    def needs_compute(self) -> bool:
        return (
            self.computations == 0
            or self.watermark_ms != self.row_watermark_ms
            or self.span_count != self.row_span_count
        )


# A trace is an experiment row when one of its spans is (see ``EXPERIMENT_SPAN``).
_IS_EXPERIMENT = f"countIf({EXPERIMENT_SPAN}) > 0"
# Spans whose arrival recomputes a row: all but the daemon's own scorer spans. The model-call
# spans it writes for a judge's usage do count, so judge tokens reach the row.
WATCHED = f"NOT (ScopeName = '{EVALUATOR_SCOPE}' AND LlmOperation = '')"

# A span stored more than this after the last experiment span of its trace no longer
# recomputes the trace's row (the index of experiment traces is read this far back).
LATE_SPAN_MS = 3_600_000

_SHARD_OF = f"cityHash64(TraceId) % {SHARDS} IN {{shards:Array(UInt16)}}"
_MARKED = f"""
    SELECT TraceId FROM experiment_traces
    WHERE MarkedAt > fromUnixTimestamp64Milli({{marked_since:Int64}}, 'UTC') AND {_SHARD_OF}"""
# Whether any trace of the shards was marked at all: when none was (a flood of spans that
# belong to no experiment), the recent spans need not be read.
_ANY_MARKED = f"SELECT count() FROM ({_MARKED} LIMIT 1)"
# Traces of the shards with a watched span stored after `since` that are experiment traces:
# the recent spans are checked against the traces marked since `since` - LATE_SPAN_MS, so
# neither side reads more than the recent part of its table.
_CANDIDATES = f"""
WITH changed AS (
    SELECT DISTINCT TraceId FROM otel_traces
    WHERE InsertedAt > fromUnixTimestamp64Milli({{since:Int64}}, 'UTC') AND {WATCHED}
      AND {_SHARD_OF}
      AND TraceId IN ({_MARKED})
)
SELECT
    t.trace_id, t.shard, t.watermark_ms, t.span_count,
    r.experiment_id, toUnixTimestamp64Milli(r.inserted_watermark), r.watched_spans,
    r.initial_span_count, r.computations, r.scorers, d.done
FROM (
    SELECT
        TraceId AS trace_id,
        toUInt16(cityHash64(TraceId) % {SHARDS}) AS shard,
        maxIf(toUnixTimestamp64Milli(InsertedAt), {WATCHED}) AS watermark_ms,
        countIf({WATCHED}) AS span_count
    FROM otel_traces
    WHERE TraceId IN changed
    GROUP BY TraceId
    HAVING watermark_ms <= {{horizon:Int64}} AND {_IS_EXPERIMENT}
) AS t
LEFT JOIN (
    SELECT trace_id, experiment_id, inserted_watermark, watched_spans, initial_span_count,
           computations, scorers
    FROM experiment_row_metrics FINAL
    WHERE trace_id IN changed
) AS r ON r.trace_id = t.trace_id
LEFT JOIN (
    SELECT trace_id, groupUniqArray(scorer) AS done
    FROM scores
    WHERE source = 'experiment' AND trace_id IN changed
    GROUP BY trace_id
) AS d ON d.trace_id = t.trace_id
ORDER BY t.watermark_ms, t.trace_id
"""


def find_candidates(
    store: Store, *, shards: Sequence[int], since_ms: int, horizon_ms: int
) -> list[Candidate]:
    """Experiment traces of ``shards`` with a span stored after ``since_ms`` and none after
    ``horizon_ms`` (quiet), with the state of their computed row, if any."""
    if not shards:
        return []
    parameters: dict[str, Any] = {
        "since": since_ms,
        "marked_since": since_ms - LATE_SPAN_MS,
        "horizon": horizon_ms,
        "shards": list(shards),
    }
    marked = {k: parameters[k] for k in ("marked_since", "shards")}
    if not store.query(_ANY_MARKED, marked)[0][0]:
        return []
    rows = store.query(_CANDIDATES, parameters)
    return [
        Candidate(
            trace_id=row[0],
            shard=row[1],
            watermark_ms=row[2],
            span_count=row[3],
            row_experiment_id=row[4],
            row_watermark_ms=row[5],
            row_span_count=row[6],
            initial_span_count=row[7],
            computations=row[8],
            scorers=tuple(row[9]),
            done=tuple(row[10]),
        )
        for row in rows
    ]
