"""Writing the evaluator's results: rows, scores and scorer spans, in batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from evalhouse.evaluators._rows import ROW_COLUMNS, ComputedRow, Row
from evalhouse.evaluators._scoring import SPAN_COLUMNS, Outcome, ScoringItem
from evalhouse.store import SCORE_COLUMNS, Store

__all__ = ["load_items", "write_outcomes", "write_rows"]


def write_rows(store: Store, computed: Sequence[ComputedRow], extra: Sequence[Row] = ()) -> None:
    """Insert computed rows (with tombstones of rows that changed experiment) and the scores
    their spans reported."""
    rows: list[tuple[Any, ...]] = [item.row.values() for item in computed]
    rows += [item.tombstone.values() for item in computed if item.tombstone is not None]
    rows += [row.values() for row in extra]
    if rows:
        store.insert_rows("experiment_row_metrics", rows, ROW_COLUMNS)
    scores = [score for item in computed for score in item.scores]
    if scores:
        store.insert_rows("scores", scores, SCORE_COLUMNS)


def write_outcomes(store: Store, outcomes: Sequence[Outcome]) -> None:
    """Insert scorer results, then their spans.

    Scores first: once a result is in ``scores`` the (row, scorer) is done; the span only
    traces it (and a lost span is better than a scorer paid twice).
    """
    scores: list[tuple[Any, ...]] = []
    spans: list[tuple[Any, ...]] = []
    for outcome in outcomes:
        span_id = os.urandom(8).hex()
        scores += outcome.score_rows(span_id)
        spans += outcome.span_rows(span_id)
    if scores:
        store.insert_rows("scores", scores, SCORE_COLUMNS)
    if spans:
        store.insert_rows("otel_traces", spans, SPAN_COLUMNS)


_ITEM_COLUMNS = (
    "trace_id, experiment_id, row_id, trial, root_span_id, input, expected, output, metadata"
)


def load_items(store: Store, wanted: Sequence[tuple[str, int, str]]) -> list[ScoringItem]:
    """Scoring items for (trace id, shard, scorer id) of rows computed earlier."""
    if not wanted:
        return []
    rows = store.query(
        f"SELECT {_ITEM_COLUMNS} FROM experiment_row_metrics FINAL "
        "WHERE trace_id IN {ids:Array(String)}",
        {"ids": sorted({trace_id for trace_id, _, _ in wanted})},
    )
    by_trace = {row[0]: row for row in rows}
    items = []
    for trace_id, shard, scorer_id in wanted:
        row = by_trace.get(trace_id)
        if row is None:
            continue
        items.append(item_for(row, shard, scorer_id))
    return items


def item_for(row: Sequence[Any], shard: int, scorer_id: str) -> ScoringItem:
    """A scoring item from a row of ``_ITEM_COLUMNS``."""
    return ScoringItem(
        trace_id=row[0],
        shard=shard,
        experiment_id=row[1],
        row_id=row[2],
        trial=row[3],
        root_span_id=row[4],
        input=row[5],
        expected=row[6],
        output=row[7],
        metadata=row[8],
        scorer_id=scorer_id,
    )


def item_from_row(row: Row, shard: int, scorer_id: str) -> ScoringItem:
    return ScoringItem(
        trace_id=row.trace_id,
        shard=shard,
        experiment_id=row.experiment_id,
        row_id=row.row_id,
        trial=row.trial,
        root_span_id=row.root_span_id,
        input=row.input,
        expected=row.expected,
        output=row.output,
        metadata=row.metadata,
        scorer_id=scorer_id,
    )
