"""Wire-contract names: the span attributes any language sets to talk to evalhouse.

Documented in ``docs/wire-contract.md``; stable, because apps in other languages hard-code them.
"""

from __future__ import annotations

__all__ = [
    "DATASET_NAME",
    "DATASET_ROW_ID",
    "EXPECTED",
    "EXPERIMENT_ID",
    "EXPERIMENT_NAME",
    "INPUT",
    "METADATA",
    "OUTPUT",
    "PURPOSES",
    "SCORERS",
    "SCORE_EXPLANATION",
    "SCORE_METADATA",
    "SCORE_NAME",
    "SCORE_VALUE",
    "SPAN_PURPOSE",
    "TRIAL",
]

SPAN_PURPOSE = "evalhouse.span.purpose"
PURPOSES = ("eval", "task", "scorer")

EXPERIMENT_NAME = "evalhouse.experiment.name"
EXPERIMENT_ID = "evalhouse.experiment.id"
DATASET_NAME = "evalhouse.dataset.name"
DATASET_ROW_ID = "evalhouse.dataset.row_id"
TRIAL = "evalhouse.trial"
INPUT = "evalhouse.input"
EXPECTED = "evalhouse.expected"
OUTPUT = "evalhouse.output"
METADATA = "evalhouse.metadata"
SCORERS = "evalhouse.scorers"

SCORE_NAME = "evalhouse.score.name"
SCORE_VALUE = "evalhouse.score.value"
SCORE_EXPLANATION = "evalhouse.score.explanation"
SCORE_METADATA = "evalhouse.score.metadata"
