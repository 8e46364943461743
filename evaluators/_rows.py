"""One experiment row computed from the spans of its trace (pure: no store access).

The row's values come from the ``eval`` root span (wire contract), falling back on the task
span and on the other dialects' input/output attributes (Braintrust, OpenInference,
OpenLLMetry, Langfuse), by the rule of :mod:`._values` that the trace page shares. Metrics
are computed on the task part only; the same metrics over the scorer parts are the judge
metrics. Scores found on scorer spans and in
``gen_ai.evaluation.result`` events are returned as ``scores`` rows with source ``otlp``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse import contract
from evalhouse.evaluators._cost import price_data_version
from evalhouse.evaluators._metrics import time_to_first_token_ms, totals
from evalhouse.evaluators._scorer_refs import scorer_refs
from evalhouse.evaluators._span_scores import span_scores
from evalhouse.evaluators._traces import Candidate, Span
from evalhouse.evaluators._tree import Partition, TraceTree
from evalhouse.evaluators._values import EXPECTED, INPUT, METADATA, OUTPUT, value_json

__all__ = ["ROW_COLUMNS", "ComputedRow", "Row", "compute_row"]


@dataclass(slots=True)
class Row:
    """A row of ``experiment_row_metrics``; fields in the table's column order."""

    experiment_id: str
    experiment_name: str
    dataset_name: str
    dataset_version: str
    row_id: str
    trial: int
    trace_id: str
    root_span_id: str
    input: str
    expected: str
    output: str
    metadata: str
    experiment_metadata: str
    error: str
    evaluator_error: str
    started_at: int  # ns
    task_duration_ms: float
    offset_ms: float
    llm_duration_ms: float
    ttft_ms: float | None
    llm_calls: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    reasoning_tokens: int
    total_tokens: int
    cost_usd: float | None
    cost_known_usd: float
    cost_provenance: str
    price_data_version: str
    judge_input_tokens: int
    judge_output_tokens: int
    judge_cache_read_tokens: int
    judge_cache_write_tokens: int
    judge_reasoning_tokens: int
    judge_total_tokens: int
    judge_cost_usd: float | None
    judge_cost_provenance: str
    judge_duration_ms: float
    judge_llm_calls: int
    scorers: list[str]
    span_count: int
    evaluator_spans: int
    watched_spans: int
    orphan_spans: int
    late_spans: int
    initial_span_count: int
    computations: int
    inserted_watermark: int  # ms
    computed_at: int  # ms
    computed_by: str
    version: int
    is_deleted: int = 0

    def values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in ROW_COLUMNS)


ROW_COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))


@dataclass
class ComputedRow:
    row: Row
    scores: list[tuple[Any, ...]] = field(default_factory=list)
    tombstone: Row | None = None  # the row's previous copy, filed under another experiment


def compute_row(
    spans: Sequence[Span],
    *,
    previous: Candidate | None,
    scorer_config: Mapping[str, Sequence[str | Mapping[str, Any]]],
    worker: str,
) -> ComputedRow | None:
    """The row of one trace, or None when the trace has no experiment root."""
    tree = TraceTree(spans)
    root = tree.row_root()
    if root is None:
        return None
    part = tree.partition(root)
    ids = _identity(spans, root)
    task = totals(part.task_calls)
    judge = totals(part.judge_calls)
    task_start, task_end = _envelope(part.task_spans or [root])
    trace_start = min(span.start_ns for span in spans)
    attrs = root.attributes
    task_attrs = [span.attributes for span in part.task_spans]
    input_ = value_json(INPUT, attrs, *task_attrs)
    experiment_metadata = attrs.get(contract.EXPERIMENT_METADATA, "")
    own = [span for span in spans if not span.by_evaluator]
    watched = [span for span in spans if span.watched] or list(spans)
    computed_before = previous is not None and previous.computations > 0
    initial = previous.initial_span_count if previous and computed_before else len(own)
    now_ms = time.time_ns() // 1_000_000
    row = Row(
        experiment_id=ids.experiment_id,
        experiment_name=ids.experiment_name,
        dataset_name=attrs.get(contract.DATASET_NAME) or ids.dataset_fallback,
        dataset_version=attrs.get(contract.DATASET_VERSION, ""),
        row_id=root.row_id or ids.row_id or _row_id_from(input_, root.trace_id),
        trial=root.trial,
        trace_id=root.trace_id,
        root_span_id=root.span_id,
        input=input_,
        expected=value_json(EXPECTED, attrs),
        output=value_json(OUTPUT, attrs, *task_attrs),
        metadata=value_json(METADATA, attrs),
        experiment_metadata=experiment_metadata,
        error=_task_error(part, root),
        evaluator_error="",
        started_at=root.start_ns,
        task_duration_ms=(task_end - task_start) / 1e6,
        offset_ms=(task_start - trace_start) / 1e6,
        llm_duration_ms=task.duration_ms,
        ttft_ms=time_to_first_token_ms(part.task_calls),
        llm_calls=task.calls,
        input_tokens=task.input_tokens,
        output_tokens=task.output_tokens,
        cache_read_tokens=task.cache_read_tokens,
        cache_write_tokens=task.cache_write_tokens,
        reasoning_tokens=task.reasoning_tokens,
        total_tokens=task.total_tokens,
        cost_usd=task.cost_usd,
        cost_known_usd=task.cost_known_usd,
        cost_provenance=task.cost_provenance,
        price_data_version=price_data_version(),
        judge_input_tokens=judge.input_tokens,
        judge_output_tokens=judge.output_tokens,
        judge_cache_read_tokens=judge.cache_read_tokens,
        judge_cache_write_tokens=judge.cache_write_tokens,
        judge_reasoning_tokens=judge.reasoning_tokens,
        judge_total_tokens=judge.total_tokens,
        judge_cost_usd=judge.cost_usd,
        judge_cost_provenance=judge.cost_provenance,
        judge_duration_ms=sum(span.duration_ns for span in part.scorer_spans) / 1e6,
        judge_llm_calls=judge.calls,
        scorers=[
            ref.id
            for ref in scorer_refs(
                row_attribute=attrs.get(contract.SCORERS),
                experiment_metadata=experiment_metadata,
                experiment_name=ids.experiment_name,
                config=scorer_config,
            )
        ],
        span_count=len(spans),
        evaluator_spans=len(spans) - len(own),
        watched_spans=len(watched),
        orphan_spans=sum(1 for span in tree.orphans if not span.by_evaluator),
        late_spans=max(0, len(own) - initial),
        initial_span_count=initial,
        computations=(previous.computations if previous else 0) + 1,
        inserted_watermark=max(span.inserted_ms for span in watched),
        computed_at=now_ms,
        computed_by=worker,
        version=time.time_ns(),
    )
    tombstone = None
    if previous and computed_before and previous.row_experiment_id != row.experiment_id:
        tombstone = dataclasses.replace(row, experiment_id=previous.row_experiment_id, is_deleted=1)
    return ComputedRow(row, span_scores(row, part), tombstone)


