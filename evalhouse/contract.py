"""Wire-contract names: the span attributes any language sets to talk to evalhouse.

Documented in ``docs/wire-contract.md``; stable, because apps in other languages hard-code them.
"""

from __future__ import annotations

__all__ = [
    "DATASET_NAME",
    "DATASET_ROW_ID",
    "DATASET_VERSION",
    "EVALUATION_EVENT",
    "EVALUATION_EXPLANATION",
    "EVALUATION_LABEL",
    "EVALUATION_NAME",
    "EVALUATION_SCORE",
    "EXPECTED",
    "EXPERIMENT_ID",
    "EXPERIMENT_METADATA",
    "EXPERIMENT_NAME",
    "INPUT",
    "METADATA",
    "OUTPUT",
    "PURPOSES",
    "SCORERS",
    "SCORE_ERROR",
    "SCORE_EXPLANATION",
    "SCORE_METADATA",
    "SCORE_NAME",
    "SCORE_VALUE",
    "SPAN_PURPOSE",
    "TAGS",
    "TRIAL",
]

SPAN_PURPOSE = "evalhouse.span.purpose"
PURPOSES = ("eval", "task", "scorer")

EXPERIMENT_NAME = "evalhouse.experiment.name"
EXPERIMENT_ID = "evalhouse.experiment.id"
# JSON object describing the whole run (model, prompt version...); on the eval root span.
EXPERIMENT_METADATA = "evalhouse.experiment.metadata"
DATASET_NAME = "evalhouse.dataset.name"
DATASET_VERSION = "evalhouse.dataset.version"
DATASET_ROW_ID = "evalhouse.dataset.row_id"
# 0-based; a row without it is trial 0. Trials of one input share the row id.
TRIAL = "evalhouse.trial"
INPUT = "evalhouse.input"
EXPECTED = "evalhouse.expected"
OUTPUT = "evalhouse.output"
METADATA = "evalhouse.metadata"
SCORERS = "evalhouse.scorers"
# Tags of a trace (any span): a string array, or a comma-separated string.
TAGS = "evalhouse.tags"

SCORE_NAME = "evalhouse.score.name"
SCORE_VALUE = "evalhouse.score.value"
SCORE_EXPLANATION = "evalhouse.score.explanation"
SCORE_METADATA = "evalhouse.score.metadata"
# Set (with span status ERROR) when the scorer failed; the message says why.
SCORE_ERROR = "evalhouse.score.error"

# The OTel GenAI evaluation event: one per score, on the scorer span (or any span).
EVALUATION_EVENT = "gen_ai.evaluation.result"
EVALUATION_NAME = "gen_ai.evaluation.name"
EVALUATION_SCORE = "gen_ai.evaluation.score.value"
EVALUATION_EXPLANATION = "gen_ai.evaluation.explanation"
EVALUATION_LABEL = "gen_ai.evaluation.score.label"
