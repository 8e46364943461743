"""Replay throughput: a 2,000-call cohort replayed on two models (``docs/replay.md``).

``evalhouse serve`` runs as a subprocess on a fresh data directory. This process records
2,000 production model calls (OTel GenAI spans with their messages, a tool definition and
token counts, sent by the OTel SDK over OTLP/gRPC), then starts a replay through the HTTP API
(``POST /api/replays``, what ``evalhouse replay`` does) on two models served by the tests'
OpenAI-compatible server answering after 50 ms, at concurrency 32, and polls
``GET /api/replays/{id}`` until the comparison is there.

Printed: replays/s during the replay phase against the ideal (concurrency / latency =
640 calls/s; goal >= 85%), the time from the request to the printed comparison, and the dry
run's estimate against what the replay spent, and the CPU the server, its replay process
and the fake provider (this process) used while replaying.

    python benchmarks/replay.py [--calls 2000] [--concurrency 32] [--delay 0.05]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the OpenAI-compatible server the tests use

from fake_openai import fake_openai  # noqa: E402
from ingest import BenchmarkError, Serve, cpu_seconds, sql, start_serve  # noqa: E402
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor  # noqa: E402

TOOL = {"name": "lookup", "description": "Look up", "parameters": {"type": "object"}}


def api(serve: Serve, method: str, path: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        serve.api + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
        method=method,
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def record(serve: Serve, calls: int) -> None:
    """``calls`` recorded chat calls, one trace each, through the OTel SDK."""
    provider = TracerProvider(resource=Resource.create({"service.name": "bench-bot"}))
    exporter = OTLPSpanExporter(endpoint=f"http://{serve.grpc_target}", insecure=True)
    provider.add_span_processor(BatchSpanProcessor(exporter, max_export_batch_size=512))
    tracer = provider.get_tracer("bench.replay")
    for i in range(calls):
        question = f"What is the capital of country number {i}? " * 4
        messages = [
            {"role": "system", "parts": [{"type": "text", "content": "Answer briefly."}]},
            {"role": "user", "parts": [{"type": "text", "content": question}]},
        ]
        answer = f"City{i}"
        with (
            tracer.start_as_current_span("handle", attributes={"evalhouse.tags": "bench"}),
            tracer.start_as_current_span(
                "chat gpt-4o",
                attributes={
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.response.model": "gpt-4o-2024-08-06",
                    "gen_ai.usage.input_tokens": (len("Answer briefly.") + 3) // 4
                    + (len(question) + 3) // 4,
                    "gen_ai.usage.output_tokens": (len(answer) + 3) // 4,
                    "gen_ai.input.messages": json.dumps(messages),
                    "gen_ai.output.messages": json.dumps(
                        [{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]
                    ),
                    "gen_ai.tool.definitions": json.dumps([TOOL]),
                },
            ),
        ):
            pass
    provider.shutdown()


def reply(body: dict[str, Any]) -> str:
    text = body["messages"][-1]["content"]
    number = text.split("number ", 1)[1].split("?", 1)[0]
    return f"City{number}" if body["model"] == "gpt-4o-mini" or int(number) % 3 else "Unsure"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--delay", type=float, default=0.05)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="eh-replay-") as folder:
        serve = start_serve(Path(folder) / "data")
        try:
            with fake_openai(reply=reply, count_tokens=True, delay_seconds=args.delay) as llm:
                return run(serve, llm, args)
        except BenchmarkError as exc:
            print(f"benchmark failed: {exc}\n{serve.log_tail()}", file=sys.stderr)
            return 1
        finally:
            serve.stop()


def run(serve: Serve, llm: Any, args: argparse.Namespace) -> int:
    started = time.monotonic()
    record(serve, args.calls)
    deadline = time.monotonic() + 120
    while sql(serve, "SELECT count() FROM otel_traces WHERE LlmOperation = 'chat'") < args.calls:
        if time.monotonic() > deadline:
            raise BenchmarkError("the recorded calls were not stored within 120 s")
        time.sleep(0.2)
    print(f"recorded {args.calls} calls in {time.monotonic() - started:.1f} s")
    fields = {
        "since": "1h",
        "where": "ServiceName = 'bench-bot'",
        "limit": args.calls,
        "models": ["openai:gpt-4o-mini", "openai:gpt-4.1-nano"],
        "base_url": llm.base_url,
        "concurrency": args.concurrency,
        "name": "bench",
    }
    estimate = api(serve, "POST", "/api/replays/estimate", fields)
    begun = time.monotonic()
    replay_id = api(serve, "POST", "/api/replays", fields)["id"]
    phases: dict[str, float] = {}
    cpu: dict[str, dict[int, float]] = {}
    while True:
        progress = api(serve, "GET", f"/api/replays/{replay_id}")
        phases.setdefault(progress["state"], time.monotonic())
        if progress["state"] in ("replaying", "recording"):
            cpu.setdefault("start", cpu_seconds(serve.process.pid))
            cpu["end"] = cpu_seconds(serve.process.pid)
            cpu.setdefault("self_start", cpu_seconds(os.getpid()))
            cpu["self_end"] = cpu_seconds(os.getpid())
        if progress["state"] in ("done", "failed"):
            break
        time.sleep(0.05)
    if progress["state"] == "failed":
        raise BenchmarkError(progress["error"])
    result = progress["result"]
    printed = json.dumps({"benchmark": result["benchmark"], "compare": result["compare"]})
    total = time.monotonic() - begun
    replaying = phases.get("scoring", phases["done"]) - phases.get("replaying", begun)
    calls = sum(result["budget"]["replayed"].values())
    ideal = args.concurrency / args.delay
    rate = calls / replaying
    print(f"cohort: {result['cohort']}")
    print(
        f"replayed {calls} calls in {replaying:.1f} s: {rate:.0f} replays/s, ideal "
        f"{ideal:.0f}/s ({rate / ideal:.0%} of ideal; goal >= 85%)"
    )
    print(f"time from request to printed comparison: {total:.1f} s ({len(printed)} bytes)")
    server = serve.process.pid
    own = cpu["end"].get(server, 0.0) - cpu["start"].get(server, 0.0)
    children = sum(v - cpu["start"].get(p, 0.0) for p, v in cpu["end"].items() if p != server)
    here = cpu["self_end"][os.getpid()] - cpu["self_start"][os.getpid()]
    print(
        f"CPU while replaying ({os.cpu_count()} cores x {replaying:.1f} s): the server "
        f"{own:.1f} s, its replay process {children:.1f} s, the fake provider {here:.1f} s; "
        f"per call {own / calls * 1000:.2f} + {children / calls * 1000:.2f} + "
        f"{here / calls * 1000:.2f} ms"
    )
    for label, experiment_id in result["experiments"].items():
        spent = (
            sql(
                serve,
                "SELECT toUInt64(sum(cost_usd) * 1e9) FROM experiment_rows "
                f"WHERE experiment_id = '{experiment_id}'",
            )
            / 1e9
        )
        guess = estimate["models"][label]["cost_usd"]
        verdict = result["compare"][label]["scores"]["matches_recorded"]["verdict"]
        print(
            f"{label}: spent ${spent:.4f}, estimated ${guess:.4f} "
            f"({guess / spent - 1:+.0%}); vs recorded: {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
