"""The ``evalhouse`` command. Every failure is one line on stderr and a non-zero exit.

Each subcommand lives in a ``_cmd_*`` module with a ``register(commands)`` function that adds
its parser and sets ``run`` (the handler returning an exit code).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from evalhouse import __version__
from evalhouse.errors import EvalhouseError
from evalhouse.surfaces import (
    _cmd_datasets,
    _cmd_eval,
    _cmd_evaluator,
    _cmd_experiments,
    _cmd_replay,
    _cmd_rules,
    _cmd_serve,
    _cmd_store,
    _cmd_traces,
    _cmd_ui,
)

__all__ = ["main"]

_COMMAND_MODULES = (
    _cmd_serve,
    _cmd_store,
    _cmd_datasets,
    _cmd_eval,
    _cmd_experiments,
    _cmd_traces,
    _cmd_rules,
    _cmd_replay,
    _cmd_ui,
    _cmd_evaluator,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalhouse",
        description="OpenTelemetry-native trace collector and evaluator for LLM applications.",
    )
    parser.add_argument("--version", action="version", version=f"evalhouse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.register(commands)
    return parser


def _quiet_drivers(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not record.name.startswith(
        ("urllib3", "clickhouse_connect", "httpx")  # httpx: a line per LLM-judge call
    )


def _reader_went_away() -> int:
    """The reader of our output closed it (``evalhouse ... | head``): stop quietly, exit 0,
    as Unix tools do. Further writes (the final flush at exit) go to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured in tests): nothing to redirect
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()  # a broken pipe shows here, not in the flush at exit
        return code
    except BrokenPipeError:
        return _reader_went_away()


def _main(argv: Sequence[str] | None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "log_info", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # evalhouse reports store failures itself; the drivers' retry chatter is noise here
    # (a filter, because clickhouse-connect resets urllib3's level when it is imported).
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_drivers)
    try:
        code: int = args.run(args)
        return code
    except EvalhouseError as exc:
        print(f"evalhouse {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise  # main() ends quietly
    except OSError as exc:
        print(f"evalhouse {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
