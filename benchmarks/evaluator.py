"""Evaluator benchmark: row metrics for 10,000 rows, and judge throughput.

Goals: metrics for 10,000 rows (40,000 spans) in <= 5 s on the embedded store;
with a 50 ms judge at concurrency 32, >= 80% of the ideal 32 / 0.05 = 640 rows/s.

1. Metrics: ``--rows`` experiment rows of four spans each (eval root, task, a model call with
   tokens, a tool call) are written through the OTLP ingest path into a fresh chDB store
   (not timed). Timed: one evaluator, from start until every row is computed and stored
   (discovery, span fetch, tree, tokens, cost, insert). Checked: every row is there, with the
   exact token sum.
2. Judge: ``--judge-rows`` rows naming the scorer ``__main__:fake_judge`` (an async function
   that sleeps 50 ms), in another database. The daemon runs in the background as in
   ``evalhouse serve``; timed from the first judge call to the last result stored. Reported:
   rows/s and the ratio to the ideal, and the end-to-end time including the row metrics.

Run: ``.venv/bin/python benchmarks/evaluator.py [--rows 10000] [--judge-rows 5000]``.
Exits 0 whatever the figures; non-zero only when something broke (rows missing, timeout).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator
from evalhouse.store import OtlpSink, Store, migrate

GOAL_METRICS_S = 5.0
GOAL_JUDGE_RATIO = 0.80
JUDGE_SECONDS = 0.05
CONCURRENCY = 32
MS = 1_000_000

_calls: list[float] = []


async def fake_judge(output: Any, expected: Any) -> float:
    """The 50 ms judge: an async scorer, resolved by the daemon as ``__main__:fake_judge``."""
    _calls.append(time.monotonic())
    await asyncio.sleep(JUDGE_SECONDS)
    return 1.0 if output == expected else 0.0


class BenchmarkError(Exception):
    """Something broke (not a missed goal): the script exits non-zero."""


class Stored:
    """Observer counting stored scorer results, with the time of the last one."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.rows = 0
        self.scores = 0
        self.last = 0.0

    def row_computed(self, worker: str, trace_id: str, watermark_ms: int) -> None:
        with self.lock:
            self.rows += 1

    def scored(self, worker: str, trace_id: str, scorer_id: str) -> None:
        with self.lock:
            self.scores += 1
            self.last = time.monotonic()


def build(store: Store, rows: int, scorers: list[str] | None) -> int:
    """Write ``rows`` experiment rows (4 spans each); return the input tokens written."""
    sink = OtlpSink(store)
    start = time.time_ns() - 3_600_000 * MS
    spans: list[dict[str, Any]] = []
    tokens = 0
    for i in range(rows):
        trace = os.urandom(16)
        attrs = {
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": "bench",
            "evalhouse.experiment.id": "bench-1",
            "evalhouse.dataset.row_id": f"row-{i}",
            "evalhouse.input": json.dumps({"question": f"question {i}"}),
            "evalhouse.expected": json.dumps("yes"),
            "evalhouse.output": json.dumps("yes" if i % 3 else "no"),
        }
        if scorers:
            attrs["evalhouse.scorers"] = json.dumps(scorers)
        root = span("eval", attrs, trace_id=trace, start_ns=start, duration_ns=900 * MS)
        task = span(
            "task",
            {"evalhouse.span.purpose": "task"},
            trace_id=trace,
            parent_span_id=root["span_id"],
            start_ns=start + MS,
            duration_ns=800 * MS,
        )
        used = 200 + i % 50
        tokens += used
        chat = span(
            "chat gpt-4o-mini",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
                "gen_ai.usage.input_tokens": used,
                "gen_ai.usage.output_tokens": 30,
                "gen_ai.usage.cache_read.input_tokens": 100,
            },
            trace_id=trace,
            parent_span_id=task["span_id"],
            start_ns=start + 2 * MS,
            duration_ns=600 * MS,
        )
        tool = span(
            "execute_tool search",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "search"},
            trace_id=trace,
            parent_span_id=task["span_id"],
            start_ns=start + 610 * MS,
            duration_ns=100 * MS,
        )
        spans += [root, task, chat, tool]
    payloads = [
        trace_request(spans[at : at + 5_000]).SerializeToString()
        for at in range(0, len(spans), 5_000)
    ]
    for at in range(0, len(payloads), 8):
        sink.insert_otlp("traces", _length_delimited(payloads[at : at + 8]), f"bench-{at}")
    return tokens


