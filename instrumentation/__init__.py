"""The light SDK an app imports: OpenTelemetry set-up, tagging helpers, experiment runner.

Speaks OTLP and the HTTP API only, so an app never needs chDB or the server code. The usual
entry points are re-exported from ``evalhouse`` itself:

>>> import evalhouse
>>> evalhouse.init()  # doctest: +SKIP
>>> result = evalhouse.run_experiment("capitals", data, task, scorers=[exact])  # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.instrumentation._datasets import (
    Dataset,
    DatasetError,
    DatasetInfo,
    DatasetRow,
    DatasetVersion,
    dataset,
    list_datasets,
)
from evalhouse.instrumentation._feedback import current_trace_id, feedback
from evalhouse.instrumentation._results import (
    BaselineComparison,
    ExperimentResult,
    RowResult,
    ScoreComparison,
    ScorerSummary,
    ServerSummary,
)
from evalhouse.instrumentation._runner import run_experiment, run_experiment_async
from evalhouse.instrumentation._session import EvalSession, collecting
from evalhouse.instrumentation._tagging import TaggedSpan, scorer, task
from evalhouse.instrumentation._tasks import Hooks
from evalhouse.instrumentation._tracing import Tracing, force_flush, init

__all__ = [
    "BaselineComparison",
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetRow",
    "DatasetVersion",
    "EvalSession",
    "ExperimentResult",
    "Hooks",
    "RowResult",
    "ScoreComparison",
    "ScorerSummary",
    "ServerSummary",
    "TaggedSpan",
    "Tracing",
    "collecting",
    "current_trace_id",
    "dataset",
    "feedback",
    "force_flush",
    "init",
    "list_datasets",
    "run_experiment",
    "run_experiment_async",
    "scorer",
    "task",
]
