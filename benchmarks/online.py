"""Online evaluation benchmark: live production traffic scored by a rule with an LLM judge.

Goals (``benchmarks/README.md``, on the 2-core machine): scoring lag p95 ≤ 10 s after the
quiet period, ≥ 80% of the ideal judge throughput, ingest ≤ 10% slower with the rule on.

Two runs of ``evalhouse serve`` on fresh data directories, the second with a rule
(``sample = 0.1``, the built-in LLM judge ``llm_judge:helpfulness`` through the ``openai``
client, against a local OpenAI-compatible server that answers after ``--judge-ms``, 50 ms):

1. **Live**: a separate (spawned) load process sends production traces over OTLP/gRPC at
   ``--rate`` traces/s (1,000) for ``--seconds`` (60): a ``support-turn`` root with its
   ``input.value`` / ``output.value`` and a ``chat`` model-call span (GenAI attributes,
   tokens). The rule's delay (quiet period) is ``--delay`` s. Lag: for every target scored
   live, from the moment it was ready (its last span stored + the delay) to its score stored
   (``rule_targets.ready_at`` → ``scored_at``), p50 / p95.
2. **Ingest**: the load process sends ``--burst`` traces (150,000: 300,000 spans, several
   seconds; 40,000 lasted two and was too noisy to tell) as fast as it can; throughput is
   spans stored per second until the last is queryable. With the rule on, a second rule
   samples 10% of the burst; rules and summaries wait while the collector is behind
   (``docs/online.md``), then every sampled burst trace is scored before step 3.
3. **Judge throughput** (second run only): a backfill of a second rule (every burst trace,
   ``sample = 1``, at most ``--judge-calls``) puts a backlog in front of the judge; the
   calls per second the judge server receives, against the ideal: the scorer concurrency
   (``evaluator_scorer_concurrency``, 32) over the judge's latency.

Run: ``.venv/bin/python benchmarks/online.py [--rate 1000] [--seconds 60] [--judge-ms 50]``.
Exits 0 whatever the figures; non-zero only when something broke.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the OpenAI-compatible server the tests use

from fake_openai import fake_openai  # noqa: E402
from ingest import BenchmarkError, Serve, cpu_seconds, sql, start_serve  # noqa: E402

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
GOAL_LAG_P95_S = 10.0
GOAL_JUDGE_EFFICIENCY = 0.80
GOAL_INGEST_SLOWDOWN = 0.10
CONCURRENCY = 32
REQUEST_TRACES = 100  # traces per export request in the live phase
BURST_REQUEST_TRACES = 1_000
REASONING = (
    "The answer addresses the question directly and correctly, with enough detail to act on "
    "and nothing off-topic. The wording is clear. "
)


def _kv(attrs: Any, key: str, value: Any) -> None:
    field = attrs.add(key=key).value
    if isinstance(value, int):
        field.int_value = value
    else:
        field.string_value = value


def build_request(rng: random.Random, count: int, tag: str, now_ns: int) -> bytes:
    """``count`` two-span production traces ending about now, as one export request."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    _kv(resource.resource.attributes, "service.name", "support-api")
    scope = resource.scope_spans.add()
    scope.scope.name = "support-agent"
    for _ in range(count):
        trace_id = rng.randbytes(16)
        root_id, chat_id = rng.randbytes(8), rng.randbytes(8)
        question = (
            f"Where is order {rng.randint(1000, 9999)}? It was due {rng.randint(1, 9)} days ago."
        )
        answer = "It left the warehouse yesterday and arrives tomorrow."
        start = now_ns - 900_000_000
        root = scope.spans.add()
        root.trace_id, root.span_id = trace_id, root_id
        root.name, root.kind = "support-turn", 2
        root.start_time_unix_nano, root.end_time_unix_nano = start, start + 800_000_000
        _kv(root.attributes, "evalhouse.tags", tag)
        _kv(root.attributes, "input.value", question)
        _kv(root.attributes, "output.value", answer)
        chat = scope.spans.add()
        chat.trace_id, chat.span_id, chat.parent_span_id = trace_id, chat_id, root_id
        chat.name, chat.kind = "chat gpt-4o-mini", 3
        chat.start_time_unix_nano, chat.end_time_unix_nano = start + 50_000_000, start + 750_000_000
        _kv(chat.attributes, "gen_ai.operation.name", "chat")
        _kv(chat.attributes, "gen_ai.provider.name", "openai")
        _kv(chat.attributes, "gen_ai.request.model", "gpt-4o-mini")
        _kv(chat.attributes, "gen_ai.usage.input_tokens", 120 + rng.randint(0, 80))
        _kv(chat.attributes, "gen_ai.usage.output_tokens", 20 + rng.randint(0, 20))
    return request.SerializeToString()