def failed_row(spans: Sequence[Span], message: str, *, worker: str) -> Row | None:
    """A row that says the evaluator could not compute it (kept visible, not dropped)."""
    tree = TraceTree(spans)
    root = tree.row_root()
    if root is None:
        return None
    ids = _identity(spans, root)
    return Row(
        experiment_id=ids.experiment_id,
        experiment_name=ids.experiment_name,
        dataset_name="",
        dataset_version="",
        row_id=root.row_id or ids.row_id or root.trace_id,
        trial=root.trial,
        trace_id=root.trace_id,
        root_span_id=root.span_id,
        input="",
        expected="",
        output="",
        metadata="",
        experiment_metadata="",
        error="",
        evaluator_error=message,
        started_at=root.start_ns,
        task_duration_ms=0.0,
        offset_ms=0.0,
        llm_duration_ms=0.0,
        ttft_ms=None,
        llm_calls=0,
        input_tokens=0,
        output_tokens=0,
        cache_read_tokens=0,
        cache_write_tokens=0,
        reasoning_tokens=0,
        total_tokens=0,
        cost_usd=None,
        cost_known_usd=0.0,
        cost_provenance="unknown",
        price_data_version="",
        judge_input_tokens=0,
        judge_output_tokens=0,
        judge_cache_read_tokens=0,
        judge_cache_write_tokens=0,
        judge_reasoning_tokens=0,
        judge_total_tokens=0,
        judge_cost_usd=None,
        judge_cost_provenance="unknown",
        judge_duration_ms=0.0,
        judge_llm_calls=0,
        scorers=[],
        span_count=len(spans),
        evaluator_spans=sum(1 for span in spans if span.by_evaluator),
        watched_spans=sum(1 for span in spans if span.watched),
        orphan_spans=len(tree.orphans),
        late_spans=0,
        initial_span_count=len(spans),
        computations=1,
        inserted_watermark=max((s.inserted_ms for s in spans if s.watched), default=0),
        computed_at=time.time_ns() // 1_000_000,
        computed_by=worker,
        version=time.time_ns(),
    )


# --- identity and values ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Identity:
    experiment_id: str
    experiment_name: str
    row_id: str
    dataset_fallback: str


def _identity(spans: Sequence[Span], root: Span) -> _Identity:
    """Experiment id and name from the root, else from any span of the trace."""
    experiment_id = root.experiment_id or _first(span.experiment_id for span in spans)
    name = root.experiment_name or _first(span.experiment_name for span in spans)
    if not experiment_id:
        parent = _first(span.attributes.get("braintrust.parent", "") for span in spans)
        if parent.startswith("experiment_id:"):
            experiment_id = parent.removeprefix("experiment_id:")
    return _Identity(
        experiment_id=experiment_id or name,
        experiment_name=name or experiment_id,
        row_id=_first(span.row_id for span in spans),
        dataset_fallback=_first(
            span.attributes.get("langfuse.experiment.dataset.id", "") for span in spans
        ),
    )


def _first(values: Any) -> str:
    for value in values:
        if value:
            return str(value)
    return ""


def _row_id_from(input_: str, trace_id: str) -> str:
    """Rows without a dataset row id are matched by input (trials of one input group)."""
    if not input_:
        return trace_id
    return "input:" + hashlib.sha256(input_.encode()).hexdigest()[:16]


def _envelope(spans: Sequence[Span]) -> tuple[int, int]:
    return min(span.start_ns for span in spans), max(span.end_ns for span in spans)


def _task_error(part: Partition, root: Span) -> str:
    """A task exception: the task span (else the root) ended with status ERROR."""
    failed = [s for s in (*sorted(part.task_spans, key=lambda s: s.start_ns), root) if s.failed]
    for span in failed:
        if span.status_message or span.exception_message:
            return span.status_message or span.exception_message
    return "status ERROR (no message)" if failed else ""
