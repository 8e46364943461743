"""Ingest benchmark: OTLP/gRPC → ``evalhouse serve`` → ClickHouse, end to end.

Goal: ≥ 50,000 spans/s stored end to end, peak server RSS ≤ 1 GiB, 0 spans lost.

1. Builds ``--spans`` GenAI chat spans as pre-serialised ExportTraceServiceRequests.
2. Starts ``evalhouse serve`` on a fresh data directory and free ports.
3. A separate (spawned) load process sends every request over OTLP/gRPC on ``--streams``
   threads, retrying UNAVAILABLE / RESOURCE_EXHAUSTED like OTLP exporters do.
4. Meanwhile this process samples the server's RSS every 50 ms and reads the collector's
   ``written`` counter (spans whose ClickHouse insert returned, so queryable) from ``/metrics``
   every 50 ms; once it reaches the total, ``SELECT count() FROM otel_traces`` through the API
   must confirm every span (polling SQL instead would cost the server a query every poll).
5. Checks for lost and duplicated spans, reports the CPU time the server and the load process
   used during the load, stops the server with SIGINT (must exit 0).
6. Baseline: the same requests inserted in-process with ``OtlpSink`` into a fresh chDB store.

Run: ``.venv/bin/python benchmarks/ingest.py [--spans 200000] [--batch 512] [--streams 4]
[--arrays]``.
Exits 0 whatever the figures are; non-zero only when something broke (server died, timeout).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

GOAL_SPANS_PER_S = 50_000
GOAL_RSS_MIB = 1024
STORED_TIMEOUT_S = 300.0
STALL_S = 60.0
READY_TIMEOUT_S = 90.0
RSS_INTERVAL_S = 0.05
POLL_INTERVAL_S = 0.05
BASELINE_CHUNK_SPANS = 50_000
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
MODELS = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o3-mini")
FINISH_REASONS = ("stop", "stop", "stop", "length", "tool_calls")


class BenchmarkError(Exception):
    """Something broke (not a missed goal): the script exits non-zero."""


# ---- workload ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    payloads: list[bytes]
    spans: list[int]  # spans per request

    @property
    def total_spans(self) -> int:
        return sum(self.spans)

    @property
    def total_bytes(self) -> int:
        return sum(map(len, self.payloads))


def _nonzero_bytes(rng: random.Random, size: int) -> bytes:
    while True:
        value = rng.randbytes(size)
        if any(value):
            return value


def _fill_chat_span(out: Any, rng: random.Random, start_ns: int, arrays: bool) -> None:
    """One OpenAI chat completion span, as GenAI semantic-convention instrumentation emits
    (``arrays``: finish reasons as the string array the convention and the official
    instrumentation use, which the collector turns into a JSON string; else one string)."""
    model = rng.choice(MODELS)
    input_tokens = rng.randint(20, 4000)
    output_tokens = rng.randint(1, 1200)
    out.trace_id = _nonzero_bytes(rng, 16)
    out.span_id = _nonzero_bytes(rng, 8)
    out.name = f"chat {model}"
    out.kind = 3  # SPAN_KIND_CLIENT
    out.start_time_unix_nano = start_ns
    out.end_time_unix_nano = start_ns + rng.randint(150_000_000, 8_000_000_000)
    out.status.code = 1  # STATUS_CODE_OK
    attrs = out.attributes
    attrs.add(key="gen_ai.operation.name").value.string_value = "chat"
    attrs.add(key="gen_ai.provider.name").value.string_value = "openai"
    attrs.add(key="gen_ai.request.model").value.string_value = model
    attrs.add(key="gen_ai.response.model").value.string_value = f"{model}-2024-08-06"
    attrs.add(key="gen_ai.usage.input_tokens").value.int_value = input_tokens
    attrs.add(key="gen_ai.usage.output_tokens").value.int_value = output_tokens
    attrs.add(key="gen_ai.request.temperature").value.double_value = round(rng.random(), 2)
    attrs.add(key="server.address").value.string_value = "api.openai.com"
    attrs.add(key="gen_ai.response.id").value.string_value = f"chatcmpl-{rng.randbytes(12).hex()}"
    reasons = attrs.add(key="gen_ai.response.finish_reasons").value
    if arrays:
        reasons.array_value.values.add().string_value = rng.choice(FINISH_REASONS)
    else:
        reasons.string_value = rng.choice(FINISH_REASONS)


def _request(rng: random.Random, count: int, start_ns: int, arrays: bool) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource = request.resource_spans.add()
    resource.resource.attributes.add(key="service.name").value.string_value = "chat-backend"
    resource.resource.attributes.add(key="telemetry.sdk.language").value.string_value = "python"
    scope = resource.scope_spans.add()
    scope.scope.name = "opentelemetry.instrumentation.openai_v2"
    scope.scope.version = "2.1b0"
    for _ in range(count):
        start_ns += rng.randint(0, 2_000_000)
        _fill_chat_span(scope.spans.add(), rng, start_ns, arrays)
    payload: bytes = request.SerializeToString()
    return payload


def build_workload(total: int, batch: int, seed: int, arrays: bool) -> Workload:
    rng = random.Random(seed)
    start_ns = time.time_ns() - 3600 * 1_000_000_000
    payloads: list[bytes] = []
    spans: list[int] = []
    for first in range(0, total, batch):
        count = min(batch, total - first)
        payloads.append(_request(rng, count, start_ns + first * 1_000_000, arrays))
        spans.append(count)
    return Workload(payloads, spans)


def save_workload(workload: Workload, path: Path) -> None:
    with path.open("wb") as handle:
        for payload, count in zip(workload.payloads, workload.spans, strict=True):
            handle.write(count.to_bytes(4, "little") + len(payload).to_bytes(4, "little"))
            handle.write(payload)


def load_workload(path: Path) -> Workload:
    data = path.read_bytes()
    payloads: list[bytes] = []
    spans: list[int] = []
    at = 0
    while at < len(data):
        count = int.from_bytes(data[at : at + 4], "little")
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        payloads.append(data[at + 8 : at + 8 + size])
        spans.append(count)
        at += 8 + size
    return Workload(payloads, spans)


# ---- the load process ----------------------------------------------------------------------


@dataclass
class LoadResult:
    first_send: float = 0.0  # time.monotonic(), comparable across processes on Linux
    last_ack: float = 0.0
    acknowledged: int = 0
    rejected: int = 0
    failed_requests: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    cpu_seconds: float = 0.0  # CPU time the load process used sending


class _Sender:
    """Sends requests taken from a shared index, one thread per stream."""

    RETRYABLE = ("UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED")

    def __init__(self, target: str, workload: Workload, streams: int) -> None:
        self.target = target
        self.workload = workload
        self.streams = streams
        self.result = LoadResult()
        self._next = iter(range(len(workload.payloads)))
        self._lock = threading.Lock()

    def run(self) -> LoadResult:
        import grpc

        channels = [self._channel(grpc) for _ in range(self.streams)]
        for channel in channels:
            grpc.channel_ready_future(channel).result(timeout=30)
        threads = [threading.Thread(target=self._stream, args=(ch,)) for ch in channels]
        self.result.first_send = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for channel in channels:
            channel.close()
        return self.result

    def _channel(self, grpc: Any) -> Any:
        return grpc.insecure_channel(
            self.target,
            options=[
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.use_local_subchannel_pool", 1),  # one connection per stream
            ],
        )

    def _take(self) -> int | None:
        with self._lock:
            return next(self._next, None)

    def _stream(self, channel: Any) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceResponse,
        )

        export = channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        while (index := self._take()) is not None:
            self._send(export, index)

    def _send(self, export: Any, index: int) -> None:
        import grpc

        backoff = 0.05
        while True:
            try:
                response = export(self.workload.payloads[index], timeout=60)
                break
            except grpc.RpcError as exc:
                code = exc.code().name
                if code not in self.RETRYABLE:
                    with self._lock:
                        self.result.failed_requests += 1
                        self.result.errors.append(f"{code}: {exc.details()}")
                    return
                with self._lock:
                    self.result.retries[code] += 1
                time.sleep(backoff)
                backoff = min(2.0, backoff * 2)
        now = time.monotonic()
        rejected = response.partial_success.rejected_spans
        with self._lock:
            self.result.acknowledged += self.workload.spans[index] - rejected
            self.result.rejected += rejected
            self.result.last_ack = max(self.result.last_ack, now)


def _own_cpu() -> float:
    times = psutil.Process().cpu_times()
    return float(times.user + times.system)


def load_process(target: str, workload_path: str, streams: int, results: Any) -> None:
    """Entry point of the spawned load process; puts one LoadResult (as a dict) on ``results``."""
    try:
        workload = load_workload(Path(workload_path))
        before = _own_cpu()
        result = _Sender(target, workload, streams).run()
        result.cpu_seconds = _own_cpu() - before
    except Exception as exc:
        result = LoadResult(errors=[f"load process failed: {exc!r}"])
    results.put(asdict(result))  # plain data: the class lives in __mp_main__ here


# ---- the server ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Serve:
    process: subprocess.Popen[bytes]
    data_dir: Path
    log: Path
    grpc_target: str
    metrics_url: str
    api: str = ""

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> int:
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_serve(data_dir: Path) -> Serve:
    grpc_port, http_port, ui_port = free_port(), free_port(), free_port()
    log = data_dir.parent / f"{data_dir.name}-serve.log"
    # fmt: off
    command = [
        sys.executable, "-m", "evalhouse.surfaces.cli", "serve",
        "--data-dir", str(data_dir),
        "--grpc-port", str(grpc_port),
        "--http-port", str(http_port),
        "--ui-port", str(ui_port),
    ]
    # fmt: on
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    serve = Serve(
        process, data_dir, log, f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{http_port}/metrics"
    )
    deadline = time.monotonic() + READY_TIMEOUT_S
    while "Ctrl-C to stop." not in log.read_text(errors="replace"):
        if not serve.alive():
            raise BenchmarkError(f"evalhouse serve exited early:\n{serve.log_tail()}")
        if time.monotonic() > deadline:
            serve.stop()
            raise BenchmarkError(f"evalhouse serve not ready in {READY_TIMEOUT_S:.0f}s")
        time.sleep(0.05)
    serve.api = json.loads((data_dir / "server.json").read_text())["api"]
    return serve


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds used so far by ``pid`` and each of its living descendants (found by
    their parent ids, as ``ps`` does: a child whose spawning thread ended is still found)."""
    import psutil

    used: dict[int, float] = {}
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return used
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        used[process.pid] = times.user + times.system
    return used


