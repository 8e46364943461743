"""The experiment runner: a task over every row (× trials), traced and scored.

One trace per row and trial, following the wire contract (``evalhouse.contract``):

- a root span ``eval`` (purpose ``eval``): experiment name, id and metadata, dataset name,
  version and row id, trial, input, expected, output and row metadata, all JSON-encoded;
- a child span ``task`` (purpose ``task``) with input and output; LLM calls the task makes
  nest under it through normal context propagation (async tasks on the loop, sync tasks in
  the runner's thread pool with the context copied in);
- one child span per scorer, named after it (purpose ``scorer``), with its score(s).

A task exception or timeout marks the task and root spans ERROR with the message ("task
timed out after N s"); the row is still recorded, and scorers that declare an ``error``
parameter are still called, with ``output=None`` and ``error`` set to that message (other
scorers are skipped for that row). A scorer exception becomes ``evalhouse.score.error`` on
its span: never dropped, never fatal. Scorer names given as strings are not run here: they go
to the server's evaluator (``evalhouse.scorers`` on the root span).

The async core is written once; :func:`run_experiment` runs it on a loop of its own, in a
worker thread when the caller already has a running loop (Jupyter).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from evalhouse import contract
from evalhouse.encoding import encode
from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation import _session, _tracing
from evalhouse.instrumentation._progress import Progress
from evalhouse.instrumentation._results import ExperimentResult, RowResult, summarise_scores
from evalhouse.instrumentation._rows import DatasetRef, Row, load_rows, resolve_dataset
from evalhouse.instrumentation._server import compare_baseline, fetch_summary
from evalhouse.instrumentation._settings import api_client, resolve
from evalhouse.instrumentation._spans import (
    describe,
    record_error,
    record_scorer_error,
    record_scores,
    set_json,
)
from evalhouse.instrumentation._tagging import TAG_ATTRIBUTE
from evalhouse.instrumentation._tasks import Hooks, TaskCaller
from evalhouse.scoring import Score, run_scorer, scorer_name

_API_TIMEOUT_SECONDS = 5.0
_NO_STATUS = {"end_on_exit": False, "record_exception": False, "set_status_on_exception": False}


def new_experiment_id() -> str:
    """A time-ordered UUID (version 7 layout), so ids sort by start time.

    >>> len(new_experiment_id())
    36
    """
    millis = time.time_ns() // 1_000_000
    random = int.from_bytes(uuid.uuid4().bytes, "big")
    value = (millis & (2**48 - 1)) << 80 | 0x7 << 76 | (random & (2**76 - 1))
    value = value & ~(0b11 << 62) | 0b10 << 62  # RFC 9562 variant
    return str(uuid.UUID(int=value))


def _untagged(function: Any, purpose: str) -> Any:
    """The function under an ``evalhouse.task`` / ``scorer`` decorator: the runner makes
    that span itself, and a second one inside it would count the work twice."""
    if getattr(function, TAG_ATTRIBUTE, None) == purpose:
        return getattr(function, "__wrapped__", function)
    return function


def _accepts_error(scorer: Any) -> bool:
    try:
        return "error" in inspect.signature(scorer).parameters
    except (TypeError, ValueError):
        return False


def _is_scorer(value: Any) -> bool:
    return callable(value) or hasattr(value, "eval_async") or hasattr(value, "eval")


@dataclass
class _TaskDone:
    """A row whose task has finished; its root span stays open for the scorers."""

    row: Row
    trial: int
    root: trace.Span
    output: Any
    error: str | None
    seconds: float
    metadata: dict[str, Any]


@dataclass
class _Experiment:
    """Everything one run needs, checked before the first row starts."""

    name: str
    experiment_id: str
    caller: TaskCaller
    scorers: list[Any]
    server_scorers: list[str]
    metadata: dict[str, Any]
    dataset: DatasetRef
    trials: int
    max_concurrency: int
    timeout: float | None
    tracer: trace.Tracer
    # Scorer name -> whether it returned any score yet (names a summary must still show).
    scored: dict[str, bool] = field(default_factory=lambda: defaultdict(bool))
    # Root span attributes shared by every row, encoded once.
    shared: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shared = {
            contract.SPAN_PURPOSE: "eval",
            contract.EXPERIMENT_NAME: self.name,
            contract.EXPERIMENT_ID: self.experiment_id,
        }
        if self.metadata:
            self.shared[contract.EXPERIMENT_METADATA] = encode(self.metadata)
        if self.dataset.name:
            self.shared[contract.DATASET_NAME] = self.dataset.name
        if self.dataset.version:
            self.shared[contract.DATASET_VERSION] = self.dataset.version
        if self.server_scorers:
            self.shared[contract.SCORERS] = encode(self.server_scorers)

    async def run_task(self, row: Row, trial: int, executor: Executor) -> _TaskDone:
        """Open the row's root span and run its task; the scorers come in :meth:`finish`."""
        input_json = encode(row.input)
        attributes = {
            **self.shared,
            contract.DATASET_ROW_ID: row.id,
            contract.TRIAL: trial,
            contract.INPUT: input_json,
        }
        if row.expected is not None:
            attributes[contract.EXPECTED] = encode(row.expected)
        # Context() without a parent: every row and trial is a trace of its own, even when
        # the caller is inside a span.
        root = self.tracer.start_span("eval", context=otel_context.Context(), attributes=attributes)
        try:
            with trace.use_span(root, **_NO_STATUS):
                output, error, seconds, metadata = await self._task(
                    row, trial, executor, input_json
                )
            if error is None:
                set_json(root, contract.OUTPUT, output)
            else:
                record_error(root, None, error)
            if metadata:
                set_json(root, contract.METADATA, metadata)
        except BaseException:
            root.end()
            raise
        return _TaskDone(row, trial, root, output, error, seconds, metadata)

    async def finish(self, done: _TaskDone) -> RowResult:
        """Score the row under its root span, then close it."""
        try:
            with trace.use_span(done.root, **_NO_STATUS):
                scores, scorer_errors = await self._score(
                    done.row, done.output, done.error, done.metadata
                )
        finally:
            done.root.end()
        return RowResult(
            row_id=done.row.id,
            trial=done.trial,
            input=done.row.input,
            expected=done.row.expected,
            output=done.output,
            metadata=done.metadata,
            scores=scores,
            scorer_errors=scorer_errors,
            error=done.error,
            duration_seconds=done.seconds,
            trace_id=format(done.root.get_span_context().trace_id, "032x"),
        )

    async def _task(
        self, row: Row, trial: int, executor: Executor, input_json: str
    ) -> tuple[Any, str | None, float, dict[str, Any]]:
        span = self.tracer.start_span(
            "task", attributes={contract.SPAN_PURPOSE: "task", contract.INPUT: input_json}
        )
        hooks = Hooks(
            input=row.input,
            expected=row.expected,
            metadata=dict(row.metadata),
            span=span,
            trial=trial,
            row_id=row.id,
            experiment_id=self.experiment_id,
            experiment_name=self.name,
            item=row.item,
        )
        output: Any = None
        error: str | None = None
        started = time.perf_counter()
        try:
            with trace.use_span(span, **_NO_STATUS):
                async with asyncio.timeout(self.timeout) as deadline:
                    output = await self.caller(row, hooks, executor)
        except TimeoutError as exc:
            if deadline.expired():
                error = f"task timed out after {self.timeout:g} s"
                record_error(span, None, error)
            else:  # the task's own TimeoutError
                error = describe(exc)
                record_error(span, exc, error)
        except Exception as exc:
            error = describe(exc)
            record_error(span, exc, error)
        else:
            set_json(span, contract.OUTPUT, output)
        finally:
            span.end()
        return output, error, time.perf_counter() - started, hooks.metadata

    async def _score(
        self, row: Row, output: Any, error: str | None, metadata: dict[str, Any]
    ) -> tuple[tuple[Score, ...], dict[str, str]]:
        chosen = [s for s in self.scorers if error is None or _accepts_error(s)]
        if not chosen:
            return (), {}
        if len(chosen) == 1:  # the common case, without a task per scorer
            outcomes = [await self._one_scorer(chosen[0], row, output, error, metadata)]
        else:
            outcomes = await asyncio.gather(
                *(self._one_scorer(s, row, output, error, metadata) for s in chosen)
            )
        scores = tuple(score for found, _ in outcomes for score in found)
        failures = dict(failure for _, failure in outcomes if failure is not None)
        return scores, failures

    async def _one_scorer(
        self, scorer: Any, row: Row, output: Any, error: str | None, metadata: dict[str, Any]
    ) -> tuple[list[Score], tuple[str, str] | None]:
        name = scorer_name(scorer)
        span = self.tracer.start_span(name, attributes={contract.SPAN_PURPOSE: "scorer"})
        try:
            with trace.use_span(span, **_NO_STATUS):
                scores = await run_scorer(
                    scorer,
                    input=row.input,
                    output=output,
                    expected=row.expected,
                    metadata=metadata,
                    error=error,
                )
        except Exception as exc:  # recorded on the row, never fatal to the run
            return [], (name, record_scorer_error(span, exc))
        else:
            record_scores(span, scores)
            self.scored[name] |= bool(scores)
            return scores, None
        finally:
            span.end()


