"""A replay from start to comparison (``docs/replay.md``).

1. the cohort (:mod:`._cohort`); an empty one, or one with nothing replayable, is refused;
2. the dataset ``replay-<name>``: one row per replayable call (id = the span id, the recorded
   request as ``input``, the recorded answer as ``expected``, ``source_span_id`` in metadata);
3. the recorded baseline experiment ``replay-<name>-recorded`` (:mod:`._recorded`);
4. per model, the experiment ``replay-<name>-<model>``: the runner (the SDK's
   ``run_experiment``, given by the caller: this layer never imports the SDK) runs a task that
   sends each request again (:mod:`._requests`); with a budget, rows go in slices sized to
   what is left, and the replay stops before a slice that would pass the cap;
5. once the evaluator daemon has computed every row and score, the benchmark across the
   baseline and the models, and each model's paired comparison with the baseline.

:class:`Progress` says how far it got, for ``GET /api/replays/{id}`` and the command's output.
"""

from __future__ import annotations

import functools
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry import trace

from evalhouse.datasets import Datasets, StoredRow
from evalhouse.errors import EvalhouseError, InvalidRequest
from evalhouse.evaluators.results import Results
from evalhouse.evaluators.scorers import resolve_scorer
from evalhouse.replay._cohort import Call, Cohort, select_cohort
from evalhouse.replay._estimate import call_cost, estimate
from evalhouse.replay._recorded import RECORDED, emit_recorded, row_input
from evalhouse.replay._requests import Caller
from evalhouse.replay._scorer import default_scorer
from evalhouse.replay._spec import ReplaySpec, Target
from evalhouse.store import Store

__all__ = [
    "ExperimentRunner",
    "Progress",
    "Replayer",
    "checked_cohort",
    "new_id",
    "replay_targets",
    "run_replay",
]

Task = Callable[..., Any]  # task(*, item): the runner hands over the whole row
_POLL_SECONDS = 0.25


class ExperimentRunner(Protocol):
    """How experiments are traced: the SDK in the surfaces, a fake in nothing (tests use the
    SDK too). ``run`` runs ``task`` on ``rows`` as experiment ``experiment_id`` and returns
    when every span is handed to the exporter; ``flush`` waits until they are sent."""

    def tracer(self) -> trace.Tracer: ...

    def flush(self) -> bool: ...

    def run(
        self,
        name: str,
        rows: Sequence[dict[str, Any]],
        task: Task,
        *,
        scorers: Sequence[str],
        metadata: dict[str, Any],
        dataset: str,
        concurrency: int,
        experiment_id: str,
    ) -> None: ...


class Replayer(Protocol):
    """Step 4 of a replay: every call replayed on every target of ``spec``, each target as
    the experiment ``experiment_ids[target.label]``, each row reported to ``progress``; the
    rows replayed per target (fewer at the budget, which ``progress.budget_stop`` then
    explains). :func:`replay_targets` in this process, or a child process of the server
    (``surfaces/_replay_child.py``) so the calls do not wait on the server's interpreter."""

    def __call__(
        self,
        spec: ReplaySpec,
        calls: Sequence[Call],
        scorers: Sequence[str],
        experiment_ids: dict[str, str],
        progress: Progress,
    ) -> dict[str, int]: ...