def sql(serve: Serve, query: str) -> int:
    """One integer from a read-only query through the API of the running server."""
    request = urllib.request.Request(
        f"{serve.api}/api/sql",
        data=json.dumps({"query": query, "format": "TabSeparated"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body: bytes = response.read()
    except OSError as exc:
        state = "running" if serve.alive() else f"exited with {serve.process.returncode}"
        raise BenchmarkError(
            f"API query failed ({exc}); evalhouse serve {state}:\n{serve.log_tail()}"
        ) from None
    return int(body.decode().strip())


def collector_metrics(serve: Serve) -> dict[str, float]:
    """The collector's Prometheus self-metrics (OTLP/HTTP port), without the prefix."""
    with urllib.request.urlopen(serve.metrics_url, timeout=60) as response:
        text: str = response.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.removeprefix("evalhouse_collector_")] = float(value)
    return values


class RssSampler:
    """Peak resident memory of a process and its children, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(RSS_INTERVAL_S):
            try:
                members = [self.process, *self.process.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in members))
            except psutil.Error:
                return


@dataclass
class _Progress:
    """Fails the run when the server dies, the loader dies, or storing stalls or times out."""

    serve: Serve
    loader: multiprocessing.process.BaseProcess
    deadline: float = field(default_factory=lambda: time.monotonic() + STORED_TIMEOUT_S)
    last_value: int = -1
    last_change: float = field(default_factory=time.monotonic)

    def check(self, value: int) -> None:
        now = time.monotonic()
        if value != self.last_value:
            self.last_value, self.last_change = value, now
        if not self.serve.alive():
            raise BenchmarkError(f"evalhouse serve died:\n{self.serve.log_tail()}")
        if self.loader.exitcode not in (None, 0):
            raise BenchmarkError(f"the load process died (exit code {self.loader.exitcode})")
        if now - self.last_change > STALL_S and self.loader.exitcode == 0:
            raise BenchmarkError(
                f"stored spans stuck at {value} for {STALL_S:.0f}s; serve log tail:\n"
                + self.serve.log_tail()
            )
        if now > self.deadline:
            raise BenchmarkError(f"only {value} spans stored after {STORED_TIMEOUT_S:.0f}s")


def wait_stored(serve: Serve, expected: int, loader: multiprocessing.process.BaseProcess) -> float:
    """The time every span was stored: the collector's ``written`` counter reached
    ``expected`` and ``count()`` agrees (if it does not yet, poll ``count()`` until it does)."""
    watch = _Progress(serve, loader)
    while (written := int(collector_metrics(serve).get("written_total", 0))) < expected:
        watch.check(written)
        time.sleep(POLL_INTERVAL_S)
    stored_at = time.monotonic()
    while (value := sql(serve, "SELECT count() FROM otel_traces")) < expected:
        watch.check(value)
        time.sleep(POLL_INTERVAL_S)
        stored_at = time.monotonic()
    return stored_at


# ---- end to end ----------------------------------------------------------------------------


@dataclass
class EndToEnd:
    load: LoadResult
    stored_at: float
    stored: int
    duplicates: int
    peak_rss: int
    metrics: dict[str, float]
    exit_code: int
    log: Path
    cpu: CpuUse


@dataclass(frozen=True)
class CpuUse:
    """CPU time used from the first send until every span was stored."""

    server_seconds: float
    machine_busy: float  # fraction of all cores busy (every process on the machine)
    cores: int


def run_end_to_end(workload_path: Path, total: int, streams: int, root: Path) -> EndToEnd:
    serve = start_serve(root / "data")
    try:
        with RssSampler(serve.process.pid) as rss:
            load, stored_at, cpu = _drive_load(serve, workload_path, total, streams)
            metrics = collector_metrics(serve)
            stored = sql(serve, "SELECT count() FROM otel_traces")
            duplicates = sql(serve, "SELECT count() - uniqExact(SpanId) FROM otel_traces")
            peak = rss.peak
    finally:
        exit_code = serve.stop()
    return EndToEnd(load, stored_at, stored, duplicates, peak, metrics, exit_code, serve.log, cpu)


def _drive_load(
    serve: Serve, workload_path: Path, total: int, streams: int
) -> tuple[LoadResult, float, CpuUse]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    loader = context.Process(
        target=load_process, args=(serve.grpc_target, str(workload_path), streams, results)
    )
    server = psutil.Process(serve.process.pid)
    loader.start()
    try:
        # The load process needs a moment to read the workload and connect; the server is
        # idle meanwhile, so its CPU clock starts here and the machine's when sending starts.
        server_before = server.cpu_times()
        machine_before = psutil.cpu_times()
        stored_at = wait_stored(serve, total, loader)
        server_after = server.cpu_times()
        machine_after = psutil.cpu_times()
        load = LoadResult(**results.get(timeout=STORED_TIMEOUT_S))
    except BenchmarkError as exc:
        raise BenchmarkError(f"{exc}{_load_errors(results)}") from None
    finally:
        loader.join(timeout=30)
        if loader.is_alive():
            loader.kill()
    if load.errors:
        raise BenchmarkError("load errors: " + "; ".join(load.errors[:5]))
    server_cpu = sum(server_after[:2]) - sum(server_before[:2])
    busy = _busy(machine_after) - _busy(machine_before)
    elapsed = sum(machine_after) - sum(machine_before)
    cpu = CpuUse(server_cpu, busy / elapsed if elapsed else 0.0, psutil.cpu_count() or 1)
    return load, stored_at, cpu


def _busy(times: Any) -> float:
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0))


def _load_errors(results: Any) -> str:
    """The load process's errors, if it has reported, to explain a failed run."""
    try:
        errors = results.get(timeout=1)["errors"]
    except queue.Empty:
        return ""
    return "\nload process errors: " + "; ".join(errors[:5]) if errors else ""


# ---- baseline ------------------------------------------------------------------------------


def _chunks(workload: Workload, spans_per_chunk: int) -> Iterator[list[bytes]]:
    chunk: list[bytes] = []
    spans = 0
    for payload, count in zip(workload.payloads, workload.spans, strict=True):
        chunk.append(payload)
        spans += count
        if spans >= spans_per_chunk:
            yield chunk
            chunk, spans = [], 0
    if chunk:
        yield chunk


def run_baseline(workload: Workload, warmup: Workload, root: Path) -> float:
    """Spans/s of a raw in-process insert of the same requests (chDB, OtlpSink)."""
    from evalhouse.collector._writer import _length_delimited
    from evalhouse.store import OtlpSink, Store, migrate

    store = Store(f"chdb://{root / 'baseline'}")
    try:
        migrate(store)
        sink = OtlpSink(store)
        sink.insert_otlp("traces", _length_delimited(warmup.payloads), "bench-warmup")
        started = time.perf_counter()
        for number, chunk in enumerate(_chunks(workload, BASELINE_CHUNK_SPANS)):
            sink.insert_otlp("traces", _length_delimited(chunk), f"bench-{number}")
        elapsed = time.perf_counter() - started
        stored = store.query("SELECT count() FROM otel_traces")[0][0]
    finally:
        store.close()
    expected = workload.total_spans + warmup.total_spans
    if stored != expected:
        raise BenchmarkError(f"baseline stored {stored} spans, expected {expected}")
    return workload.total_spans / elapsed


# ---- report --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _collector_lines(e2e: EndToEnd) -> list[str]:
    m = e2e.metrics
    inserts = int(m.get("insert_seconds_count", 0))
    insert_s = m.get("insert_seconds_sum", 0.0)
    mean_ms = 1000 * insert_s / inserts if inserts else 0.0
    return [
        f"collector inserts: {inserts} ({insert_s:.1f} s inside inserts, mean {mean_ms:,.0f} ms;"
        f" failures {int(m.get('insert_failures_total', 0))},"
        f" throttled requests {int(m.get('throttled_requests_total', 0))})",
    ]


def _cpu_lines(e2e: EndToEnd, total: int) -> list[str]:
    cpu = e2e.cpu
    per_100k = 100_000 / total
    return [
        f"server CPU while loading: {cpu.server_seconds:.1f} s"
        f" ({cpu.server_seconds * per_100k:.2f} CPU-s per 100k spans);"
        f" load process CPU: {e2e.load.cpu_seconds:.1f} s;"
        f" machine busy: {100 * cpu.machine_busy:.0f}% of {cpu.cores} cores",
    ]


def report(workload: Workload, e2e: EndToEnd, baseline: float) -> None:
    load = e2e.load
    total = workload.total_spans
    accepted_rate = load.acknowledged / (load.last_ack - load.first_send)
    stored_rate = total / (e2e.stored_at - load.first_send)
    rss_mib = e2e.peak_rss / 2**20
    retries = ", ".join(f"{k} {v}" for k, v in sorted(load.retries.items())) or "none"
    lines = [
        f"spans sent: {total} in {len(workload.payloads)} requests "
        f"({workload.total_bytes / 2**20:.1f} MiB protobuf)",
        f"acknowledged spans: {load.acknowledged} (partial-success rejected: {load.rejected})",
        f"retries: {retries}",
        f"accepted spans/s: {accepted_rate:,.0f}",
        f"stored spans/s: {stored_rate:,.0f} "
        f"(goal >= {GOAL_SPANS_PER_S}: {_verdict(stored_rate >= GOAL_SPANS_PER_S)})",
        f"peak server RSS: {rss_mib:,.0f} MiB "
        f"(goal <= {GOAL_RSS_MIB}: {_verdict(rss_mib <= GOAL_RSS_MIB)})",
        f"lost spans: {load.acknowledged - e2e.stored}",
        f"duplicate spans: {e2e.duplicates}",
        f"serve exit code: {e2e.exit_code}",
        *_collector_lines(e2e),
        *_cpu_lines(e2e, total),
        f"raw in-process insert spans/s: {baseline:,.0f}",
        f"end-to-end / raw insert: {stored_rate / baseline:.2f}",
    ]
    print("\n".join(["", "=== evalhouse ingest benchmark ===", *lines]), flush=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=200_000, help="spans to send")
    parser.add_argument("--batch", type=int, default=512, help="spans per export request")
    parser.add_argument("--streams", type=int, default=4, help="concurrent sender threads")
    parser.add_argument("--seed", type=int, default=1, help="random seed of the workload")
    parser.add_argument(
        "--arrays",
        action="store_true",
        help="finish reasons as a string array (the GenAI convention) instead of a string",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (serve log)")
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    root = Path(tempfile.mkdtemp(prefix="evalhouse-bench-"))
    try:
        return _run(args, root)
    finally:
        if args.keep:
            print(f"kept {root} (serve log: {root / 'data-serve.log'})")
        else:
            shutil.rmtree(root, ignore_errors=True)


def _run(args: argparse.Namespace, root: Path) -> int:
    print(f"building {args.spans} spans in requests of {args.batch}...", flush=True)
    workload = build_workload(args.spans, args.batch, args.seed, args.arrays)
    warmup = build_workload(
        min(args.spans, BASELINE_CHUNK_SPANS), args.batch, args.seed + 1, args.arrays
    )
    workload_path = root / "workload.bin"
    save_workload(workload, workload_path)
    try:
        print(f"end to end: {args.streams} gRPC streams -> evalhouse serve...", flush=True)
        e2e = run_end_to_end(workload_path, workload.total_spans, args.streams, root)
        print("baseline: raw in-process insert...", flush=True)
        baseline = run_baseline(workload, warmup, root)
    except BenchmarkError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    report(workload, e2e, baseline)
    if e2e.exit_code != 0:
        print(f"evalhouse serve exited with {e2e.exit_code}; log tail:", file=sys.stderr)
        print(e2e.log.read_text(errors="replace")[-4000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
