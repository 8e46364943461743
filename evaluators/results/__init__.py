"""Results: experiment summaries, comparisons with statistics, trials, benchmarks, exports.

Everything reads the evaluator's output (``experiment_rows``, ``experiments``, ``scores``)
with ClickHouse's ``readonly=1``; the HTTP API (``/api/experiments``, ``/api/compare``,
``/api/benchmark``) and ``evalhouse experiments ...`` are thin layers over :class:`Results`,
whose methods declare each parameter once (:class:`Param` says how it is offered as text).

>>> from evalhouse.evaluators.results import Results
>>> results = Results(store)                                        # doctest: +SKIP
>>> results.compare("summaries-v3")["scores"]["accuracy"]["verdict"]  # doctest: +SKIP
'regressed'

``compare`` holds the one verdict of a paired comparison: the API, ``evalhouse compare``,
``evalhouse eval --baseline``, the SDK and the web UI print it as it is.
"""

from __future__ import annotations

from evalhouse.errors import ExperimentNotFound, InvalidRequest
from evalhouse.evaluators.results._export import DEFAULT_FIELDS, FORMATS, Export
from evalhouse.evaluators.results._params import Param
from evalhouse.evaluators.results._results import Results
from evalhouse.evaluators.results._stats import (
    mean_interval,
    paired_test,
    score_interval,
    t_quantile,
    two_sided_p,
)
from evalhouse.evaluators.results._thresholds import Threshold, Thresholds
from evalhouse.evaluators.results._trainloop import (
    DETAIL_FIELDS,
    METRIC_FIELDS,
    RESULT_FIELDS,
    SUITE_FIELDS,
    SUMMARY_FIELDS,
    trainloop_document,
)

__all__ = [
    "DEFAULT_FIELDS",
    "DETAIL_FIELDS",
    "FORMATS",
    "METRIC_FIELDS",
    "RESULT_FIELDS",
    "SUITE_FIELDS",
    "SUMMARY_FIELDS",
    "ExperimentNotFound",
    "Export",
    "InvalidRequest",
    "Param",
    "Results",
    "Threshold",
    "Thresholds",
    "mean_interval",
    "paired_test",
    "score_interval",
    "t_quantile",
    "trainloop_document",
    "two_sided_p",
]