def new_id() -> str:
    """A time-ordered id (UUID version 7 layout): experiment and replay ids sort by start."""
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(uuid.uuid4().bytes, "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (random & (2**76 - 1))
    return str(uuid.UUID(int=value & ~(0b11 << 62) | 0b10 << 62))


@dataclass
class Progress:
    """How far a replay got; every field is safe to read while it runs (:meth:`json`)."""

    id: str = field(default_factory=new_id)
    name: str = ""
    state: str = "starting"  # selecting, recording, replaying, scoring, done, failed
    cohort: dict[str, Any] = field(default_factory=dict)
    models: dict[str, dict[str, int]] = field(default_factory=dict)
    spent_usd: float = 0.0
    budget_usd: float | None = None
    budget_stop: str = ""
    error: str = ""
    result: dict[str, Any] | None = None
    started_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    # Told of every row replayed: (target label, cost, failed); a child process reports so.
    listener: Callable[[str, float | None, bool], None] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def set(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def advance(self, label: str, *, cost: float | None, failed: bool) -> None:
        with self._lock:
            counts = self.models[label]
            counts["done"] += 1
            counts["errors"] += int(failed)
            self.spent_usd += cost or 0.0
            if self.listener is not None:
                self.listener(label, cost, failed)

    def json(self) -> dict[str, Any]:
        with self._lock:
            body: dict[str, Any] = {
                "id": self.id,
                "name": self.name,
                "state": self.state,
                "cohort": dict(self.cohort),
                "models": {k: dict(v) for k, v in self.models.items()},
                "spent_usd": self.spent_usd,
                "budget_usd": self.budget_usd,
                "budget_stop": self.budget_stop or None,
                "error": self.error or None,
                "started_at": _iso(self.started_at),
                "finished_at": _iso(self.finished_at) if self.finished_at else None,
            }
            if self.result is not None:
                body["result"] = self.result
            return body


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _check(spec: ReplaySpec, cohort: Cohort) -> list[Call]:
    counts = cohort.counts()
    if not counts["calls"]:
        raise InvalidRequest(
            f"empty cohort: no recorded model call matched filter {spec.filter!r}"
            + (f" and where {spec.where!r}" if spec.where else "")
            + f" since {spec.since}; widen --since or the filter (the Traces page shows what "
            "a filter matches)"
        )
    calls = cohort.replayable
    if not calls:
        reasons = "; ".join(f"{n} × {r}" for r, n in counts["not_replayable"].items())
        raise InvalidRequest(
            f"none of the {counts['calls']} calls can be replayed ({reasons}); record calls "
            "with content capture on (evalhouse.init(capture_content=True))"
        )
    return calls


def _scorers(spec: ReplaySpec) -> list[str]:
    chosen = [default_scorer(), *spec.scorers]
    for name in chosen:
        try:
            resolve_scorer(name)
        except EvalhouseError as exc:
            raise InvalidRequest(f"scorer {name} cannot be used: {exc}") from exc
    return list(dict.fromkeys(chosen))


def _check_budget(spec: ReplaySpec) -> None:
    if spec.budget_usd is None:
        return
    for target in spec.targets:
        if call_cost(target, 1000, 1000) is None:
            raise InvalidRequest(
                f"{target.label} has no price in the bundled price data, so a budget cannot "
                "be kept: drop --budget-usd, or replay on a priced model"
            )


def checked_cohort(store: Store, spec: ReplaySpec) -> tuple[Cohort, list[Call], list[str]]:
    """The cohort, its replayable calls and the scorers, every part of ``spec`` checked
    (scorers load, a budget can be kept, the cohort has calls to replay):
    :class:`InvalidRequest` saying what to change."""
    scorers = _scorers(spec)
    _check_budget(spec)
    cohort = select_cohort(store, spec)
    return cohort, _check(spec, cohort), scorers


def _push_dataset(store: Store, spec: ReplaySpec, calls: Sequence[Call]) -> dict[str, Any]:
    rows = [
        StoredRow(
            call.span_id,
            json.dumps(row_input(call), ensure_ascii=False),
            json.dumps(call.answer, ensure_ascii=False),
            json.dumps(
                {
                    "source_span_id": call.span_id,
                    "source_trace_id": call.trace_id,
                    "model": call.model,
                    "service": call.service,
                },
                sort_keys=True,
            ),
        )
        for call in calls
    ]
    return Datasets(store).push(
        spec.dataset,
        rows,
        description=f"{len(rows)} recorded model calls replayed by {spec.name}",
        source="replay",
    )


def _replay_target(
    runner: ExperimentRunner,
    spec: ReplaySpec,
    target: Target,
    calls: Sequence[Call],
    scorers: Sequence[str],
    experiment_id: str,
    progress: Progress,
) -> int:
    """Replay ``calls`` on ``target``; the number of rows replayed (fewer at the budget)."""
    caller = Caller(target, base_url=spec.base_url, tracer=runner.tracer())
    label = target.label
    by_id = {call.span_id: call for call in calls}

    def task(*, item: Any) -> Any:
        row_id = item["metadata"]["source_span_id"]
        failed, cost = True, None
        try:
            answer = caller.call(by_id[row_id].request or {})
            cost = call_cost(target, answer.input_tokens, answer.output_tokens)
            failed = False
            return answer.text
        finally:
            progress.advance(label, cost=cost, failed=failed)

    rows = [
        {
            "id": call.span_id,
            "input": row_input(call),
            "expected": call.answer,
            "metadata": {"source_span_id": call.span_id, "source_trace_id": call.trace_id},
        }
        for call in calls
    ]
    per_call = estimate(Cohort(list(calls)), spec)["models"][label]["cost_usd"]
    per_call = per_call / len(calls) if per_call else None
    metadata = {"model": target.model, "provider": target.provider, "replay": spec.name}
    try:
        return _slices(
            runner, spec, target, rows, task, scorers, metadata, experiment_id, progress, per_call
        )
    finally:
        caller.close()


def _slices(
    runner: ExperimentRunner,
    spec: ReplaySpec,
    target: Target,
    rows: Sequence[dict[str, Any]],
    task: Task,
    scorers: Sequence[str],
    metadata: dict[str, Any],
    experiment_id: str,
    progress: Progress,
    per_call: float | None,
) -> int:
    """Run ``rows`` in slices the budget allows; the number of rows run."""
    done = 0
    while done < len(rows):
        size = len(rows) - done
        if spec.budget_usd is not None:
            left = spec.budget_usd - progress.spent_usd
            if left <= 0 or (per_call and left < per_call * 0.5):
                break
            fits = int(left / per_call) if per_call else size
            size = max(1, min(size, spec.concurrency, fits))
        runner.run(
            spec.experiment(target),
            rows[done : done + size],
            task,
            scorers=scorers,
            metadata=metadata,
            dataset=spec.dataset,
            concurrency=spec.concurrency,
            experiment_id=experiment_id,
        )
        done += size
    return done


def _wait(store: Store, expected: dict[str, int], scorers: int, seconds: float) -> None:
    """Until the evaluator daemon has every row and every score of the experiments."""
    ids = list(expected)
    deadline = time.monotonic() + seconds
    while True:
        rows = dict(
            store.query(
                "SELECT experiment_id, count() FROM experiment_row_metrics FINAL "
                "WHERE experiment_id IN {ids:Array(String)} GROUP BY experiment_id",
                {"ids": ids},
            )
        )
        scored = dict(
            store.query(
                "SELECT experiment_id, uniqExact(trace_id, scorer) FROM scores "
                "WHERE source = 'experiment' AND experiment_id IN {ids:Array(String)} "
                "GROUP BY experiment_id",
                {"ids": ids},
            )
        )
        if all(
            rows.get(i, 0) >= n and scored.get(i, 0) >= n * scorers for i, n in expected.items()
        ):
            return
        if time.monotonic() > deadline:
            missing = {i: (rows.get(i, 0), n) for i, n in expected.items() if rows.get(i, 0) < n}
            raise EvalhouseError(
                f"the evaluator had not computed every replayed row within {seconds:g} s "
                f"(rows computed/sent: {missing}); check that the evaluator runs "
                "(evalhouse serve, or evalhouse evaluator), then compare with "
                "'evalhouse compare'"
            )
        time.sleep(_POLL_SECONDS)


def _benchmark(results: Results, spec: ReplaySpec) -> dict[str, Any]:
    body = results.benchmark(dataset=spec.dataset, by="metadata.model")
    savings = body.get("cost_savings")
    if savings and savings.get("per_row_usd") is not None:
        savings["per_1000_calls_usd"] = savings["per_row_usd"] * 1000
    # What each model saves against the recorded calls, per 1,000 calls.
    recorded = next((g for g in body["groups"] if g["key"] == RECORDED), None)
    base = recorded["cost_per_row_usd"] if recorded else None
    body["savings_vs_recorded_per_1000_calls_usd"] = {
        g["key"]: None
        if base is None or g["cost_per_row_usd"] is None
        else (base - g["cost_per_row_usd"]) * 1000
        for g in body["groups"]
        if g["key"] != RECORDED
    }
    return body


def replay_targets(
    runner: ExperimentRunner,
    spec: ReplaySpec,
    calls: Sequence[Call],
    scorers: Sequence[str],
    experiment_ids: dict[str, str],
    progress: Progress,
) -> dict[str, int]:
    """The :class:`Replayer` that runs in this process, through ``runner``; it returns once
    every span is sent."""
    replayed: dict[str, int] = {}
    for index, target in enumerate(spec.targets):
        experiment_id = experiment_ids[target.label]
        count = _replay_target(runner, spec, target, calls, scorers, experiment_id, progress)
        replayed[target.label] = count
        if count < len(calls):
            left = [t.label for t in spec.targets[index + 1 :]]
            progress.set(
                budget_stop=f"stopped at the ${spec.budget_usd:g} budget (spent "
                f"${progress.spent_usd:.4f}) after {count} of {len(calls)} calls on "
                f"{target.label}" + (f"; not replayed: {', '.join(left)}" if left else "")
            )
            break
    runner.flush()
    return replayed


def run_replay(
    store: Store,
    spec: ReplaySpec,
    runner: ExperimentRunner,
    results: Results,
    *,
    replayer: Replayer | None = None,
    progress: Progress | None = None,
    wait_seconds: float = 600.0,
) -> dict[str, Any]:
    """Run the replay ``spec`` describes and return its result (``docs/replay.md``):
    ``{"cohort", "dataset", "baseline_experiment", "experiments", "benchmark", "compare",
    "budget"}``. ``runner`` traces the recorded baseline; ``replayer`` replays the calls
    (default: :func:`replay_targets` through ``runner``).

    >>> run_replay(store, spec, SdkRunner(), Results(store))["compare"]["openai:gpt-4o-mini"]
    ... # doctest: +SKIP
    """
    progress = progress or Progress()
    progress.set(name=spec.name, state="selecting", budget_usd=spec.budget_usd)
    cohort, calls, scorers = checked_cohort(store, spec)
    progress.set(cohort=cohort.counts())
    progress.set(
        models={t.label: {"done": 0, "total": len(calls), "errors": 0} for t in spec.targets},
        state="recording",
    )
    dataset = _push_dataset(store, spec, calls)
    baseline_id = new_id()
    emit_recorded(
        runner.tracer(),
        spec,
        calls,
        experiment_id=baseline_id,
        scorers=scorers,
        dataset_version=dataset.get("version"),
    )
    runner.flush()
    progress.set(state="replaying")
    ids = {target.label: new_id() for target in spec.targets}
    replayer = replayer or functools.partial(replay_targets, runner)
    replayed = {k: n for k, n in replayer(spec, calls, scorers, ids, progress).items() if n}
    ids = {label: ids[label] for label in replayed}
    progress.set(state="scoring")
    expected = {baseline_id: len(calls), **{ids[k]: n for k, n in replayed.items()}}
    _wait(store, expected, len(scorers), wait_seconds)
    result = {
        "cohort": cohort.counts(),
        "dataset": {"name": spec.dataset, "version": dataset.get("version")},
        "baseline_experiment": baseline_id,
        "experiments": ids,
        "scorers": scorers,
        "benchmark": _benchmark(results, spec),
        "compare": {
            label: results.compare(experiment_id, baseline_id, limit=20)
            for label, experiment_id in ids.items()
        },
        "budget": {
            "budget_usd": spec.budget_usd,
            "spent_usd": progress.spent_usd,
            "stopped": bool(progress.budget_stop),
            "message": progress.budget_stop or None,
            "replayed": replayed,
            "calls": len(calls),
        },
        "estimate": {
            label: value["cost_usd"] for label, value in estimate(cohort, spec)["models"].items()
        },
        "recorded_model": RECORDED,
    }
    progress.set(state="done", result=result, finished_at=time.time())
    return result