def _build(
    name: str,
    data: Any,
    task: Any,
    scorers: Sequence[Any] | None,
    evaluators: Sequence[Any] | None,
    metadata: Mapping[str, Any] | None,
    dataset: Any,
    trials: int,
    max_concurrency: int | None,
    timeout: float | None,
    experiment_id: str | None,
) -> tuple[_Experiment, list[Row]]:
    if not isinstance(name, str) or not name.strip():
        raise EvalhouseError(f"an experiment needs a name (a non-empty string), got {name!r}")
    if task is None:
        raise EvalhouseError("run_experiment needs task=: the function to evaluate on each row")
    caller = TaskCaller(_untagged(task, "task"))
    local: list[Any] = []
    remote: list[str] = []
    for scorer in [*(scorers or ()), *(evaluators or ())]:
        if isinstance(scorer, str):
            remote.append(scorer)
        elif _is_scorer(scorer):
            local.append(_untagged(scorer, "scorer"))
        else:
            raise EvalhouseError(
                f"{scorer!r} is not a scorer: pass functions, autoevals scorer objects, "
                "or names of server-side scorers"
            )
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise EvalhouseError(f"trials must be an integer >= 1, got {trials!r}")
    concurrency = resolve("max_concurrency", max_concurrency)
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise EvalhouseError(f"max_concurrency must be an integer >= 1, got {concurrency!r}")
    if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
        raise EvalhouseError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise EvalhouseError(f"metadata must be a dict, got {type(metadata).__name__}")
    source, dataset_ref = resolve_dataset(data, dataset)
    rows = load_rows(source)
    experiment = _Experiment(
        name=name,
        experiment_id=experiment_id or new_experiment_id(),
        caller=caller,
        scorers=local,
        server_scorers=remote,
        metadata=dict(metadata or {}),
        dataset=dataset_ref,
        trials=trials,
        max_concurrency=concurrency,
        timeout=timeout,
        tracer=_tracing.tracer(),
    )
    return experiment, rows


