"""``evalhouse eval FILE...``: run eval files, print each experiment's summary.

An eval file is a Python script. ``evalhouse eval`` runs it as ``__main__`` (so module-level
code and ``if __name__ == "__main__":`` blocks run), and every ``run_experiment`` call it makes
is collected. A file that ran no experiment that way has its top-level functions named
``eval_*`` (taking no arguments, sync or async) called in file order.

Exit status: 0; 1 when ``--baseline`` is given and the server's paired comparison says a
score regressed significantly (``evalhouse compare``'s verdict; when the server cannot
compare, a plain drop in a score's mean counts instead, and the output says so); 2 when a
file could not be run or ran no experiment (the other files still run and print).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

from evalhouse.surfaces._cli_common import Commands


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "eval",
        help="run eval files (that call run_experiment or define eval_* functions)",
        description="Run eval files and print a summary of each experiment they run. "
        "Exit 1 when a score regressed significantly against --baseline, 2 when a file fails.",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="eval file(s)")
    parser.add_argument(
        "--baseline", metavar="NAME", help="compare with the latest experiment of this name"
    )
    parser.add_argument("--endpoint", help="OTLP endpoint (default OTEL_* or localhost:4317)")
    parser.add_argument("--protocol", choices=("grpc", "http/protobuf"), help="default grpc")
    parser.add_argument(
        "--api-url", help="evalhouse API (default EVALHOUSE_API_URL or http://127.0.0.1:8700)"
    )
    parser.add_argument(
        "--summary-timeout",
        type=float,
        metavar="SECONDS",
        help="wait this long for the server's metrics (default 10)",
    )
    parser.set_defaults(run=_eval)


def _eval(args: argparse.Namespace) -> int:
    from evalhouse.instrumentation import init
    from evalhouse.instrumentation._session import EvalSession

    if args.endpoint or args.protocol:
        init(endpoint=args.endpoint, protocol=args.protocol)
    failures = 0
    regressed: list[str] = []
    for path in args.files:
        session = EvalSession(
            baseline=args.baseline, api_url=args.api_url, summary_timeout=args.summary_timeout
        )
        problem = _run_file(path, session)
        for result in session.results:
            print(result.format(), flush=True)
            print()
            if args.baseline:
                regressed.extend(_regressions(result, args.baseline))
        if problem is not None:
            print(f"evalhouse eval: {problem}", file=sys.stderr)
            failures += 1
    if failures:
        return 2
    if regressed:
        print(
            f"evalhouse eval: scores regressed against baseline {args.baseline}: "
            + "; ".join(regressed),
            file=sys.stderr,
        )
        return 1
    return 0


def _regressions(result: Any, baseline: str) -> list[str]:
    """Scores that regressed significantly; a plain drop in mean when the server can't say."""
    from evalhouse.errors import EvalhouseError

    if result.summary.status == "ready":
        try:
            compared = result.compare(baseline)
        except EvalhouseError as exc:
            print(f"evalhouse eval: no significance test ({exc})", file=sys.stderr)
        else:
            return [
                f"{result.name}: {name} ({score['diff']:+.3f}, p={score['p_value']})"
                for name, score in compared["scores"].items()
                if score["verdict"] == "regressed"
            ]
    print(
        f"evalhouse eval: {result.name}: the server has not computed this run's rows, "
        "so a drop in mean counts as a regression",
        file=sys.stderr,
    )
    return [f"{result.name}: {name}" for name in result.regressions]


def _run_file(path: Path, session: Any) -> str | None:
    """Run one eval file inside ``session``; a one-line problem, or None when it went well."""
    from evalhouse.instrumentation._session import collecting

    if not path.is_file():
        return f"{path}: no such file"
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)  # the file imports its neighbours, as `python FILE` would
    try:
        with collecting(session):
            try:
                namespace = runpy.run_path(str(path), run_name="__main__")
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    return f"{path} exited with status {exc.code}"
                namespace = {}
            except Exception as exc:
                return f"{path} failed: {_describe(exc, path)}"
            if not session.results:
                for function in _eval_functions(namespace):
                    try:
                        value = function()
                        if inspect.isawaitable(value):
                            asyncio.run(_awaited(value))
                    except Exception as exc:
                        return f"{path}: {function.__name__}() failed: {_describe(exc, path)}"
            if not session.results:
                return (
                    f"{path} ran no experiment: call evalhouse.run_experiment(...) in it, "
                    "or define functions named eval_*"
                )
    finally:
        sys.path.remove(folder)
    return None


async def _awaited(value: Any) -> Any:
    return await value


def _eval_functions(namespace: dict[str, Any]) -> list[Any]:
    return [
        value
        for name, value in namespace.items()
        if name.startswith("eval_")
        and inspect.isfunction(value)
        and value.__module__ == "__main__"
        and not any(
            p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            for p in inspect.signature(value).parameters.values()
        )
    ]


def _describe(exc: BaseException, path: Path) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    target = str(path.resolve())
    lines = [
        frame.lineno
        for frame in traceback.extract_tb(exc.__traceback__)
        if frame.filename == target or frame.filename == str(path)
    ]
    if isinstance(exc, SyntaxError) and exc.lineno is not None:
        lines.append(exc.lineno)
    return f"{text} (line {lines[-1]})" if lines else text
