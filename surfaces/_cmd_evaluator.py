"""``evalhouse evaluator`` (the daemon alone), ``evalhouse score`` and ``evalhouse reprice``.

``score`` and ``reprice`` open the store themselves, or, when ``evalhouse serve`` holds the
embedded data directory (chDB allows one process per directory), ask it to do the work over
its HTTP API (``surfaces/_api_evaluator.py``) and print the same report; the switch is
``_cli_common.served_or_store``.
"""

from __future__ import annotations

import argparse
import signal
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

from evalhouse.api_client import ApiClient
from evalhouse.config import Settings, load_settings
from evalhouse.errors import EvalhouseError
from evalhouse.surfaces._cli_common import (
    Commands,
    require_data,
    served_or_store,
    serving,
    store_flags,
)

if TYPE_CHECKING:
    from evalhouse.evaluators import ScoreReport


def register(commands: Commands) -> None:
    evaluator = commands.add_parser(
        "evaluator",
        help="evaluator daemon: experiment rows, metrics and scores from stored traces",
        description="Rebuild experiment rows from the traces in ClickHouse, compute their "
        "metrics and run their scorers. Run as many as you like against one ClickHouse "
        "server: they share the work through leases. `evalhouse serve` runs one itself.",
    )
    store_flags(evaluator)
    evaluator.add_argument("--workers", type=int, help="workers in this process (default 1)")
    evaluator.add_argument(
        "--worker-id", help="stable unique name of this process (e.g. the pod name)"
    )
    evaluator.add_argument(
        "--once", action="store_true", help="work until nothing is left to do, then exit"
    )
    evaluator.set_defaults(run=_evaluator, log_info=True)

    score = commands.add_parser(
        "score",
        help="apply scorers to an existing experiment (retrospective scoring)",
        description="Run scorers on the rows of an experiment already evaluated. Rows a "
        "scorer already scored are skipped unless --rescore.",
    )
    store_flags(score)
    score.add_argument("experiment", help="experiment id or name")
    score.add_argument(
        "--scorer",
        action="append",
        required=True,
        metavar="NAME",
        help="scorer to apply: a built-in name (exact_match, llm_judge, ...) or "
        "module:function; repeat for several",
    )
    score.add_argument(
        "--where", metavar="SQL", help="only rows matching this condition on experiment_rows"
    )
    score.add_argument("--rescore", action="store_true", help="replace existing results")
    score.set_defaults(run=_score)

    reprice = commands.add_parser(
        "reprice",
        help="recompute an experiment's costs with the installed price data",
        description="Recompute every row of an experiment, so inferred costs use the price "
        "data installed now (upgrade the genai-prices package first).",
    )
    store_flags(reprice)
    reprice.add_argument("experiment", help="experiment id or name")
    reprice.set_defaults(run=_reprice)


def _settings(args: argparse.Namespace, **overrides: Any) -> Settings:
    return load_settings(
        data_dir=getattr(args, "data_dir", None),
        clickhouse_url=getattr(args, "clickhouse", None),
        **overrides,
    )


def _work_path(experiment: str, action: str) -> str:
    return f"/api/experiments/{urllib.parse.quote(experiment, safe='')}/{action}"


def _refuse_if_served(settings: Settings) -> None:
    """chDB allows one process per data directory: a running serve owns it."""
    if serving(settings) is not None:
        raise EvalhouseError(
            f"evalhouse serve is running on {settings.data_dir} and owns its store; "
            "it already runs the evaluator"
        )
    require_data(settings)


def _wait_for_signal() -> None:
    stop = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop.wait()


def _evaluator(args: argparse.Namespace) -> int:
    from evalhouse.evaluators import Evaluator

    settings = _settings(args, evaluator_workers=args.workers, evaluator_worker_id=args.worker_id)
    _refuse_if_served(settings)
    evaluator = Evaluator(settings, prepare=True)
    if args.once:
        try:
            evaluator.run_until_idle()
        finally:
            evaluator.close()
        print(
            f"evaluated: {evaluator.counters.rows} rows computed, "
            f"{evaluator.counters.scores} scorer runs stored"
        )
        return 0
    evaluator.start()
    print(f"evalhouse evaluator on {evaluator.safe_dsn}", flush=True)
    print(f"  workers    {', '.join(evaluator.worker_ids)}", flush=True)
    print("Ctrl-C to stop.", flush=True)
    try:
        _wait_for_signal()
    finally:
        print("shutting down: storing finished results...", flush=True)
        evaluator.stop()
    print("stopped.", flush=True)
    return 0


def _score(args: argparse.Namespace) -> int:
    from evalhouse.evaluators import ScoreReport, score_experiment

    settings = _settings(args)
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            payload = {"scorers": args.scorer, "where": args.where, "rescore": args.rescore}
            report = ScoreReport(**target.post(_work_path(args.experiment, "score"), payload))
        else:
            report = score_experiment(
                target,
                args.experiment,
                args.scorer,
                settings=settings,
                where=args.where,
                rescore=args.rescore,
            )
    return _print_score(report, rescore=args.rescore)


def _print_score(report: ScoreReport, *, rescore: bool) -> int:
    print(
        f"experiment {report.experiment_id}: {report.rows} rows, {report.runs} scorer runs "
        f"({report.errors} errors), {report.skipped} already scored"
        + ("" if rescore or not report.skipped else " (use --rescore to replace them)")
    )
    return 1 if report.runs and report.errors == report.runs else 0


def _reprice(args: argparse.Namespace) -> int:
    from evalhouse.evaluators import RepriceReport, reprice_experiment

    settings = _settings(args)
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            # Repricing recomputes the same rows from the same spans: safe to repeat.
            answer = target.post(_work_path(args.experiment, "reprice"), {}, retries=2)
            answer["previous_versions"] = tuple(answer["previous_versions"])
            report = RepriceReport(**answer)
        else:
            report = reprice_experiment(target, args.experiment, settings=settings)
    before = ", ".join(v for v in report.previous_versions if v) or "none"
    print(
        f"experiment {report.experiment_id}: {report.rows} rows repriced with "
        f"{report.price_data_version} (before: {before})"
    )
    return 0