async def run_experiment_async(
    name: str,
    data: Iterable[Any] | Any = None,
    task: Callable[..., Any] | None = None,
    *,
    scorers: Sequence[Any] | None = None,
    evaluators: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    dataset: Any = None,
    trials: int = 1,
    max_concurrency: int | None = None,
    timeout: float | None = None,
    baseline: str | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    summary_timeout: float | None = None,
    progress: bool | None = None,
    experiment_id: str | None = None,
) -> ExperimentResult:
    """Run ``task`` on every row of ``data`` (× ``trials``), trace and score each, and
    return an :class:`ExperimentResult`. The async twin of :func:`run_experiment`, which
    documents the parameters.

    >>> result = await run_experiment_async(
    ...     "capitals", data, answer, scorers=[exact]
    ... )  # doctest: +SKIP
    """
    session = _session.current()
    if session is not None:
        baseline = baseline or session.baseline
        api_url = api_url or session.api_url
        if summary_timeout is None:
            summary_timeout = session.summary_timeout
    tracing = _tracing.ensure()
    experiment, rows = _build(
        name,
        data,
        task,
        scorers,
        evaluators,
        metadata,
        dataset,
        trials,
        max_concurrency,
        timeout,
        experiment_id,
    )
    client = api_client(api_url, api_key, timeout=_API_TIMEOUT_SECONDS)
    wait = float(resolve("summary_timeout", summary_timeout))
    runs = [(row, trial) for row in rows for trial in range(experiment.trials)]
    results: list[RowResult | None] = [None] * len(runs)
    bar = Progress(len(runs), name, enabled=progress)
    pending = iter(enumerate(runs))
    started = time.perf_counter()

    # A row's scorers run while its worker starts the next task: scoring latency does not
    # hold a task slot. Scoring is bounded by max_concurrency rows too.
    scoring = asyncio.Semaphore(experiment.max_concurrency)

    async def finish(index: int, done: _TaskDone) -> None:
        try:
            result = await experiment.finish(done)
        finally:
            scoring.release()
        results[index] = result
        bar.advance(result.error is not None)

    async def worker(executor: Executor, group: asyncio.TaskGroup) -> None:
        for index, (row, trial) in pending:
            done = await experiment.run_task(row, trial, executor)
            if not experiment.scorers:
                results[index] = await experiment.finish(done)
                bar.advance(done.error is not None)
                continue
            try:
                await scoring.acquire()
            except BaseException:
                done.root.end()
                raise
            group.create_task(finish(index, done))

    executor = ThreadPoolExecutor(experiment.max_concurrency, thread_name_prefix="evalhouse-task")
    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(experiment.max_concurrency, len(runs))):
                group.create_task(worker(executor, group))
    finally:
        # A sync task that timed out may still be running: do not wait for it.
        executor.shutdown(wait=False, cancel_futures=True)
        bar.close()
    duration = time.perf_counter() - started
    done = tuple(result for result in results if result is not None)

    warnings = []
    if tracing.error is not None:
        warnings.append(f"tracing is off ({tracing.error}); the server saw nothing of this run")
    elif not await asyncio.to_thread(_tracing.force_flush):
        warnings.append(
            f"not every span reached {tracing.endpoint or 'the exporter'} within 30 s; "
            "check that evalhouse serve (or the collector) runs there"
        )
    # A scorer that gave no score anywhere (all rows failed, say) still shows, empty.
    silent = [name for name in map(scorer_name, experiment.scorers) if not experiment.scored[name]]
    summaries = summarise_scores(done, silent)
    summary = await asyncio.to_thread(
        fetch_summary, client, experiment.experiment_id, len(runs), wait
    )
    comparison = None
    if baseline:
        comparison = await asyncio.to_thread(
            compare_baseline, client, baseline, experiment.experiment_id, summaries, summary
        )
    result = ExperimentResult(
        experiment_id=experiment.experiment_id,
        name=name,
        rows=done,
        scorers=summaries,
        summary=summary,
        url=f"{client.base_url}/experiments/{experiment.experiment_id}",
        api_url=client.base_url,
        duration_seconds=duration,
        dataset_name=experiment.dataset.name,
        metadata=experiment.metadata,
        baseline=comparison,
        warnings=tuple(warnings),
    )
    if session is not None:
        session.results.append(result)
    return result