def load_process(target: str, mode: str, rate: int, seconds: float, burst: int, out: Any) -> None:
    """The load: ``live`` sends ``rate`` traces/s for ``seconds``; ``burst`` sends ``burst``
    traces at once on 4 streams. Puts (traces sent, seconds taken, errors) on ``out``."""
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    rng = random.Random(7 if mode == "live" else 11)
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 2**26)])
    grpc.channel_ready_future(channel).result(timeout=30)
    export = channel.unary_unary(
        EXPORT_METHOD,
        request_serializer=None,
        response_deserializer=ExportTraceServiceResponse.FromString,
    )
    errors: list[str] = []

    def send(payload: bytes) -> None:
        for _ in range(50):
            try:
                export(payload, timeout=60)
                return
            except grpc.RpcError as exc:
                if exc.code().name not in ("UNAVAILABLE", "RESOURCE_EXHAUSTED"):
                    errors.append(f"{exc.code().name}: {exc.details()}")
                    return
                time.sleep(0.1)
        errors.append("gave up after 50 retries")

    started = time.monotonic()
    sent = 0
    if mode == "live":
        interval = REQUEST_TRACES / rate
        for tick in range(int(seconds * rate / REQUEST_TRACES)):
            due = started + tick * interval
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            send(build_request(rng, REQUEST_TRACES, "live", time.time_ns()))
            sent += REQUEST_TRACES
    else:
        payloads = [
            build_request(rng, BURST_REQUEST_TRACES, "burst", time.time_ns())
            for _ in range(burst // BURST_REQUEST_TRACES)
        ]
        started = time.monotonic()
        lock = threading.Lock()

        def stream() -> None:
            while True:
                with lock:
                    if not payloads:
                        return
                    payload = payloads.pop()
                send(payload)

        threads = [threading.Thread(target=stream) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = burst
    channel.close()
    out.put((sent, time.monotonic() - started, errors[:5]))


def run_load(serve: Serve, mode: str, args: argparse.Namespace) -> tuple[int, float]:
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    process = context.Process(
        target=load_process,
        args=(serve.grpc_target, mode, args.rate, args.seconds, args.burst, out),
    )
    process.start()
    sent, took, errors = out.get(timeout=args.seconds + 600)
    process.join()
    if errors:
        raise BenchmarkError(f"the load process failed: {errors}")
    return sent, took


def api(serve: Serve, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        serve.api + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def wait_until(what: str, check: Any, timeout: float, serve: Serve, *, every: float = 1.0) -> float:
    """Poll ``check`` ``every`` seconds: a rule's status reads the store, and asking it five
    times a second took 14% of the server's CPU from the judge it measured."""
    started = time.monotonic()
    while not check():
        if not serve.alive():
            raise BenchmarkError(
                f"evalhouse serve died while waiting for {what}:\n{serve.log_tail()}"
            )
        if time.monotonic() - started > timeout:
            raise BenchmarkError(f"timed out waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def _quantiles(values: list[float]) -> tuple[float, float]:
    """(p50, p95) of sorted ``values``."""
    return statistics.median(values), values[int(0.95 * (len(values) - 1))]


def summarized(serve: Serve, traces: int) -> float:
    """Seconds until every trace sent has its row (the summarizer caught up)."""
    return wait_until(
        "the summarizer to catch up",
        lambda: sql(serve, "SELECT uniqExact(trace_id) FROM trace_summaries") >= traces,
        600,
        serve,
    )


def all_scored(serve: Serve, tag: str, traces: int) -> float:
    """Seconds until the rule ``<tag>-quality`` (sample 0.1) has scored every trace of
    ``tag`` its sampling picks (all ``traces`` summarized first)."""
    rule = f"{tag}-quality"
    expected = sql(
        serve,
        f"SELECT count() FROM trace_summaries WHERE has(tags, '{tag}') AND "
        f"cityHash64(concat('{rule}', ':', trace_id)) < {int(0.1 * 2**64)}",
    )
    if not expected:
        raise BenchmarkError(f"none of the {traces:,} {tag} traces was sampled")
    return wait_until(
        f"the {tag} targets to be scored",
        lambda: (
            sql(
                serve,
                f"SELECT count() FROM rule_targets FINAL WHERE rule = '{rule}' "
                "AND state = 'scored'",
            )
            >= expected * 0.999
        ),
        600,
        serve,
    )


def rows(serve: Serve, query: str) -> list[dict[str, Any]]:
    request = urllib.request.Request(
        f"{serve.api}/api/sql",
        data=json.dumps({"query": query, "format": "JSONEachRow"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def one_run(args: argparse.Namespace, root: Path, *, with_rule: bool, judge: Any) -> dict[str, Any]:
    data = root / ("with-rule" if with_rule else "without-rule")
    serve = start_serve(data)
    result: dict[str, Any] = {}
    try:
        judge_spec = {"name": "llm_judge:helpfulness", "options": {"model": "gpt-4o-mini"}}
        if with_rule:
            api(
                serve,
                "POST",
                "/api/rules",
                {
                    "name": "live-quality",
                    "filter": "tag:live",
                    "sample": 0.1,
                    "scorers": [judge_spec],
                    "delay_s": args.delay,
                },
            )
            api(
                serve,
                "POST",
                "/api/rules",
                {
                    "name": "burst-quality",
                    "filter": "tag:burst",
                    "sample": 0.1,
                    "scorers": [judge_spec],
                    "delay_s": args.delay,
                },
            )
        # 1. live traffic
        sent, took = run_load(serve, "live", args)
        result["live_traces"] = sent
        result["live_rate"] = sent / took
        result["summaries_after_load_s"] = summarized(serve, sent)
        if with_rule:
            drain = all_scored(serve, "live", sent)
            # From ready (quiet for the delay) to scored, and its two parts: waiting for the
            # trace's row (the summarizer's, which the filter reads) and the rule's own work.
            found = rows(
                serve,
                "SELECT (toUnixTimestamp64Milli(r.scored_at) - toUnixTimestamp64Milli(r.ready_at))"
                " / 1000 AS lag, greatest(0, toUnixTimestamp64Milli(s.at) "
                "- toUnixTimestamp64Milli(r.ready_at)) / 1000 AS row_wait "
                "FROM rule_targets AS r FINAL INNER JOIN (SELECT trace_id, "
                "min(summarized_at) AS at FROM trace_summaries GROUP BY trace_id) AS s "
                "ON s.trace_id = r.trace_id "
                "WHERE r.rule = 'live-quality' AND r.state = 'scored' AND r.backfill = 0",
            )
            lags = sorted(float(r["lag"]) for r in found)
            waits = sorted(float(r["row_wait"]) for r in found)
            own = sorted(float(r["lag"]) - float(r["row_wait"]) for r in found)
            result["scored_live"] = len(lags)
            result["lag_p50_s"], result["lag_p95_s"] = _quantiles(lags)
            result["lag_max_s"] = lags[-1]
            result["row_wait_p50_s"], result["row_wait_p95_s"] = _quantiles(waits)
            result["rule_lag_p50_s"], result["rule_lag_p95_s"] = _quantiles(own)
            result["drain_after_load_s"] = drain
        # 2. ingest burst (the daemon idle before it: nothing left from the live phase)
        before = sql(serve, "SELECT count() FROM otel_traces")
        started = time.monotonic()
        sent, _ = run_load(serve, "burst", args)
        target = before + 2 * sent
        wait_until(
            "the burst to be stored",
            lambda: sql(serve, "SELECT count() FROM otel_traces") >= target,
            600,
            serve,
        )
        result["ingest_spans_per_s"] = 2 * sent / (time.monotonic() - started)
        # 3. judge throughput on a backlog
        if with_rule:
            # Every trace stored so far has its row, then every sampled one its score: the
            # backlog below starts with nothing of the burst rule left.
            summarized(serve, before // 2 + sent)
            all_scored(serve, "burst", sent)
            api(
                serve,
                "POST",
                "/api/rules",
                {
                    "name": "judge-backlog",
                    "filter": "tag:burst",
                    "sample": min(1.0, args.judge_calls / args.burst),
                    "scorers": [judge_spec],
                    "delay_s": 0,
                },
            )
            mark = len(judge.requests)
            server_cpu = sum(cpu_seconds(serve.process.pid).values())
            own_cpu = time.process_time()
            backlog_started = time.monotonic()
            api(serve, "POST", "/api/rules/judge-backlog/backfill?since=1h")
            expected = api(serve, "POST", "/api/rules/judge-backlog/estimate?since=1h")["sampled"]
            # The calls counted where they arrive (no load on the server), then the scores.
            wait_until(
                "the backlog's judge calls",
                lambda: len(judge.requests) - mark >= expected,
                600,
                serve,
                every=0.05,
            )
            wait_until(
                "the backlog to be judged",
                lambda: (
                    api(serve, "GET", "/api/rules/judge-backlog")["status"]["scored"] >= expected
                ),
                600,
                serve,
            )
            server_cpu = sum(cpu_seconds(serve.process.pid).values()) - server_cpu
            own_cpu = time.process_time() - own_cpu
            arrivals = sorted(judge.arrivals[mark:])
            span = arrivals[-1] - arrivals[0] + args.judge_ms / 1000
            achieved = len(arrivals) / span
            ideal = CONCURRENCY / (args.judge_ms / 1000)
            result["judge_calls"] = len(arrivals)
            result["judge_calls_per_s"] = achieved
            result["judge_ideal_per_s"] = ideal
            result["judge_efficiency"] = achieved / ideal
            # CPU per judge call: the server (rule, judge client, scores) and this process
            # (the fake judge, and the polling), over the whole backlog.
            result["judge_cpu_ms_per_call"] = {
                "server": server_cpu / len(arrivals) * 1000,
                "fake_judge": own_cpu / len(arrivals) * 1000,
            }
            result["judge_cpu_share"] = (server_cpu + own_cpu) / (
                (os.cpu_count() or 1) * (time.monotonic() - backlog_started)
            )
            status = api(serve, "GET", "/api/rules/live-quality")["status"]
            result["live_spend_usd"] = status["spend_today_usd"]
    finally:
        code = serve.stop()
        if code != 0:
            print(f"warning: serve exited with {code}:\n{serve.log_tail()}", file=sys.stderr)
    return result


class _Judge:
    """The fake OpenAI-compatible judge, remembering when each call arrived."""

    def __init__(self, fake: Any, delay: float) -> None:
        self.fake = fake
        self.arrivals: list[float] = []
        self._lock = threading.Lock()
        self.delay = delay

    @property
    def requests(self) -> list[Any]:
        return self.arrivals

    def reply(self, body: dict[str, Any]) -> str:
        with self._lock:
            self.arrivals.append(time.monotonic())
        return f"{REASONING}\nChoice: A"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="live traces per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="live phase length")
    parser.add_argument("--delay", type=float, default=2.0, help="the rule's quiet period (s)")
    parser.add_argument("--judge-ms", type=float, default=50.0, help="judge latency")
    parser.add_argument(
        "--burst", type=int, default=150_000, help="traces of the ingest burst (2 spans each)"
    )
    parser.add_argument("--judge-calls", type=int, default=4_000, help="judge backlog size")
    parser.add_argument("--data", type=Path, help="keep the data directories here")
    args = parser.parse_args()
    root = args.data or Path(tempfile.mkdtemp(prefix="evalhouse-online-"))
    root.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        holder: dict[str, _Judge] = {}
        fake = stack.enter_context(
            fake_openai(
                reply=lambda body: holder["judge"].reply(body),
                delay_seconds=args.judge_ms / 1000,
                count_tokens=True,
            )
        )
        judge = holder["judge"] = _Judge(fake, args.judge_ms / 1000)
        os.environ.update(
            {
                "OPENAI_BASE_URL": fake.base_url,
                "OPENAI_API_KEY": "benchmark",
                "EVALHOUSE_EVALUATOR_SCORER_CONCURRENCY": str(CONCURRENCY),
            }
        )
        try:
            without = one_run(args, root, with_rule=False, judge=judge)
            with_rule = one_run(args, root, with_rule=True, judge=judge)
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}", file=sys.stderr)
            return 1
        finally:
            if args.data is None:
                shutil.rmtree(root, ignore_errors=True)
    slowdown = 1 - with_rule["ingest_spans_per_s"] / without["ingest_spans_per_s"]
    print(
        f"live traffic: {with_rule['live_traces']:,} traces at {with_rule['live_rate']:,.0f}/s "
        f"for {args.seconds:g} s, rule sample 0.1, judge {args.judge_ms:g} ms, "
        f"delay {args.delay:g} s"
    )
    print(
        f"  scored live: {with_rule['scored_live']:,} targets; lag after the quiet period "
        f"p50 {with_rule['lag_p50_s']:.2f} s, p95 {with_rule['lag_p95_s']:.2f} s, max "
        f"{with_rule['lag_max_s']:.2f} s (goal p95 <= {GOAL_LAG_P95_S:g} s: "
        f"{'met' if with_rule['lag_p95_s'] <= GOAL_LAG_P95_S else 'MISSED'})"
    )
    print(
        f"    of which waiting for the trace's row: p50 {with_rule['row_wait_p50_s']:.2f} s, "
        f"p95 {with_rule['row_wait_p95_s']:.2f} s; the rule's own part: p50 "
        f"{with_rule['rule_lag_p50_s']:.2f} s, p95 {with_rule['rule_lag_p95_s']:.2f} s"
    )
    print(
        f"  judge: {with_rule['judge_calls']:,} calls on a backlog at "
        f"{with_rule['judge_calls_per_s']:,.0f}/s of an ideal "
        f"{with_rule['judge_ideal_per_s']:,.0f}/s "
        f"({CONCURRENCY} at once, {args.judge_ms:g} ms): {with_rule['judge_efficiency']:.0%} "
        f"(goal >= {GOAL_JUDGE_EFFICIENCY:.0%}: "
        f"{'met' if with_rule['judge_efficiency'] >= GOAL_JUDGE_EFFICIENCY else 'MISSED'})"
    )
    cpu = with_rule["judge_cpu_ms_per_call"]
    print(
        f"    CPU per judge call: the server {cpu['server']:.2f} ms, the fake judge "
        f"{cpu['fake_judge']:.2f} ms; the machine {with_rule['judge_cpu_share']:.0%} busy"
    )
    print(
        f"  ingest burst ({args.burst:,} traces, {2 * args.burst:,} spans): without the rule "
        f"{without['ingest_spans_per_s']:,.0f} spans/s, with it "
        f"{with_rule['ingest_spans_per_s']:,.0f} spans/s: {slowdown:+.1%} slower "
        f"(goal <= {GOAL_INGEST_SLOWDOWN:.0%}: "
        f"{'met' if slowdown <= GOAL_INGEST_SLOWDOWN else 'MISSED'})"
    )
    print(f"  judge spend of the live rule: ${with_rule['live_spend_usd']:.4f}")
    print(json.dumps({"without_rule": without, "with_rule": with_rule}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
