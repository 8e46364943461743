"""Explorer benchmark: the production API calls at 2M and 20M spans, and their ratio.

Goal (docs in ``benchmarks/README.md``): every call ≤ 300 ms at 20M spans (text search
≤ 1 s), and ≤ 2× slower at 20M than at 2M, on the 2-core machine.

1. Builds production-shaped traces as OTLP export requests: a root span ``support-agent``
   (``session.id`` — sessions of ``--turns`` traces —, ``user.id`` of 5,000 users,
   ``input.value``, ``output.value``), two ``chat`` spans (OTel GenAI model, tokens,
   ``gen_ai.input.messages`` / ``gen_ai.output.messages``) and an ``execute_tool`` span (2%
   with status Error); three services; start times spread over the last 24 h.
2. Stores them in-process through ``OtlpSink`` (the collector's insert path: ClickHouse parses
   the protobuf) into a fresh embedded store, then lets the evaluator daemon's summarizer
   (``evaluators/_summaries.py``) summarize every trace, timed.
3. Starts the HTTP API on loopback and times each call ``--repeat`` times (median): the
   newest traces, a model filter, ``status:error``, sort by cost, text search, one session,
   usage by model per hour.
4. Does the same at the second size and prints both, with the ratio.

Run: ``.venv/bin/python benchmarks/explorer.py [--sizes 2000000,20000000] [--repeat 7]``.
Exits 0 whatever the figures; non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPANS_PER_TRACE = 4
USERS = 5_000
SERVICES = ("support-api", "billing-api", "search-api")
MODELS = (("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-3-5-sonnet"))
TOOLS = ("lookup_order", "refund", "search_kb")
DAY_NS = 86_400 * 1_000_000_000
REQUEST_TRACES = 1_000  # traces per export request
INSERT_TRACES = 25_000  # traces per insert (the collector's writer inserts ~25k spans)
GOAL_MS = 300.0
GOAL_SEARCH_MS = 1_000.0
GOAL_RATIO = 2.0


def _kv(attrs: Any, key: str, value: Any) -> None:
    field = attrs.add(key=key).value
    if isinstance(value, int):
        field.int_value = value
    else:
        field.string_value = value


def build_request(rng: random.Random, first: int, count: int, now_ns: int, turns: int) -> bytes:
    """``count`` traces numbered from ``first`` as one ExportTraceServiceRequest."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    by_service = {}
    for service in SERVICES:
        resource = request.resource_spans.add()
        _kv(resource.resource.attributes, "service.name", service)
        scope = resource.scope_spans.add()
        scope.scope.name = "support-agent"
        by_service[service] = scope
    for number in range(first, first + count):
        session = number // turns
        service = SERVICES[session % len(SERVICES)]
        spans = by_service[service].spans
        # Sessions run in order over the day; turns of one session a few seconds apart.
        start = now_ns - DAY_NS + (number * DAY_NS) // TOTAL_TRACES[0] + rng.randint(0, 999_999)
        trace_id = rng.randbytes(16)
        root_id = rng.randbytes(8)
        provider, model = MODELS[number % len(MODELS)]
        order = rng.randint(1000, 99_999)
        question = f"Where is my order {order} ? It has not arrived yet."
        answer = f"Order {order} ships tomorrow; tracking follows by email."
        failed = rng.random() < 0.02
        llm_ms = [rng.randint(300, 4_000), rng.randint(300, 4_000)]
        tool_ms = rng.randint(20, 500)
        total_ms = sum(llm_ms) + tool_ms + 50
        root = spans.add()
        root.trace_id, root.span_id, root.name, root.kind = trace_id, root_id, "support-agent", 2
        root.start_time_unix_nano = start
        root.end_time_unix_nano = start + total_ms * 1_000_000
        root.status.code = 2 if failed else 1
        for key, value in (
            ("session.id", f"session-{session}"),
            ("user.id", f"user-{(session * 7919) % USERS}"),
            ("input.value", question),
            ("output.value", answer),
            ("openinference.span.kind", "AGENT"),
        ):
            _kv(root.attributes, key, value)
        at = start + 10_000_000
        for step in range(2):
            call = spans.add()
            call.trace_id, call.span_id, call.parent_span_id = trace_id, rng.randbytes(8), root_id
            call.name, call.kind = f"chat {model}", 3
            call.start_time_unix_nano = at
            call.end_time_unix_nano = at + llm_ms[step] * 1_000_000
            call.status.code = 1
            messages = json.dumps(
                [
                    {"role": "system", "parts": [{"type": "text", "content": "You help."}]},
                    {"role": "user", "parts": [{"type": "text", "content": question}]},
                ]
            )
            reply = json.dumps(
                [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
            )
            for key, value in (
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.provider.name", provider),
                ("gen_ai.request.model", model),
                ("gen_ai.response.model", model),
                ("gen_ai.usage.input_tokens", rng.randint(200, 3_000)),
                ("gen_ai.usage.output_tokens", rng.randint(20, 600)),
                ("gen_ai.input.messages", messages),
                ("gen_ai.output.messages", reply),
            ):
                _kv(call.attributes, key, value)
            at = call.end_time_unix_nano
            if step == 0:
                tool = spans.add()
                tool.trace_id, tool.span_id = trace_id, rng.randbytes(8)
                tool.parent_span_id, tool.kind = root_id, 1
                name = TOOLS[number % len(TOOLS)]
                tool.name = f"execute_tool {name}"
                tool.start_time_unix_nano = at
                tool.end_time_unix_nano = at + tool_ms * 1_000_000
                tool.status.code = 2 if failed else 1
                _kv(tool.attributes, "gen_ai.operation.name", "execute_tool")
                _kv(tool.attributes, "gen_ai.tool.name", name)
                at = tool.end_time_unix_nano
    payload: bytes = request.SerializeToString()
    return payload


# Set by load(): the size of the day being generated (traces are spread evenly over it).
TOTAL_TRACES = [1]


def requests(traces: int, turns: int, seed: int) -> Iterator[list[bytes]]:
    """Export requests, grouped per insert, for ``traces`` traces over the last 24 h."""
    rng = random.Random(seed)
    now = time.time_ns()
    TOTAL_TRACES[0] = traces
    batch: list[bytes] = []
    for first in range(0, traces, REQUEST_TRACES):
        batch.append(build_request(rng, first, min(REQUEST_TRACES, traces - first), now, turns))
        if len(batch) * REQUEST_TRACES >= INSERT_TRACES:
            yield batch
            batch = []
    if batch:
        yield batch


def load(store: Any, traces: int, turns: int, seed: int) -> float:
    """Insert the traces through the OTLP ingest path; seconds taken."""
    from evalhouse.collector._writer import _length_delimited
    from evalhouse.store import OtlpSink

    sink = OtlpSink(store)
    started = time.perf_counter()
    for number, batch in enumerate(requests(traces, turns, seed)):
        sink.insert_otlp("traces", _length_delimited(batch), f"bench-{seed}-{number}")
    return time.perf_counter() - started


def summarize(store: Any) -> tuple[float, int]:
    """Run the summarizer until every trace is summarized; (seconds, traces written)."""
    from evalhouse.evaluators._summaries import Summarizer
    from evalhouse.store import SHARDS

    summarizer = Summarizer(store, quiet_ms=0, worker="bench")
    started = time.perf_counter()
    written = 0
    while True:
        now = store.query("SELECT toUnixTimestamp64Milli(now64(3))")[0][0] + 1
        written += summarizer.run(range(SHARDS), now)
        if not summarizer.behind:
            return time.perf_counter() - started, written


CALLS = {
    "list newest": "/api/traces?limit=50",
    "list model:gpt-4o": "/api/traces?limit=50&filter=model:gpt-4o",
    "list status:error": "/api/traces?limit=50&filter=status:error",
    "sort by cost": "/api/traces?limit=50&sort=cost_usd",
    # A rare term: ~1 trace in 100,000 mentions order 4242, so 10x the traces hold 10x the
    # matches and the page reads 10x the granules (up to a page of 50).
    "text search": "/api/traces?limit=50&q=" + urllib.parse.quote("order 4242 "),
    # The same rare term, a page of 5: both sizes hold at least 5 matches, so both pages show
    # the same number of rows and read the newest granules that hold them.
    "text search, page of 5": "/api/traces?limit=5&q=" + urllib.parse.quote("order 4242 "),
    # Words most traces hold: the newest page of matches is in the newest granules.
    "text search, common words": "/api/traces?limit=50&q=" + urllib.parse.quote("not arrived"),
    "one session": "/api/sessions/{session}",
    "usage by model per hour": "/api/usage?group_by=model&interval=1h",
}


def data_window(store: Any) -> str:
    """``since`` and ``until`` of the 24 h the loaded traces span (up to the newest one and a
    second), so that a store kept with ``--data`` is timed over all its traces on every run,
    as it was right after loading, instead of a window sliding past them."""
    newest = store.query("SELECT toUnixTimestamp64Milli(max(start_time)) FROM trace_summaries")
    until = datetime.fromtimestamp(newest[0][0] / 1000 + 1, UTC)
    since = until - timedelta(hours=24)
    return urllib.parse.urlencode({"since": since.isoformat(), "until": until.isoformat()})


def time_calls(base: str, session: str, window: str, repeat: int) -> dict[str, float]:
    """Median milliseconds of each API call (one warm-up call first); also the number of
    rows the rare text search found, as ``matches``."""
    medians: dict[str, float] = {}
    for label, path in CALLS.items():
        url = base + path.format(session=session) + ("&" if "?" in path else "?") + window
        times = []
        for attempt in range(repeat + 1):
            started = time.perf_counter()
            with urllib.request.urlopen(url, timeout=60) as response:
                body = json.loads(response.read())
            if attempt:
                times.append((time.perf_counter() - started) * 1000)
        _check(label, body)
        medians[label] = statistics.median(times)
        if label == "text search":
            medians["matches"] = float(len(body["traces"]))
    return medians


def _check(label: str, body: Any) -> None:
    rows = body.get("traces") or body.get("buckets") or []
    if not rows and label != "text search":
        raise SystemExit(f"{label}: empty answer {body!r:.200}")


def run_size(spans: int, turns: int, repeat: int, data: Path | None) -> dict[str, float]:
    """Load (unless ``data`` already holds this size), summarize, then time the calls."""
    from evalhouse.asgi import AsgiServer
    from evalhouse.auth import ApiKeys
    from evalhouse.config import load_settings
    from evalhouse.store import Store, migrate
    from evalhouse.surfaces.api import api_app

    traces = spans // SPANS_PER_TRACE
    directory = (data / str(spans)) if data else Path(tempfile.mkdtemp(prefix="evalhouse-x-"))
    loaded = (directory / "loaded").exists()
    store = Store(f"chdb://{directory / 'clickhouse'}")
    try:
        migrate(store)
        if not loaded:
            seconds = load(store, traces, turns, seed=spans)
            print(f"  stored {spans:,} spans in {seconds:.1f} s ({spans / seconds:,.0f} spans/s)")
            seconds, written = summarize(store)
            print(
                f"  summarized {written:,} traces in {seconds:.1f} s ({written / seconds:,.0f}/s)"
            )
            (directory / "loaded").touch()
        if data is not None and "--load-only" in sys.argv:
            return {}
        session = f"session-{(traces // turns) // 2}"
        settings = load_settings(data_dir=directory)
        server = AsgiServer.start(
            api_app(store, ApiKeys(frozenset()), settings), "127.0.0.1", 0, "API"
        )
        try:
            window = data_window(store)
            return time_calls(f"http://127.0.0.1:{server.port}", session, window, repeat)
        finally:
            server.stop()
    finally:
        store.close()
        if data is None:
            shutil.rmtree(directory, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="2000000,20000000", help="span counts, comma-separated")
    parser.add_argument("--turns", type=int, default=8, help="traces per session")
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per figure")
    parser.add_argument(
        "--data",
        type=Path,
        help="keep each size's store in DATA/<spans> and reuse it on the next run",
    )
    parser.add_argument(
        "--load-only", action="store_true", help="with --data: load and summarize, time nothing"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    sizes = [int(size) for size in args.sizes.split(",")]
    results: dict[int, dict[str, float]] = {}
    for spans in sizes:
        print(f"{spans:,} spans:")
        results[spans] = run_size(spans, args.turns, args.repeat, args.data)
        for label, ms in results[spans].items():
            if label == "matches":
                print(f"  (the rare text search found {ms:.0f} traces)")
            else:
                print(f"  {label:28s} {ms:8.1f} ms")
    if args.load_only:
        return 0
    small, large = sizes[0], sizes[-1]
    print(f"\n{'call':28s} {small:>12,} {large:>12,}  ratio  goal")
    for label in CALLS:
        a, b = results[small][label], results[large][label]
        goal = GOAL_SEARCH_MS if label.startswith("text search") else GOAL_MS
        verdict = "ok" if b <= goal and b <= GOAL_RATIO * a else "MISSED"
        print(f"{label:28s} {a:10.1f}ms {b:10.1f}ms {b / a:6.2f}  {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
