"""Results query benchmark: summary of a 10,000-row experiment and compare of two, embedded.

Goal: experiment summary and a compare of two 10,000-row experiments in <= 0.5 s
each, on the embedded store.

1. Seeds a fresh chDB store with two experiments of ``--rows`` rows each (JSON inputs and
   outputs, three scores per row, a scorer error on 1% of rows, two trials on 5% of inputs,
   costs, tokens), written into the evaluator's tables as the daemon writes them, plus
   ``--history`` older experiments of 2,000 rows that the queries must skip.
2. Times each results call through :class:`Results` (what the HTTP API and the CLI run):
   the first call on a fresh client (cold), then the median and best of ``--repeat`` calls.
3. Times the same summary and compare through the HTTP API on a real listener.

Run: ``.venv/bin/python benchmarks/queries.py [--rows 10000] [--history 10] [--repeat 7]``.
Exits 0 whatever the figures; non-zero only if something broke.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.evaluators.results import Results
from evalhouse.store import Store, migrate
from evalhouse.surfaces.api import api_app

GOAL_S = 0.5
SCORES = ("accuracy", "relevance", "fluency")
T0 = datetime(2025, 3, 1, tzinfo=UTC)
_ROW_COLUMNS = [
    "experiment_id",
    "experiment_name",
    "dataset_name",
    "row_id",
    "trial",
    "trace_id",
    "input",
    "expected",
    "output",
    "metadata",
    "experiment_metadata",
    "error",
    "started_at",
    "task_duration_ms",
    "llm_duration_ms",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cost_usd",
    "cost_known_usd",
    "cost_provenance",
    "judge_cost_usd",
    "span_count",
    "computed_at",
    "version",
]
_SCORE_COLUMNS = [
    "experiment_id",
    "trace_id",
    "row_id",
    "trial",
    "name",
    "value",
    "error",
    "source",
    "created_at",
    "scorer",
]


def seed(
    store: Store,
    experiment_id: str,
    name: str,
    rows: int,
    shift: float,
    start: datetime,
    rng: random.Random,
) -> None:
    """``rows`` experiment rows and their scores, inserted in one batch per table."""
    row_values: list[tuple[Any, ...]] = []
    score_values: list[tuple[Any, ...]] = []
    model = "gpt-4o" if shift == 0 else "gpt-4o-mini"
    for index in range(rows):
        # 5% of the inputs run twice (trials); the rest once.
        item = index if index < rows * 0.95 else int(index - rows * 0.05)
        trial = 0 if index < rows * 0.95 else 1
        trace_id = uuid.UUID(int=rng.getrandbits(128)).hex
        started = start + timedelta(milliseconds=index * 40)
        cost = None if rng.random() < 0.002 else rng.uniform(0.0005, 0.004)
        tokens_in, tokens_out = rng.randint(200, 3000), rng.randint(20, 600)
        row_values.append(
            (
                experiment_id,
                name,
                "support-qa",
                f"row-{item}",
                trial,
                trace_id,
                json.dumps(
                    {
                        "question": f"How do I change the delivery address of order {item}?",
                        "customer": {"tier": ["free", "pro", "enterprise"][item % 3]},
                        "history": [f"message {k}" for k in range(3)],
                    }
                ),
                json.dumps(f"Open the order {item}, then Edit address."),
                json.dumps(f"Go to Orders, select order {item} and choose Edit address. " * 2),
                json.dumps({"topic": ["orders", "billing", "account"][item % 3]}),
                json.dumps({"model": model, "temperature": 0.2}),
                "timeout" if rng.random() < 0.005 else "",
                started,
                rng.uniform(200, 2500),
                rng.uniform(150, 2000),
                tokens_in,
                tokens_out,
                tokens_in + tokens_out,
                cost,
                cost or 0.0,
                "inferred" if cost is not None else "unknown",
                rng.uniform(0.0001, 0.0005),
                rng.randint(3, 9),
                started,
                1,
            )
        )
        for score in SCORES:
            failed = score == "relevance" and rng.random() < 0.01
            value = None if failed else min(1.0, max(0.0, rng.betavariate(5, 3) + shift))
            score_values.append(
                (
                    experiment_id,
                    trace_id,
                    f"row-{item}",
                    trial,
                    score,
                    value,
                    "judge timed out" if failed else "",
                    "experiment",
                    started,
                    score,
                )
            )
    store.insert_rows("experiment_row_metrics", row_values, _ROW_COLUMNS)
    store.insert_rows("scores", score_values, _SCORE_COLUMNS)


def timed(call: Callable[[], Any], repeat: int) -> tuple[float, float, float]:
    """(first call, median, best) in seconds."""
    started = time.perf_counter()
    call()
    cold = time.perf_counter() - started
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        runs.append(time.perf_counter() - started)
    return cold, statistics.median(runs), min(runs)


def report(label: str, figures: tuple[float, float, float], goal: float | None) -> None:
    cold, median, best = figures
    ratio = f"  {median / goal:.2f}x the {goal:g} s goal" if goal else ""
    print(
        f"{label:<34} cold {cold * 1000:7.0f} ms   median {median * 1000:7.0f} ms   "
        f"best {best * 1000:7.0f} ms{ratio}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows per experiment")
    parser.add_argument("--history", type=int, default=10, help="older 2,000-row experiments")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls after the first")
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="evalhouse-queries-"))
    rng = random.Random(7)
    try:
        store = Store(f"chdb://{directory / 'clickhouse'}")
        migrate(store)
        started = time.perf_counter()
        for index in range(args.history):
            seed(store, f"old-{index}", "nightly", 2_000, 0.0, T0 - timedelta(days=index + 1), rng)
        seed(store, "baseline", "nightly", args.rows, 0.0, T0, rng)
        seed(store, "candidate", "nightly", args.rows, -0.02, T0 + timedelta(hours=6), rng)
        total = 2 * args.rows + 2_000 * args.history
        print(
            f"seeded 2 x {args.rows} rows (+{args.history} x 2000 older) = {total} rows, "
            f"{3 * total} scores in {time.perf_counter() - started:.1f} s"
        )
        # The user-facing clients of the results read through a fresh store object.
        reader = Store(store.dsn)
        results = Results(reader)
        body = results.compare("candidate", "baseline")
        summary = results.summary("candidate")
        accuracy = body["scores"]["accuracy"]
        print(
            f"compare: {body['matched_rows']} matched inputs, accuracy {accuracy['diff']:+.4f} "
            f"(p={accuracy['p_value']:.2g}, {accuracy['verdict']}); summary: {summary['rows']} "
            f"rows, {summary['errors']['scorer_errors']} scorer errors"
        )
        print()
        report(
            "summary (10k rows)", timed(lambda: results.summary("candidate"), args.repeat), GOAL_S
        )
        report(
            "compare (2 x 10k rows)",
            timed(lambda: results.compare("candidate", "baseline"), args.repeat),
            GOAL_S,
        )
        report(
            "compare, key = row_id",
            timed(lambda: results.compare("candidate", "baseline", key="row_id"), args.repeat),
            None,
        )
        report(
            "summary grouped by metadata.topic",
            timed(lambda: results.summary("candidate", group_by="metadata.topic"), args.repeat),
            None,
        )
        report("experiments list", timed(lambda: results.experiments(), args.repeat), None)
        report(
            "rows page sorted by a score",
            timed(lambda: results.rows("candidate", sort="score:accuracy"), args.repeat),
            None,
        )
        report("trials", timed(lambda: results.trials("candidate"), args.repeat), None)
        report(
            "export jsonl (10k rows)",
            timed(lambda: results.export("candidate", fmt="jsonl"), max(1, args.repeat // 3)),
            None,
        )

        server = AsgiServer.start(api_app(reader, ApiKeys(frozenset())), "127.0.0.1", 0, "API")
        base = f"http://127.0.0.1:{server.port}"
        try:

            def get(path: str) -> Any:
                with urllib.request.urlopen(base + path, timeout=60) as response:
                    return json.loads(response.read())

            print()
            report(
                "HTTP GET /api/experiments/{id}",
                timed(lambda: get("/api/experiments/candidate"), args.repeat),
                GOAL_S,
            )
            report(
                "HTTP GET /api/compare",
                timed(
                    lambda: get("/api/compare?candidate=candidate&baseline=baseline"), args.repeat
                ),
                GOAL_S,
            )
        finally:
            server.stop()
        reader.close()
        store.close()
    finally:
        if args.keep:
            print(f"kept {directory}")
        else:
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