def run_experiment(
    name: str,
    data: Iterable[Any] | Any = None,
    task: Callable[..., Any] | None = None,
    *,
    scorers: Sequence[Any] | None = None,
    evaluators: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    dataset: Any = None,
    trials: int = 1,
    max_concurrency: int | None = None,
    timeout: float | None = None,
    baseline: str | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
    summary_timeout: float | None = None,
    progress: bool | None = None,
    experiment_id: str | None = None,
) -> ExperimentResult:
    """Run ``task`` on every row of ``data`` (× ``trials``), trace and score each row.

    - ``data``: dicts with ``input``, ``expected`` (or ``expected_output``), ``metadata`` and
      an optional ``id``; or a dataset object (``evalhouse.dataset(name)``).
    - ``task``: ``task(input)``, ``task(input, hooks)`` or ``task(*, item, **kwargs)``, sync
      or async.
    - ``scorers`` / ``evaluators`` (same thing, both names accepted): Braintrust/autoevals
      style ``(input, output, expected, metadata)``, Langfuse style ``(*, input, output,
      expected_output=None, metadata=None, **kwargs)``, autoevals objects; names (strings) of
      server-side scorers. A scorer with an ``error`` parameter also scores failed rows.
    - ``metadata``: describes the run (model, prompt version...), on every root span.
    - ``dataset``: a dataset object, or a name to label ``data`` with.
    - ``max_concurrency``: tasks running at once (default ``EVALHOUSE_MAX_CONCURRENCY``,
      else 16); rows being scored are bounded by the same number, separately, so a slow
      scorer does not hold a task slot. ``timeout``: seconds per task call (a sync task
      cannot be interrupted: after its timeout it runs on in its thread, result discarded).
    - ``baseline``: compare with this experiment (an id, or a name: its latest run whose rows
      did not all error; this run's own name means its previous run). The result carries the
      server's paired comparison, the verdicts ``evalhouse compare`` prints; when the server
      has not computed this run within ``summary_timeout``, only the score means (a *drop*,
      never a regression).
    - ``api_url`` / ``api_key``: the evalhouse API for metrics and the baseline (default
      ``EVALHOUSE_API_URL`` / ``EVALHOUSE_API_KEY``); ``summary_timeout`` seconds to wait for
      the server's metrics (default 10), after which they are reported pending.
    - ``progress``: a progress bar; default on when stderr is a terminal.

    Calls :func:`evalhouse.init` first if the app has not, and flushes every span before
    returning. Works inside a running event loop (Jupyter) by running in a worker thread.

    >>> import evalhouse
    >>> result = evalhouse.run_experiment(
    ...     "capitals",
    ...     data=[{"input": "France", "expected": "Paris"}],
    ...     task=lambda country: "Paris",
    ...     scorers=[lambda output, expected: output == expected],
    ... )  # doctest: +SKIP
    >>> print(result.format())  # doctest: +SKIP
    """
    run = functools.partial(
        run_experiment_async,
        name,
        data,
        task,
        scorers=scorers,
        evaluators=evaluators,
        metadata=metadata,
        dataset=dataset,
        trials=trials,
        max_concurrency=max_concurrency,
        timeout=timeout,
        baseline=baseline,
        api_url=api_url,
        api_key=api_key,
        summary_timeout=summary_timeout,
        progress=progress,
        experiment_id=experiment_id,
    )
    # Sync scorers run in the loop's default executor: size it for the rows in flight.
    concurrency = max_concurrency if isinstance(max_concurrency, int) else None
    workers = min(256, max(4, 4 * int(resolve("max_concurrency", concurrency))))

    def on_own_loop() -> ExperimentResult:
        with asyncio.Runner() as runner:
            runner.get_loop().set_default_executor(
                ThreadPoolExecutor(workers, thread_name_prefix="evalhouse-scorer")
            )
            return runner.run(run())

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return on_own_loop()
    context = contextvars.copy_context()
    with ThreadPoolExecutor(1, thread_name_prefix="evalhouse-run") as pool:
        return pool.submit(context.run, on_own_loop).result()
