"""Experiment runner benchmark: throughput against the ideal, and tracing overhead per row.

Goals: with a 50 ms task at concurrency 32, >= 90% of the ideal rows/s
(concurrency / latency = 640 rows/s); <= 1 ms of overhead per row against calling the task
in a bare loop.

1. Starts ``evalhouse serve`` on a fresh data directory; ``evalhouse.init`` points the real
   OTLP/gRPC exporter at it (``--exporter memory`` counts spans in memory instead). Both run
   on this machine, as they do for a developer.
2. Throughput: ``run_experiment`` over ``--rows`` rows whose task sleeps ``--latency`` s
   (async ``asyncio.sleep``, and sync ``time.sleep`` in the runner's threads) at
   ``max_concurrency=--concurrency``; wall time includes the final span flush.
3. Overhead: a task that returns at once, run one row at a time, against a bare ``for`` loop
   calling it; also the wall time per row at full concurrency.
4. Both again with one (sync) scorer per row, for information: the goals name the task only.
5. Checks that every span reached ClickHouse (none dropped by the exporter).

Run: ``.venv/bin/python benchmarks/runner_overhead.py [--rows 2000] [--exporter memory]``.
Exits 0 whatever the figures are; non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import BenchmarkError, free_port, sql, start_serve

import evalhouse

GOAL_RATIO = 0.90
GOAL_OVERHEAD_MS = 1.0
STORED_TIMEOUT_S = 120.0
WARMUP_ROWS = 200


class CountingExporter(SpanExporter):
    """Keeps no spans, only counts them (``--exporter memory``)."""

    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


def exact(output: Any, expected: Any) -> bool:
    return bool(output == expected)


class Runs:
    """Runs experiments and counts the spans they must have produced."""

    def __init__(self) -> None:
        self.spans = 0

    def timed(
        self, name: str, count: int, task: Any, concurrency: int, scorers: list[Any]
    ) -> float:
        data = [{"input": n, "expected": n} for n in range(count)]
        started = time.perf_counter()
        result = evalhouse.run_experiment(
            name,
            data,
            task,
            scorers=scorers,
            max_concurrency=concurrency,
            summary_timeout=0,
            progress=False,
        )
        elapsed = time.perf_counter() - started
        if result.errors or any(s.mean != 1.0 for s in result.scorers.values()):
            raise BenchmarkError(f"{name}: rows failed: {result.errors[:1]}")
        if result.warnings:
            raise BenchmarkError(f"{name}: {result.warnings[0]}")
        self.spans += count * (2 + len(scorers))  # eval + task + one per scorer
        return elapsed


def bare_loop(count: int, task: Callable[[Any], Any], scorers: list[Any]) -> float:
    data = [{"input": n, "expected": n} for n in range(count)]
    started = time.perf_counter()
    for row in data:
        output = task(row["input"])
        for scorer in scorers:
            scorer(output, row["expected"])
    return time.perf_counter() - started


def throughput(runs: Runs, args: argparse.Namespace, scorers: list[Any]) -> dict[str, float]:
    latency = args.latency

    async def sleep_async(value: int) -> int:
        await asyncio.sleep(latency)
        return value

    def sleep_sync(value: int) -> int:
        time.sleep(latency)
        return value

    rates = {}
    for label, task in (("async", sleep_async), ("sync", sleep_sync)):
        name = f"bench-throughput-{label}-{len(scorers)}"
        rates[label] = args.rows / runs.timed(name, args.rows, task, args.concurrency, scorers)
    return rates


def overhead(
    runs: Runs, args: argparse.Namespace, scorers: list[Any]
) -> dict[str, tuple[float, float]]:
    def instant(value: int) -> int:
        return value

    async def instant_async(value: int) -> int:
        return value

    count = args.overhead_rows
    bare = min(bare_loop(count, instant, scorers) for _ in range(3))
    costs = {}
    for label, task in (("async", instant_async), ("sync", instant)):
        name = f"bench-overhead-{label}-{len(scorers)}"
        one = runs.timed(f"{name}-sequential", count, task, 1, scorers)
        many = runs.timed(f"{name}-concurrent", count, task, args.concurrency, scorers)
        costs[label] = ((one - bare) / count * 1000, many / count * 1000)
    return costs


def wait_stored(serve: Any, expected: int) -> int:
    deadline = time.monotonic() + STORED_TIMEOUT_S
    stored = 0
    while time.monotonic() < deadline:
        stored = sql(serve, "SELECT count() FROM otel_traces WHERE Purpose != ''")
        if stored >= expected:
            return stored
        time.sleep(0.5)
    return stored


def _verdict(ok: bool, goal: bool) -> str:
    if not goal:
        return "information"
    return "ok" if ok else "MISSED"


def report_case(
    args: argparse.Namespace,
    title: str,
    rates: dict[str, float],
    costs: dict[str, tuple[float, float]],
    goal: bool,
) -> None:
    ideal = args.concurrency / args.latency
    print(title)
    for label, rate in rates.items():
        ratio = rate / ideal
        print(
            f"  throughput, {label:5} task sleeping {args.latency * 1000:.0f} ms at "
            f"concurrency {args.concurrency}: {rate:6.1f} rows/s = {ratio:6.1%} of ideal "
            f"{ideal:.0f} (goal >= {GOAL_RATIO:.0%}: {_verdict(ratio >= GOAL_RATIO, goal)})"
        )
    for label, (per_row, concurrent) in costs.items():
        print(
            f"  overhead,   {label:5} instant task: {per_row:.3f} ms/row one at a time vs a "
            f"bare loop (goal <= {GOAL_OVERHEAD_MS:g} ms: "
            f"{_verdict(per_row <= GOAL_OVERHEAD_MS, goal)}); {concurrent:.3f} ms/row of "
            f"wall time at concurrency {args.concurrency}"
        )


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000, help="rows per throughput run")
    parser.add_argument("--overhead-rows", type=int, default=2000, help="rows per overhead run")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency", type=float, default=0.05, help="task seconds")
    parser.add_argument("--exporter", choices=("otlp", "memory"), default="otlp")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    root = Path(tempfile.mkdtemp(prefix="evalhouse-runner-bench-"))
    serve = None
    try:
        counter = CountingExporter()
        if args.exporter == "otlp":
            serve = start_serve(root / "data")
            tracing = evalhouse.init(endpoint=serve.grpc_target, service_name="runner-bench")
        else:
            tracing = evalhouse.init(exporter=counter, service_name="runner-bench")
        if tracing.error:
            raise BenchmarkError(f"tracing set-up failed: {tracing.error}")
        # Metrics are the server's business; nothing listens here, so the runner moves on.
        os.environ["EVALHOUSE_API_URL"] = f"http://127.0.0.1:{free_port()}"
        runs = Runs()
        runs.timed("bench-warmup", WARMUP_ROWS, lambda value: value, args.concurrency, [exact])
        print(f"runner benchmark ({args.exporter} exporter, Python {sys.version.split()[0]})")
        report_case(
            args,
            "task only (the goals):",
            throughput(runs, args, []),
            overhead(runs, args, []),
            True,
        )
        report_case(
            args,
            "with one sync scorer per row:",
            throughput(runs, args, [exact]),
            overhead(runs, args, [exact]),
            False,
        )
        stored = wait_stored(serve, runs.spans) if serve is not None else counter.count
        lost = "none lost" if stored == runs.spans else "LOST"
        print(f"spans delivered: {stored} of {runs.spans} ({lost})")
        return 0
    except BenchmarkError as exc:
        print(f"runner benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if serve is not None:
            serve.stop()
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
