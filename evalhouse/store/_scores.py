"""One row of ``scores``, whoever wrote it: the columns every writer fills, declared once.

Sources (``docs/sql.md``, "Scores"): ``experiment`` (evalhouse scored an experiment row:
the daemon or ``evalhouse score``), ``rule`` (an online rule scored production traffic),
``human`` (a person: ``POST /api/feedback`` without an API key, a review queue), ``api`` (a
program holding an API key: ``POST /api/feedback``, the SDK's ``evalhouse.feedback``),
``otlp`` (the app itself, in its spans: scorer spans, ``gen_ai.evaluation.result`` events).

>>> ScoreRecord(name="helpful", value=1.0, source="human", trace_id="ab").values()[:6]
('', 'ab', '', 0, 'helpful', 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["SCORE_COLUMNS", "SCORE_SOURCES", "ScoreRecord"]

SCORE_SOURCES = ("experiment", "rule", "human", "api", "otlp")


@dataclass(frozen=True, slots=True)
class ScoreRecord:
    """The columns of a ``scores`` row; ``created_at`` in milliseconds since the epoch."""

    name: str
    source: str
    created_at: int = 0
    value: float | None = None
    label: str = ""
    error: str = ""
    explanation: str = ""
    experiment_id: str = ""
    trace_id: str = ""
    row_id: str = ""
    trial: int = 0
    target_span_id: str = ""
    session_id: str = ""
    scorer: str = ""
    rule: str = ""
    rule_version: int = 0
    author: str = ""
    metadata: str = ""
    scorer_span_id: str = ""
    judge_input_tokens: int = 0
    judge_output_tokens: int = 0
    judge_cost_usd: float | None = None
    judge_model: str = ""

    def values(self) -> tuple[Any, ...]:
        """The values in :data:`SCORE_COLUMNS` order, for ``Store.insert_rows``; ``span_id``
        is written as a copy of ``target_span_id``."""
        return (*(getattr(self, name) for name in SCORE_COLUMNS[:-1]), self.target_span_id)


SCORE_COLUMNS: tuple[str, ...] = (
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
    "metadata",
    "target_span_id",
    "session_id",
    "rule",
    "rule_version",
    "author",
    "label",
    "scorer_span_id",
    "judge_input_tokens",
    "judge_output_tokens",
    "judge_cost_usd",
    "judge_model",
    "span_id",
)
