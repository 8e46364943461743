"""Work on an existing experiment: score it retrospectively, or reprice its rows.

``evalhouse score EXPERIMENT --scorer NAME [--where SQL] [--rescore]`` and
``evalhouse reprice EXPERIMENT`` call these. Both write the same tables as the daemon, so a
re-run replaces results instead of adding copies. Both write to one run, so a name that
several runs share is refused (``ExperimentAmbiguous``, listing them) rather than meaning the
latest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from evalhouse.config import Settings
from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.evaluators._cost import price_data_version
from evalhouse.evaluators._experiments import resolve_experiment
from evalhouse.evaluators._output import item_for, write_outcomes, write_rows
from evalhouse.evaluators._rows import compute_row
from evalhouse.evaluators._scorer_refs import ScorerRef
from evalhouse.evaluators._scoring import Outcome, Resolver, ScorerPool, ScoringItem
from evalhouse.evaluators._traces import Candidate, fetch_spans
from evalhouse.store import Store

__all__ = ["RepriceReport", "ScoreReport", "reprice_experiment", "score_experiment"]

_BATCH = 500
_FLUSH_SECONDS = 1.0


@dataclass(frozen=True)
class ScoreReport:
    experiment_id: str
    rows: int  # rows matched by --where
    runs: int  # scorer runs made
    skipped: int  # (row, scorer) already scored, left alone (no --rescore)
    errors: int  # runs that ended in a scorer error


def _matching_traces(store: Store, experiment_id: str, where: str | None) -> list[str]:
    """Trace ids of the experiment's rows, narrowed by the user's ``--where`` (checked with
    ClickHouse's parser like the results filters, then run read-only)."""
    sql = "SELECT trace_id FROM experiment_rows WHERE experiment_id = {e:String}"
    if where and where.strip():
        try:
            condition = store.check_expression(where.strip())
        except QueryError as exc:
            raise InvalidRequest(
                f"invalid --where: {exc}; give one SQL condition over experiment_rows columns, "
                "e.g. --where \"scores['accuracy'] < 0.5\""
            ) from exc
        sql += f" AND ({condition})"
    return [row["trace_id"] for row in store.select(sql, {"e": experiment_id})]


def score_experiment(
    store: Store,
    experiment: str,
    scorers: Sequence[str],
    *,
    settings: Settings,
    where: str | None = None,
    rescore: bool = False,
    resolve: Resolver | None = None,
) -> ScoreReport:
    """Run ``scorers`` (specs or scorer ids) on the rows of an existing experiment.

    Rows already scored by a scorer are skipped unless ``rescore``; a re-score replaces the
    earlier result. ``where`` is a SQL condition over ``experiment_rows`` columns.

    >>> score_experiment(store, "qa-v2", ["exact_match"], settings=load_settings())
    ... # doctest: +SKIP
    ScoreReport(experiment_id='qa-v2', rows=120, runs=120, skipped=0, errors=0)
    """
    experiment_id = resolve_experiment(store, experiment, exactly_one=True).id
    ids = [ScorerRef.from_id(spec.strip()).id for spec in scorers if spec.strip()]
    if not ids:
        raise InvalidRequest("name at least one scorer with --scorer")
    traces = _matching_traces(store, experiment_id, where)
    done: set[tuple[str, str]] = set()
    if traces and not rescore:
        rows = store.query(
            "SELECT DISTINCT trace_id, scorer FROM scores WHERE source = 'experiment' "
            "AND experiment_id = {e:String} AND scorer IN {s:Array(String)}",
            {"e": experiment_id, "s": ids},
        )
        done = {(row[0], row[1]) for row in rows}
    values = store.query(
        "SELECT trace_id, experiment_id, row_id, trial, root_span_id, input, expected, output, "
        "metadata FROM experiment_row_metrics FINAL "
        "WHERE experiment_id = {e:String} AND trace_id IN {t:Array(String)}",
        {"e": experiment_id, "t": traces},
    )
    items = [
        item_for(row, 0, scorer_id)
        for row in values
        for scorer_id in ids
        if (row[0], scorer_id) not in done
    ]
    outcomes = asyncio.run(_run_all(store, items, settings, resolve))
    return ScoreReport(
        experiment_id=experiment_id,
        rows=len(values),
        runs=len(outcomes),
        skipped=len(values) * len(ids) - len(items),
        errors=sum(1 for outcome in outcomes if outcome.error),
    )


async def _run_all(
    store: Store, items: list[ScoringItem], settings: Settings, resolve: Resolver | None
) -> list[Outcome]:
    pool = ScorerPool(
        timeout=settings.evaluator_scorer_timeout,
        concurrency=settings.evaluator_scorer_concurrency,
        resolve=resolve,
    )
    done: list[Outcome] = []
    pending: list[Outcome] = []
    last = time.monotonic()
    for finished in asyncio.as_completed([pool.run(item) for item in items]):
        outcome = await finished
        done.append(outcome)
        pending.append(outcome)
        if len(pending) >= _BATCH or time.monotonic() - last > _FLUSH_SECONDS:
            await asyncio.to_thread(write_outcomes, store, pending)
            pending, last = [], time.monotonic()
    if pending:
        await asyncio.to_thread(write_outcomes, store, pending)
    await pool.aclose()
    return done


@dataclass(frozen=True)
class RepriceReport:
    experiment_id: str
    rows: int
    price_data_version: str
    previous_versions: tuple[str, ...]  # price data the rows were priced with before


def reprice_experiment(
    store: Store, experiment: str, *, settings: Settings, worker: str = "reprice"
) -> RepriceReport:
    """Recompute every row of an experiment (cost with the price data installed now).

    >>> reprice_experiment(store, "qa-v2", settings=load_settings())   # doctest: +SKIP
    RepriceReport(experiment_id='qa-v2', rows=120, price_data_version='genai-prices ...', ...)
    """
    experiment_id = resolve_experiment(store, experiment, exactly_one=True).id
    rows = store.query(
        "SELECT trace_id, experiment_id, toUnixTimestamp64Milli(inserted_watermark), "
        "watched_spans, initial_span_count, computations, scorers, price_data_version "
        "FROM experiment_row_metrics FINAL WHERE experiment_id = {e:String}",
        {"e": experiment_id},
    )
    before = tuple(sorted({row[7] for row in rows}))
    previous = {
        row[0]: Candidate(
            trace_id=row[0],
            shard=0,
            watermark_ms=row[2],
            span_count=row[3],
            row_experiment_id=row[1],
            row_watermark_ms=row[2],
            row_span_count=row[3],
            initial_span_count=row[4],
            computations=row[5],
            scorers=tuple(row[6]),
            done=(),
        )
        for row in rows
    }
    ids = list(previous)
    count = 0
    for at in range(0, len(ids), 2_000):
        chunk = ids[at : at + 2_000]
        traces = fetch_spans(store, chunk)
        computed = []
        for trace_id in chunk:
            spans = traces.get(trace_id)
            if not spans:
                continue
            result = compute_row(
                spans,
                previous=previous[trace_id],
                scorer_config=settings.evaluator_scorers,
                worker=worker,
            )
            if result is not None:
                computed.append(result)
        write_rows(store, computed)
        count += len(computed)
    return RepriceReport(experiment_id, count, price_data_version(), before)
