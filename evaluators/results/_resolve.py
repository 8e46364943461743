"""The baseline of a comparison (which run a reference means is
:func:`evalhouse.evaluators.resolve_experiment`'s rule).

The baseline a comparison uses when none is pinned is the previous run of the same name (else
of the same dataset) that has at least one row whose task did not error: a run that failed
whole (an expired key, a model that was down) measures nothing, and comparing with it would
report every score as a gain. The choice comes back with its reason, which every surface
prints.
"""

from __future__ import annotations

from typing import NamedTuple

from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import Experiment, experiment_runs, resolve_experiment
from evalhouse.store import Store

__all__ = ["BaselineChoice", "choose_baseline", "previous_run"]


class BaselineChoice(NamedTuple):
    """The baseline of a comparison and why it is that one (printed by every surface)."""

    experiment: Experiment
    reason: str


# Earlier runs looked at for a baseline: the latest one whose rows did not all error wins.
_EARLIER_RUNS = 20


def _latest_usable(
    store: Store, column: str, value: str, candidate_id: str, *, before: bool
) -> tuple[Experiment | None, list[Experiment]]:
    """The latest run with ``column = value`` (other than the candidate, and started before
    it when ``before``) that did not fail whole, and the later runs skipped because they did."""
    having = (
        # Compared in ClickHouse: the start time keeps its nanoseconds there.
        "HAVING created_at < (SELECT min(started_at) FROM experiment_row_metrics FINAL "
        "WHERE experiment_id = {id:String}) "
        if before
        else ""
    )
    found = experiment_runs(
        store,
        f"{column} = {{value:String}} AND experiment_id != {{id:String}}",
        {"value": value, "id": candidate_id},
        f"{having}ORDER BY created_at DESC, experiment_id DESC LIMIT {_EARLIER_RUNS}",
    )
    skipped: list[Experiment] = []
    for run in found:
        if not run.failed_whole:
            return run, skipped
        skipped.append(run)
    return None, skipped


def previous_run(
    store: Store, experiment: Experiment
) -> tuple[Experiment | None, str, list[Experiment]]:
    """The latest run before ``experiment`` with the same name, else with the same dataset,
    that did not fail whole; what it shares (``"name"`` / ``"dataset"``); and the later runs
    skipped because every row of theirs errored."""
    skipped: list[Experiment] = []
    for column, shared, value in (
        ("experiment_name", "name", experiment.name),
        ("dataset_name", "dataset", experiment.dataset),
    ):
        if not value:
            continue
        found, passed = _latest_usable(store, column, value, experiment.id, before=True)
        skipped.extend(run for run in passed if run not in skipped)
        if found is not None:
            return found, shared, skipped
    return None, "", skipped


def _skipped_note(skipped: list[Experiment]) -> str:
    if not skipped:
        return ""
    runs = ", ".join(f"{run.id} ({run.errored} of {run.rows} rows errored)" for run in skipped)
    plural = "s" if len(skipped) > 1 else ""
    return f"; skipped {len(skipped)} later run{plural} whose rows all errored: {runs}"


def choose_baseline(store: Store, candidate: Experiment, baseline: str | None) -> BaselineChoice:
    """The baseline of ``candidate``: ``baseline`` pinned by id; else the latest run named
    ``baseline`` that did not fail whole; without one (or when it is the candidate's own
    name), the previous run of the same name (else dataset) that did not fail whole.
    Raises :class:`InvalidRequest` when there is none.

    >>> choose_baseline(store, resolve_experiment(store, "qa"), None).reason  # doctest: +SKIP
    "the previous run of 'qa' (same name)"
    """
    if baseline:
        found = resolve_experiment(store, baseline)
        if found.id == baseline:
            if found.id == candidate.id:
                raise InvalidRequest(
                    f"baseline and candidate are the same experiment ({candidate.id}); "
                    "pick another baseline"
                )
            failed = f" (every row of it errored: {found.errored} of {found.rows})"
            return BaselineChoice(found, f"pinned by id{failed if found.failed_whole else ''}")
        if baseline != candidate.name:
            named, skipped = _latest_usable(
                store, "experiment_name", baseline, candidate.id, before=False
            )
            if named is None:
                raise InvalidRequest(
                    f"every run named {baseline!r} failed whole (all rows errored)"
                    + _skipped_note(skipped).replace("; skipped", ": skipped")
                    + "; pin one by id if you mean it"
                )
            return BaselineChoice(
                named, f"the latest run named {baseline!r}" + _skipped_note(skipped)
            )
    previous, shared, skipped = previous_run(store, candidate)
    if previous is None:
        raise InvalidRequest(
            f"experiment {candidate.name or candidate.id!r} has no earlier run of the same name "
            "or dataset to compare with" + _skipped_note(skipped) + "; pass a baseline (id or name)"
        )
    of = candidate.name if shared == "name" else candidate.dataset
    return BaselineChoice(
        previous, f"the previous run of {of!r} (same {shared})" + _skipped_note(skipped)
    )
