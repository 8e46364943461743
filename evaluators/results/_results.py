"""``Results``: every results answer of one store, as the HTTP API and the CLI give it.

Its methods are the functions that do the work (``_summary.summary``, ``_compare.compare``,
...), each taking the :class:`~._context.Context` first, so a method's parameters are
declared once, in that function; the API routes bind to the same functions
(``surfaces/_api_experiments.py``) and the CLI's direct mode calls them through the routes'
parser, so every way gives the same numbers with the same keys.
"""

from __future__ import annotations

from evalhouse.evaluators.results import (
    _benchmark,
    _compare,
    _export,
    _row_page,
    _summary,
    _trainloop,
    _trials,
)
from evalhouse.evaluators.results._context import Context

__all__ = ["Results"]


class Results(Context):
    """Summaries, rows, trials, comparisons, benchmarks and exports of one store.

    >>> results = Results(store, aggregates=settings.aggregate_scores)   # doctest: +SKIP
    >>> results.compare("summaries-v3", "summaries-v2")["scores"]["accuracy"]["verdict"]
    'no significant change'
    """

    experiments = _summary.list_experiments
    trend = _summary.trend
    summary = _summary.summary
    rows = _row_page.rows_page
    trials = _trials.trials
    export = _export.export_rows
    trainloop = _trainloop.trainloop_results
    compare = _compare.compare
    benchmark = _benchmark.benchmark
