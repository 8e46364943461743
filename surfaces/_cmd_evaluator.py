"""``evalhouse evaluator`` (the daemon alone), ``evalhouse score`` and ``evalhouse reprice``."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from evalhouse.config import Settings, load_settings
from evalhouse.errors import EvalhouseError
from evalhouse.surfaces._cli_common import Commands, store_flags


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


def _refuse_if_served(settings: Settings, command: str) -> None:
    """chDB allows one process per data directory: a running serve owns it."""
    from evalhouse.surfaces.serve import running_server

    if settings.embedded and running_server(settings.data_dir) is not None:
        hint = (
            "it already runs the evaluator"
            if command == "evaluator"
            else f"stop it, then run evalhouse {command} again"
        )
        raise EvalhouseError(
            f"evalhouse serve is running on {settings.data_dir} and owns its store; {hint}"
        )
    if settings.embedded and not (settings.data_dir / "clickhouse").exists():
        raise EvalhouseError(
            f"no evalhouse data in {settings.data_dir}; pass --data-dir of an evalhouse "
            "store, or --clickhouse DSN"
        )


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
    _refuse_if_served(settings, "evaluator")
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
    from evalhouse.evaluators import score_experiment
    from evalhouse.store import Store

    settings = _settings(args)
    _refuse_if_served(settings, "score")
    store = Store(settings.dsn)
    try:
        report = score_experiment(
            store,
            args.experiment,
            args.scorer,
            settings=settings,
            where=args.where,
            rescore=args.rescore,
        )
    finally:
        store.close()
    print(
        f"experiment {report.experiment_id}: {report.rows} rows, {report.runs} scorer runs "
        f"({report.errors} errors), {report.skipped} already scored"
        + ("" if args.rescore or not report.skipped else " (use --rescore to replace them)")
    )
    return 1 if report.runs and report.errors == report.runs else 0


def _reprice(args: argparse.Namespace) -> int:
    from evalhouse.evaluators import reprice_experiment
    from evalhouse.store import Store

    settings = _settings(args)
    _refuse_if_served(settings, "reprice")
    store = Store(settings.dsn)
    try:
        report = reprice_experiment(store, args.experiment, settings=settings)
    finally:
        store.close()
    before = ", ".join(v for v in report.previous_versions if v) or "none"
    print(
        f"experiment {report.experiment_id}: {report.rows} rows repriced with "
        f"{report.price_data_version} (before: {before})"
    )
    return 0
