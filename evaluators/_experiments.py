"""Which run an experiment reference means: the one rule behind every ``{id}``.

An experiment is referred to by its id, or by its name meaning the latest run of that name
(an id wins when a name happens to equal another run's id). The results API and
``evalhouse experiments``, ``evalhouse score`` / ``reprice`` and datasets made from an
experiment all resolve through :func:`resolve_experiment`, so a reference means the same run
everywhere (docs/results-api.md, "Conventions").

Two refinements, each asked for by the caller:

- ``exactly_one``: an operation that writes to one run (re-scoring, repricing) refuses a
  name that several runs share, with :class:`~evalhouse.errors.ExperimentAmbiguous` listing
  them (the API answers 409), instead of silently acting on the latest.
- ``stored``: the runs are the ones the evaluator has rebuilt (``experiment_row_metrics``),
  which is what results and scoring read. A dataset built from an experiment reads the
  ``eval`` root spans themselves, so it may also name a run stored but not rebuilt yet; that
  lookup scans the span table, which is why only that caller asks for it.

>>> resolve_experiment(store, "summaries").id                  # doctest: +SKIP
'exp-0002'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from evalhouse.errors import ExperimentAmbiguous, ExperimentNotFound
from evalhouse.store import Store

__all__ = ["Experiment", "experiment_runs", "resolve_experiment"]

# One line per rebuilt run, straight from the daemon's table (FINAL drops replaced and deleted
# rows): cheaper than the `experiments` view, which also joins every score.
_RUNS = """
SELECT
    experiment_id,
    anyIf(experiment_name, experiment_name != '') AS name,
    anyIf(dataset_name, dataset_name != '') AS dataset,
    min(started_at) AS created_at,
    count() AS rows,
    countIf(error != '') AS errored
FROM experiment_row_metrics FINAL
WHERE {where}
GROUP BY experiment_id
"""

# Runs known from their stored eval root spans (rebuilt or not); row counts are unknown here.
_STORED_RUNS = """
SELECT
    ExperimentId AS experiment_id,
    anyIf(ExperimentName, ExperimentName != '') AS name,
    '' AS dataset,
    toTimeZone(min(Timestamp), 'UTC') AS created_at,
    0 AS rows,
    0 AS errored
FROM otel_traces
WHERE Purpose = 'eval' AND ExperimentId != ''
  AND (ExperimentId = {e:String} OR ExperimentName = {e:String})
GROUP BY ExperimentId
"""

_MATCHING = "experiment_id = {e:String} OR experiment_name = {e:String}"


class Experiment(NamedTuple):
    """One run: its id, name, dataset, start, and how many of its rows errored."""

    id: str
    name: str
    dataset: str
    created_at: datetime
    rows: int = 0
    errored: int = 0

    @property
    def failed_whole(self) -> bool:
        """Every row's task errored: the run measured nothing."""
        return self.rows > 0 and self.errored >= self.rows


def _experiment(row: dict[str, Any]) -> Experiment:
    return Experiment(
        row["experiment_id"],
        row["name"],
        row["dataset"],
        row["created_at"],
        int(row["rows"]),
        int(row["errored"]),
    )


def experiment_runs(
    store: Store, where: str, parameters: dict[str, Any], order: str = ""
) -> list[Experiment]:
    """The rebuilt runs matching ``where`` (a condition over ``experiment_row_metrics``
    columns, values bound from ``parameters``), then ``order`` (HAVING / ORDER BY / LIMIT)."""
    rows = store.select(_RUNS.format(where=where) + order, parameters)
    return [_experiment(row) for row in rows]


def _newest_first(run: Experiment) -> tuple[datetime, str]:
    return run.created_at, run.id


def resolve_experiment(
    store: Store, reference: str, *, exactly_one: bool = False, stored: bool = False
) -> Experiment:
    """The run with id ``reference``, else the latest run named ``reference``.

    ``exactly_one``: several runs of that name raise ``ExperimentAmbiguous`` (listing them)
    instead of meaning the latest. ``stored``: also runs whose eval spans are stored but
    which the evaluator has not rebuilt yet. Raises ``ExperimentNotFound`` when nothing
    matches.

    >>> resolve_experiment(store, "qa", exactly_one=True)          # doctest: +SKIP
    ExperimentAmbiguous: 2 experiment runs are named 'qa': exp-2 (started ...), exp-1 (...)
    """
    runs = experiment_runs(
        store, _MATCHING, {"e": reference}, "ORDER BY created_at DESC, experiment_id DESC"
    )
    if stored:
        known = {run.id for run in runs}
        extra = [
            _experiment(row)
            for row in store.select(_STORED_RUNS, {"e": reference})
            if row["experiment_id"] not in known
        ]
        if extra:
            runs = sorted([*runs, *extra], key=_newest_first, reverse=True)
    exact = next((run for run in runs if run.id == reference), None)
    if exact is not None:
        return exact
    if not runs:
        raise ExperimentNotFound(reference)
    if exactly_one and len(runs) > 1:
        raise ExperimentAmbiguous(reference, tuple((run.id, _iso(run.created_at)) for run in runs))
    return runs[0]


def _iso(moment: datetime) -> str:
    utc = moment.astimezone(UTC) if moment.tzinfo is not None else moment
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
