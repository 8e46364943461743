"""Experiments written straight into the evaluator's output tables, with known values.

``experiment_row_metrics`` (one computed row per trace) and ``scores`` are what the evaluator
daemon writes; building them by hand gives results tests exact numbers to check. The test in
this module checks the seam: seeded rows read back through the daemon's views as expected.
Other ``test_results_*`` modules import :func:`seed` and :class:`Row`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from evalhouse.store import Store, migrate

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Row:
    """One experiment row (a trace) and its scores; JSON fields are Python values."""

    row_id: str
    input: Any = None
    output: Any = None
    expected: Any = None
    scores: dict[str, float] = field(default_factory=dict)
    score_errors: dict[str, str] = field(default_factory=dict)
    explanations: dict[str, str] = field(default_factory=dict)
    trial: int = 0
    metadata: dict[str, Any] | None = None
    error: str = ""
    task_duration_ms: float = 100.0
    llm_duration_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = 0.0
    cost_provenance: str = "none"
    judge_cost_usd: float | None = 0.0
    price_data_version: str = ""
    span_count: int = 3
    evaluator_spans: int = 0
    orphan_spans: int = 0
    late_spans: int = 0
    seconds: float = 0.0  # start, after the experiment's start
    trace_id: str = ""


_ROW_COLUMNS = (
    "experiment_id",
    "experiment_name",
    "dataset_name",
    "row_id",
    "trial",
    "trace_id",
    "root_span_id",
    "input",
    "expected",
    "output",
    "metadata",
    "experiment_metadata",
    "error",
    "started_at",
    "task_duration_ms",
    "llm_duration_ms",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "cost_known_usd",
    "cost_provenance",
    "price_data_version",
    "judge_cost_usd",
    "span_count",
    "evaluator_spans",
    "orphan_spans",
    "late_spans",
    "computed_at",
    "version",
)
_SCORE_COLUMNS = (
    "experiment_id",
    "trace_id",
    "row_id",
    "trial",
    "name",
    "value",
    "error",
    "explanation",
    "source",
    "created_at",
    "scorer",
)


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def seed(
    store: Store,
    experiment_id: str,
    rows: list[Row],
    *,
    name: str = "qa",
    dataset: str = "support",
    metadata: dict[str, Any] | None = None,
    start: datetime = T0,
) -> list[str]:
    """Insert an experiment's rows and scores as the daemon would; returns the trace ids."""
    row_values, score_values = [], []
    for row in rows:
        trace_id = row.trace_id or uuid.uuid4().hex
        row.trace_id = trace_id
        started = start + timedelta(seconds=row.seconds)
        row_values.append(
            (
                experiment_id,
                name,
                dataset,
                row.row_id,
                row.trial,
                trace_id,
                trace_id[:16],
                _json(row.input),
                _json(row.expected),
                _json(row.output),
                _json(row.metadata),
                _json(metadata),
                row.error,
                started,
                row.task_duration_ms,
                row.llm_duration_ms,
                row.input_tokens,
                row.output_tokens,
                row.cache_read_tokens,
                row.cache_write_tokens,
                row.reasoning_tokens,
                row.input_tokens + row.output_tokens,
                row.cost_usd,
                row.cost_usd or 0.0,
                row.cost_provenance,
                row.price_data_version,
                row.judge_cost_usd,
                row.span_count,
                row.evaluator_spans,
                row.orphan_spans,
                row.late_spans,
                started,
                1,
            )
        )
        for score, value in row.scores.items():
            score_values.append(
                (
                    experiment_id,
                    trace_id,
                    row.row_id,
                    row.trial,
                    score,
                    value,
                    "",
                    row.explanations.get(score, ""),
                    "evaluator",
                    started,
                    score,
                )
            )
        for score, message in row.score_errors.items():
            score_values.append(
                (
                    experiment_id,
                    trace_id,
                    row.row_id,
                    row.trial,
                    score,
                    None,
                    message,
                    "",
                    "evaluator",
                    started,
                    score,
                )
            )
    store.insert_rows("experiment_row_metrics", row_values, _ROW_COLUMNS)
    if score_values:
        store.insert_rows("scores", score_values, _SCORE_COLUMNS)
    return [row.trace_id for row in rows]


@contextmanager
def results_database(chdb_dsn: str) -> Iterator[Store]:
    """A migrated database for one test module (migrating is the slow part of a test)."""
    store = Store(chdb_dsn, database=f"test_results_{uuid.uuid4().hex[:10]}")
    migrate(store)
    try:
        yield store
    finally:
        store.command(f"DROP DATABASE IF EXISTS {store.database}")
        store.close()


def clear(store: Store) -> Store:
    """Empty the evaluator's output tables, so each test sees only what it seeds."""
    for table in ("experiment_row_metrics", "scores"):
        store.command(f"TRUNCATE TABLE {table}")
    return store


def test_seeded_rows_read_back_through_the_evaluator_views(store: Store) -> None:
    seed(
        store,
        "exp-seed",
        [
            Row("r1", {"q": 1}, "a", scores={"accuracy": 1.0}, cost_usd=0.5),
            Row("r2", {"q": 2}, "b", scores={"accuracy": 0.0}, score_errors={"judge": "boom"}),
        ],
        metadata={"model": "gpt-4o"},
    )
    rows = store.query_dicts(
        "SELECT row_id, scores, score_errors, input FROM experiment_rows "
        "WHERE experiment_id = 'exp-seed' ORDER BY row_id"
    )
    assert [(r["row_id"], r["scores"], r["score_errors"], r["input"]) for r in rows] == [
        ("r1", {"accuracy": 1.0}, {}, '{"q": 1}'),
        ("r2", {"accuracy": 0.0}, {"judge": "boom"}, '{"q": 2}'),
    ]
    (experiment,) = store.query_dicts(
        "SELECT rows, scores, total_cost_usd, metadata FROM experiments "
        "WHERE experiment_id = 'exp-seed'"
    )
    assert experiment == {
        "rows": 2,
        "scores": {"accuracy": 0.5},
        "total_cost_usd": 0.5,
        "metadata": '{"model": "gpt-4o"}',
    }
