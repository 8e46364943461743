"""Replays started over HTTP: each runs in a thread of its own, its progress kept in memory.

``POST /api/replays`` answers at once with an id; ``GET /api/replays/{id}`` gives the
:class:`~._run.Progress` (and, once done, the result). Only the progress lives here: what a
replay produces (the dataset version, the experiments, their rows and scores) is in the store
as soon as it is made, so a restarted server loses a replay's progress bar, never its results
(``docs/replay.md``, "Where a replay's state lives").

>>> replays = Replays(store, runner_factory, results)        # doctest: +SKIP
>>> replays.start(ReplaySpec.from_json(body))["id"]          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from evalhouse.errors import EvalhouseError, NotFound
from evalhouse.evaluators.results import Results
from evalhouse.replay._cohort import select_cohort
from evalhouse.replay._estimate import estimate
from evalhouse.replay._run import (
    ExperimentRunner,
    Progress,
    Replayer,
    checked_cohort,
    run_replay,
)
from evalhouse.replay._spec import ReplaySpec
from evalhouse.store import Store

__all__ = ["Replays"]

logger = logging.getLogger(__name__)
_KEPT = 100  # finished replays remembered, newest first


class Replays:
    """The replays of one server process."""

    def __init__(
        self,
        store: Store,
        runner: Callable[[], ExperimentRunner],
        results: Results,
        *,
        replayer: Replayer | None = None,
        wait_seconds: float = 600.0,
    ) -> None:
        self.store = store
        self.runner = runner
        self.replayer = replayer
        self.results = results
        self.wait_seconds = wait_seconds
        self._jobs: OrderedDict[str, Progress] = OrderedDict()
        self._lock = threading.Lock()

    def estimate(self, spec: ReplaySpec) -> dict[str, Any]:
        """The dry run of ``spec`` (nothing spent)."""
        return estimate(select_cohort(self.store, spec), spec)

    def start(self, spec: ReplaySpec) -> dict[str, Any]:
        """Check ``spec`` as far as can be done at once (the cohort is not empty), then run it
        in the background; ``{"id", "state", ...}``."""
        cohort, _, _ = checked_cohort(self.store, spec)  # a refusal is a 400 now, not later
        progress = Progress(name=spec.name, cohort=cohort.counts(), budget_usd=spec.budget_usd)
        with self._lock:
            self._jobs[progress.id] = progress
            while len(self._jobs) > _KEPT:
                self._jobs.popitem(last=False)
        thread = threading.Thread(
            target=self._run, args=(spec, progress), name=f"replay-{spec.name}", daemon=True
        )
        thread.start()
        return progress.json()

    def _run(self, spec: ReplaySpec, progress: Progress) -> None:
        try:
            run_replay(
                self.store,
                spec,
                self.runner(),
                self.results,
                replayer=self.replayer,
                progress=progress,
                wait_seconds=self.wait_seconds,
            )
        except EvalhouseError as exc:
            progress.set(state="failed", error=str(exc))
        except Exception as exc:  # a replay thread must say why it stopped, never vanish
            logger.exception("replay %s failed", spec.name)
            progress.set(state="failed", error=f"{type(exc).__name__}: {exc}")

    def get(self, replay_id: str) -> dict[str, Any]:
        with self._lock:
            progress = self._jobs.get(replay_id)
        if progress is None:
            raise NotFound(
                f"no replay with id {replay_id!r} in this server (progress is kept in memory "
                "until a restart; a replay's experiments stay: see GET /api/experiments)"
            )
        return progress.json()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [{k: v for k, v in job.json().items() if k != "result"} for job in reversed(jobs)]
