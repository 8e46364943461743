"""``evalhouse serve`` (all-in-one, embedded store) and ``evalhouse collector`` (server mode)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from evalhouse.errors import EvalhouseError
from evalhouse.surfaces._cli_common import Commands, listener_flags, settings_from, store_flags


def register(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="all-in-one: collector and API on the embedded store")
    serve.add_argument("--data-dir", type=Path, help="where data lives (default .evalhouse)")
    listener_flags(serve, ui=True)
    serve.set_defaults(run=lambda args: _serve(args, with_api=True), log_info=True)

    collector = commands.add_parser(
        "collector", help="OTLP collector only (server mode, ClickHouse from --clickhouse)"
    )
    store_flags(collector)
    collector.add_argument("--spool-dir", type=Path, help="write-ahead log directory parent")
    listener_flags(collector, ui=False)
    collector.set_defaults(run=lambda args: _serve(args, with_api=False), log_info=True)


def _serve(args: argparse.Namespace, *, with_api: bool) -> int:
    # evalhouse reports listener failures itself, in one line; keep gRPC core quiet.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from evalhouse.surfaces.serve import run_collector

    settings = settings_from(args)
    if with_api and not settings.embedded:
        raise EvalhouseError(
            "evalhouse serve runs on the embedded store; for a ClickHouse server run "
            "'evalhouse collector --clickhouse DSN' (and the evaluator, API) as separate services"
        )
    run_collector(settings, with_api=with_api, announce=lambda line: print(line, flush=True))
    return 0
