"""``evalhouse eval FILE...``: run eval files, print each experiment's summary.

An eval file is a Python script. ``evalhouse eval`` runs it as ``__main__`` (so module-level
code and ``if __name__ == "__main__":`` blocks run), and every ``run_experiment`` call it makes
is collected. A file that ran no experiment that way has its top-level functions named
``eval_*`` (taking no arguments, sync or async) called in file order.

Exit status (the summary printed says the same):

- 0: no score regressed significantly against ``--baseline`` (or no ``--baseline``, or no
  earlier run to compare with yet: the output says so);
- 1: the server's paired comparison says a score regressed significantly: the verdict
  ``evalhouse compare`` prints for the same pair, with its p-value;
- 2: a file could not be run or ran no experiment (the other files still run and print);
- 3: ``--baseline`` was given but the server could not compare (it had not computed the run
  within ``--summary-timeout``, or is unreachable): a drop in a mean is shown, never counted
  as a regression.
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
        description="Run eval files and print a summary of each experiment they run. With "
        "--baseline, each run is compared with it by the server's paired comparison (the "
        "verdict 'evalhouse compare' prints). Exit 1 when a score regressed significantly, 2 "
        "when a file fails, 3 when the server could not compare (a plain drop in a mean is "
        "shown, never counted as a regression).",
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="eval file(s)")
    parser.add_argument(
        "--baseline",
        metavar="ID_OR_NAME",
        help="compare with this experiment: an id pins one run; a name means its latest run "
        "whose rows did not all error (the experiment's own name: its previous such run)",
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
    from evalhouse.instrumentation import EvalSession, init

    if args.endpoint or args.protocol:
        init(endpoint=args.endpoint, protocol=args.protocol)
    failures = 0
    regressed: list[str] = []
    unchecked: list[str] = []
    for path in args.files:
        session = EvalSession(
            baseline=args.baseline, api_url=args.api_url, summary_timeout=args.summary_timeout
        )
        problem = _run_file(path, session)
        for result in session.results:
            print(result.format(), flush=True)
            print()
            if args.baseline:
                _gate(result, regressed, unchecked)
        if problem is not None:
            print(f"evalhouse eval: {problem}", file=sys.stderr)
            failures += 1
    if failures:
        return 2
    if regressed:
        print(
            f"evalhouse eval: scores regressed significantly against baseline {args.baseline}: "
            + "; ".join(regressed),
            file=sys.stderr,
        )
        return 1
    if unchecked:
        print(
            f"evalhouse eval: not checked against baseline {args.baseline}: "
            + "; ".join(unchecked),
            file=sys.stderr,
        )
        return 3
    return 0


def _gate(result: Any, regressed: list[str], unchecked: list[str]) -> None:
    """Sort a run by its baseline comparison: the server's verdicts, or why there are none."""
    baseline = result.baseline
    if baseline is None:
        return
    if baseline.status == "compared":
        regressed.extend(
            f"{result.name}: {score.name} ({score.delta:+.3f}, p={score.p_value:.3g})"
            for score in baseline.scores
            if score.regressed and score.delta is not None and score.p_value is not None
        )
    elif baseline.status == "not_found":
        print(f"evalhouse eval: {result.name}: {baseline.message}", file=sys.stderr)
    else:
        unchecked.append(
            f"{result.name}: {baseline.message}; see 'evalhouse compare {result.experiment_id}' "
            "once the server has its rows, or raise --summary-timeout"
        )


def _run_file(path: Path, session: Any) -> str | None:
    """Run one eval file inside ``session``; a one-line problem, or None when it went well."""
    from evalhouse.instrumentation import collecting

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