def settings(data_dir: Path) -> Any:
    return load_settings(
        data_dir=data_dir,
        evaluator_quiet_seconds=0,
        evaluator_poll_seconds=0.2,
        evaluator_scorer_timeout=10,
        evaluator_lease_seconds=60,
        evaluator_scorer_concurrency=CONCURRENCY,
    )


def metrics(dsn: str, data_dir: Path, rows: int) -> dict[str, Any]:
    store = Store(dsn, database="bench_metrics")
    migrate(store)
    tokens = build(store, rows, None)
    spans = store.query("SELECT count() FROM otel_traces")[0][0]
    evaluator = Evaluator(settings(data_dir), store)
    started = time.perf_counter()
    evaluator.run_until_idle(timeout=600)
    elapsed = time.perf_counter() - started
    evaluator.close()
    got, total = store.query("SELECT count(), sum(input_tokens) FROM experiment_rows")[0]
    if got != rows or total != tokens:
        raise BenchmarkError(f"expected {rows} rows / {tokens} tokens, got {got} / {total}")
    return {"rows": rows, "spans": spans, "seconds": elapsed}


def judge(dsn: str, data_dir: Path, rows: int) -> dict[str, Any]:
    store = Store(dsn, database="bench_judge")
    migrate(store)
    build(store, rows, ["__main__:fake_judge"])
    stored = Stored()
    evaluator = Evaluator(settings(data_dir), store, observer=stored)
    _calls.clear()
    started = time.monotonic()
    evaluator.start()
    deadline = started + 600
    while stored.scores < rows:
        if time.monotonic() > deadline:
            evaluator.stop()
            raise BenchmarkError(f"only {stored.scores} of {rows} scores stored in 600 s")
        time.sleep(0.05)
    evaluator.stop()
    got = store.query("SELECT count() FROM scores FINAL WHERE source = 'experiment'")[0][0]
    if got != rows or len(_calls) != rows:
        raise BenchmarkError(f"{got} scores stored, {len(_calls)} judge calls, for {rows} rows")
    judging = stored.last - _calls[0]
    return {
        "rows": rows,
        "judge_seconds": judging,
        "rows_per_s": rows / judging,
        "ideal_rows_per_s": CONCURRENCY / JUDGE_SECONDS,
        "end_to_end_seconds": stored.last - started,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--judge-rows", type=int, default=5_000)
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="evalhouse-bench-evaluator-"))
    dsn = f"chdb://{data_dir / 'clickhouse'}"
    try:
        m = metrics(dsn, data_dir, args.rows)
        j = judge(dsn, data_dir, args.judge_rows)
    except BenchmarkError as exc:
        print(f"benchmark broke: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(data_dir, ignore_errors=True)
    rss = psutil.Process().memory_info().rss / 2**20
    print(f"metrics: {m['rows']} rows ({m['spans']} spans) in {m['seconds']:.2f} s")
    print(
        f"  = {m['rows'] / m['seconds']:,.0f} rows/s; goal <= {GOAL_METRICS_S:.0f} s: "
        f"{m['seconds'] / GOAL_METRICS_S:.2f} of the budget "
        f"({'met' if m['seconds'] <= GOAL_METRICS_S else 'MISSED'})"
    )
    ratio = j["rows_per_s"] / j["ideal_rows_per_s"]
    print(
        f"judge: {j['rows']} rows, 50 ms judge, concurrency {CONCURRENCY}: "
        f"{j['rows_per_s']:,.0f} rows/s vs ideal {j['ideal_rows_per_s']:,.0f} = {ratio:.0%} "
        f"(goal >= {GOAL_JUDGE_RATIO:.0%}: {'met' if ratio >= GOAL_JUDGE_RATIO else 'MISSED'})"
    )
    print(
        f"  judging took {j['judge_seconds']:.2f} s; {j['end_to_end_seconds']:.2f} s from daemon "
        f"start (row metrics included); process RSS {rss:.0f} MiB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
