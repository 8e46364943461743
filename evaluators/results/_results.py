"""``Results``: every results answer of one store, as the HTTP API and the CLI give it.

The API's routes and the CLI's direct mode (no server holding the data directory) call the
same methods, so both print the same numbers with the same keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from evalhouse.config import AggregateScore, Settings
from evalhouse.evaluators.results._benchmark import PASS_THRESHOLD, benchmark
from evalhouse.evaluators.results._compare import METRIC_TOLERANCE, SCORE_TOLERANCE, compare
from evalhouse.evaluators.results._export import Export, export_rows
from evalhouse.evaluators.results._row_page import rows_page
from evalhouse.evaluators.results._summary import list_experiments, summary, trend
from evalhouse.evaluators.results._thresholds import Thresholds
from evalhouse.evaluators.results._trainloop import trainloop_benchmark, trainloop_results
from evalhouse.evaluators.results._trials import FLAKY_TOLERANCE, trials
from evalhouse.store import Store

__all__ = ["Results"]


class Results:
    """Summaries, rows, trials, comparisons, benchmarks and exports of one store.

    >>> results = Results(store, aggregates=settings.aggregate_scores)   # doctest: +SKIP
    >>> results.compare("summaries-v3", "summaries-v2")["scores"]["accuracy"]["verdict"]
    'no significant change'
    """

    def __init__(
        self,
        store: Store,
        aggregates: Mapping[str, AggregateScore] | None = None,
        *,
        alpha: float = 0.05,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.aggregates = dict(aggregates or {})
        self.alpha = alpha
        self.thresholds = thresholds or Thresholds()

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Results:
        """The results of ``store`` with the settings' aggregate scores, significance level
        and practical thresholds (the API and the CLI's direct mode build it this way)."""
        return cls(
            store,
            settings.aggregate_scores,
            alpha=settings.compare_alpha,
            thresholds=Thresholds.from_settings(settings),
        )

    def experiments(
        self,
        *,
        name: str | None = None,
        dataset: str | None = None,
        metadata: Mapping[str, str] | None = None,
        usable: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> dict[str, Any]:
        return list_experiments(
            self.store,
            self.aggregates,
            name=name,
            dataset=dataset,
            metadata=metadata,
            usable=usable,
            limit=limit,
            offset=offset,
        )

    def trend(
        self, *, name: str | None = None, dataset: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        return trend(self.store, self.aggregates, name=name, dataset=dataset, limit=limit)

    def summary(
        self,
        experiment: str,
        *,
        group_by: str | None = None,
        where: str | None = None,
        alpha: float | None = None,
    ) -> dict[str, Any]:
        return summary(
            self.store,
            self.aggregates,
            experiment,
            group_by=group_by,
            where=where,
            alpha=alpha or self.alpha,
        )

    def rows(self, experiment: str, **options: Any) -> dict[str, Any]:
        """See :func:`rows_page` for the options (limit, offset, sort, order, q, where,
        errors)."""
        return rows_page(self.store, self.aggregates, experiment, **options)

    def trials(
        self,
        experiment: str,
        *,
        where: str | None = None,
        flaky_only: bool = False,
        limit: int = 1000,
        offset: int = 0,
        tolerance: float = FLAKY_TOLERANCE,
    ) -> dict[str, Any]:
        return trials(
            self.store,
            self.aggregates,
            experiment,
            where=where,
            flaky_only=flaky_only,
            limit=limit,
            offset=offset,
            tolerance=tolerance,
        )

    def compare(
        self,
        candidate: str,
        baseline: str | None = None,
        *,
        key: str | None = None,
        where: str | None = None,
        alpha: float | None = None,
        tolerance: float = SCORE_TOLERANCE,
        metric_tolerance: float = METRIC_TOLERANCE,
        score: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> dict[str, Any]:
        return compare(
            self.store,
            self.aggregates,
            candidate,
            baseline,
            key=key,
            where=where,
            alpha=alpha or self.alpha,
            tolerance=tolerance,
            metric_tolerance=metric_tolerance,
            thresholds=self.thresholds,
            score=score,
            limit=limit,
            offset=offset,
        )

    def benchmark(
        self,
        *,
        dataset: str,
        by: str = "metadata.model",
        score: str | None = None,
        pass_threshold: float = PASS_THRESHOLD,
        layout: str = "evalhouse",
    ) -> dict[str, Any]:
        """``layout="trainloop"`` gives TrainLoop's benchmark layout."""
        body = benchmark(
            self.store,
            self.aggregates,
            dataset=dataset,
            by=by,
            score=score,
            pass_threshold=pass_threshold,
        )
        return trainloop_benchmark(body) if layout == "trainloop" else body

    def export(
        self,
        experiment: str,
        *,
        fmt: str = "jsonl",
        fields: Sequence[str] | None = None,
        where: str | None = None,
    ) -> Export:
        return export_rows(
            self.store, self.aggregates, experiment, fmt=fmt, fields=fields, where=where
        )

    def trainloop(
        self, experiment: str, *, pass_threshold: float = PASS_THRESHOLD, details: bool = True
    ) -> dict[str, Any]:
        return trainloop_results(
            self.store,
            self.aggregates,
            experiment,
            pass_threshold=pass_threshold,
            details=details,
        )
