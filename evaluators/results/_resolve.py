"""Finding experiments: by id or name (a name means its latest run), and the run before one."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from evalhouse.evaluators.results._errors import ExperimentNotFound
from evalhouse.evaluators.results._sql import query
from evalhouse.store import Store

__all__ = ["Experiment", "previous_run", "resolve"]

# One line per experiment, straight from the daemon's table (FINAL drops replaced and deleted
# rows): cheaper than the `experiments` view, which also joins every score.
_RUNS = """
SELECT
    experiment_id,
    anyIf(experiment_name, experiment_name != '') AS name,
    anyIf(dataset_name, dataset_name != '') AS dataset,
    min(started_at) AS created_at
FROM experiment_row_metrics FINAL
WHERE {where}
GROUP BY experiment_id
"""


class Experiment(NamedTuple):
    id: str
    name: str
    dataset: str
    created_at: datetime


def _runs(store: Store, where: str, parameters: dict[str, str], order: str) -> list[Experiment]:
    rows = query(store, _RUNS.format(where=where) + order, parameters)
    return [
        Experiment(row["experiment_id"], row["name"], row["dataset"], row["created_at"])
        for row in rows
    ]


def resolve(store: Store, reference: str) -> Experiment:
    """The experiment with id ``reference``, else the latest run named ``reference``.

    >>> resolve(store, "summaries-v2").id        # doctest: +SKIP
    'exp-0001'
    """
    found = _runs(
        store,
        "experiment_id = {e:String} OR experiment_name = {e:String}",
        {"e": reference},
        "ORDER BY experiment_id = {e:String} DESC, created_at DESC, experiment_id DESC LIMIT 1",
    )
    if not found:
        raise ExperimentNotFound(reference)
    return found[0]


def previous_run(store: Store, experiment: Experiment) -> Experiment | None:
    """The latest run before ``experiment`` with the same name, else with the same dataset."""
    for column, value in (
        ("experiment_name", experiment.name),
        ("dataset_name", experiment.dataset),
    ):
        if not value:
            continue
        found = _runs(
            store,
            f"{column} = {{value:String}} AND experiment_id != {{id:String}}",
            {"value": value, "id": experiment.id},
            # Compared in ClickHouse: the start time keeps its nanoseconds there.
            "HAVING created_at < (SELECT min(started_at) FROM experiment_row_metrics FINAL "
            "WHERE experiment_id = {id:String}) ORDER BY created_at DESC, experiment_id DESC "
            "LIMIT 1",
        )
        if found:
            return found[0]
    return None
