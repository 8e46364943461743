"""Listeners that stalled, slow or hostile clients cannot starve.

Real servers on loopback, the real OTel SDK exporters as the well-behaved clients, raw sockets
and gRPC calls that never send their message as the attackers.
"""

from __future__ import annotations

import contextlib
import gzip
import resource
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from conftest import count, wait_for
from grpc import Compression
from grpc_health.v1 import health_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from otlp_builders import span, trace_request
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from evalhouse.asgi import AsgiServer, GuardedApp, Limits
from evalhouse.auth import ApiKeys
from evalhouse.config import load_settings
from evalhouse.store import Store, migrate
from evalhouse.surfaces.api import api_app

TRACES = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture(autouse=True)
def enough_file_descriptors() -> None:
    """Attackers and server share this process: each attack socket counts twice."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (4096, hard))


@pytest.fixture(scope="module")
def store(chdb_dsn: str) -> Store:
    """One migrated database for the module (migrating costs ~1 s); tests count their own
    spans by name."""
    s = Store(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")
    migrate(s)
    return s


def spans_named(store: Store, prefix: str) -> int:
    return count(store, f"SELECT count() FROM otel_traces WHERE startsWith(SpanName, '{prefix}')")


@pytest.fixture
def start_api(store: Store) -> Iterator[Callable[..., AsgiServer]]:
    servers: list[AsgiServer] = []

    def start(**overrides: Any) -> AsgiServer:
        settings = load_settings(**overrides)
        server = AsgiServer.start(
            api_app(store, ApiKeys(frozenset()), settings), "127.0.0.1", 0, "API"
        )
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def finished_spans(n: int, name: str) -> list[ReadableSpan]:
    tracer = TracerProvider().get_tracer("tests")
    spans = []
    for i in range(n):
        with tracer.start_as_current_span(f"{name} {i}") as current:
            spans.append(current)
    return spans


@pytest.fixture
def half_sent() -> Iterator[Callable[[int, bytes, int], list[socket.socket]]]:
    """Opens ``n`` connections that each send ``request`` (a cut-off one) and then nothing;
    closed at the end of the test."""
    opened: list[socket.socket] = []

    def open_(port: int, request: bytes, n: int) -> list[socket.socket]:
        sockets = []
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port))
            opened.append(sock)
            sock.sendall(request)
            sockets.append(sock)
        return sockets

    yield open_
    for sock in opened:
        sock.close()


def headers_cut(path: str) -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: evalhouse\r\nContent-Ty".encode()


def body_cut(path: str) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: evalhouse\r\nContent-Type: application/json\r\n"
    return f'{head}Content-Length: 100000\r\n\r\n{{"query": '.encode()


class StalledCalls:
    """gRPC calls that send their headers and never their message (a request iterator that
    never yields), spread over several connections."""

    def __init__(self, address: str, n: int, connections: int = 4, metadata: Any = None) -> None:
        self.release = threading.Event()
        self.channels = [
            grpc.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
            for _ in range(connections)
        ]
        self.calls = []
        for i in range(n):
            export = self.channels[i % connections].stream_unary(
                TRACES, request_serializer=None, response_deserializer=None
            )
            self.calls.append(export.future(self._never(), metadata=metadata, timeout=60))

    def _never(self) -> Iterator[bytes]:
        self.release.wait()
        yield from ()

    def close(self) -> None:
        self.release.set()
        for call in self.calls:
            call.cancel()
        for channel in self.channels:
            channel.close()


def within(seconds: float, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = action()
    elapsed = time.monotonic() - started
    assert elapsed < seconds, f"took {elapsed:.2f}s"
    return result


def test_half_sent_requests_and_stalled_calls_starve_no_one(
    start_collector: Any, start_api: Callable[..., AsgiServer], store: Store, half_sent: Any
) -> None:
    # Deadlines longer than the test: the attackers hold on while the clients are served.
    slow = {"http_header_timeout_seconds": 30, "http_body_timeout_seconds": 30}
    collector, addresses = start_collector(grpc_message_timeout_seconds=30, **slow)
    api = start_api(**slow)
    http_port = int(addresses.http.rsplit(":", 1)[1])
    attackers = [
        *half_sent(http_port, headers_cut("/v1/traces"), 150),
        *half_sent(http_port, body_cut("/v1/traces"), 150),
        *half_sent(api.port, headers_cut("/api/sql"), 150),
        *half_sent(api.port, body_cut("/api/sql"), 150),
    ]
    stalled = StalledCalls(addresses.grpc, 200)
    try:
        time.sleep(0.5)  # let every stalled call reach the server
        assert not any(call.done() for call in stalled.calls)
        exporters = [
            GrpcSpanExporter(endpoint=addresses.grpc, insecure=True, timeout=2),
            GrpcSpanExporter(
                endpoint=addresses.grpc, insecure=True, timeout=2, compression=Compression.Gzip
            ),
            HttpSpanExporter(endpoint=f"{addresses.http}/v1/traces", timeout=2),
        ]
        for exporter in exporters:
            result = within(2, lambda e=exporter: e.export(finished_spans(3, "starve")))
            assert result == SpanExportResult.SUCCESS
            exporter.shutdown()
        health = within(2, lambda: httpx.get(f"http://127.0.0.1:{api.port}/api/health", timeout=2))
        assert health.status_code == 200
        otlp_health = within(2, lambda: httpx.get(f"{addresses.http}/health", timeout=2))
        assert otlp_health.status_code == 200
        with grpc.insecure_channel(addresses.grpc) as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            answer = within(2, lambda: check(health_pb2.HealthCheckRequest(), timeout=2))
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        stalled.close()
        for sock in attackers:
            sock.close()  # before the servers stop, which would wait for them
    wait_for(lambda: spans_named(store, "starve") == 9)
    assert collector.metrics.snapshot()["accepted"] == 9


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(4096):
        data += chunk
    return data


def test_half_sent_request_is_dropped_after_the_header_or_body_timeout(
    start_api: Callable[..., AsgiServer], half_sent: Any
) -> None:
    api = start_api(http_header_timeout_seconds=0.5, http_body_timeout_seconds=0.5)
    (headers,) = half_sent(api.port, headers_cut("/api/sql"), 1)
    (body,) = half_sent(api.port, body_cut("/api/sql"), 1)
    (silent,) = half_sent(api.port, b"", 1)
    (trickle,) = half_sent(api.port, b"GET /api/health HTTP/1.1\r\n", 1)
    started = time.monotonic()
    for _ in range(4):  # a byte now and then does not extend the deadline
        time.sleep(0.2)
        try:
            trickle.sendall(b"X")
        except OSError:
            break
    answers = [within(2, lambda s=s: read_until_closed(s, 2)) for s in (headers, body, silent)]
    assert answers[0].startswith(b"HTTP/1.1 408 ")
    assert b"http_header_timeout_seconds" in answers[0]
    assert answers[1].startswith(b"HTTP/1.1 408 ")
    assert b"http_body_timeout_seconds" in answers[1]
    assert answers[2] == b""  # connected, sent nothing: closed without a word
    assert read_until_closed(trickle, 2).startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 2


def test_idle_kept_alive_connection_is_closed(
    start_api: Callable[..., AsgiServer], half_sent: Any
) -> None:
    api = start_api(http_idle_timeout_seconds=1)
    (sock,) = half_sent(api.port, b"GET /api/health HTTP/1.1\r\nHost: evalhouse\r\n\r\n", 1)
    started = time.monotonic()
    answer = read_until_closed(sock, 3)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert 0.9 < time.monotonic() - started < 2.5


def test_api_body_over_the_limit_is_413_saying_the_limit_and_what_to_do(
    start_api: Callable[..., AsgiServer],
) -> None:
    api = start_api(api_max_body_bytes=1024)
    url = f"http://127.0.0.1:{api.port}/api/sql"
    query = {"query": "SELECT 1 -- " + "x" * 2000}
    declared = httpx.post(url, json=query)
    assert declared.status_code == 413
    message = declared.json()["error"]
    assert "1024 bytes" in message and "EVALHOUSE_API_MAX_BODY_BYTES" in message

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams in
        yield b'{"query": "SELECT 1 -- '
        for _ in range(10):
            yield b"x" * 200
        yield b'"}'

    streamed = httpx.post(url, content=chunks(), headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413
    assert "1024 bytes" in streamed.json()["error"]
    small = httpx.post(url, json={"query": "SELECT 1", "format": "CSV"})
    assert small.status_code == 200 and small.text.strip() == "1"


def test_otlp_body_over_the_limit_is_413_in_otlp_format(start_collector: Any) -> None:
    from google.rpc import status_pb2

    _, addresses = start_collector(max_message_bytes=4096)
    too_big = httpx.post(f"{addresses.http}/v1/traces", content=b"\x00" * 5000, headers=PROTOBUF)
    assert too_big.status_code == 413
    status = status_pb2.Status.FromString(too_big.content)
    assert status.code == 3 and "4096 bytes" in status.message
    assert "EVALHOUSE_MAX_MESSAGE_BYTES" in status.message


def test_truncated_gzip_body_is_400_and_every_gzip_member_is_read(
    start_collector: Any, store: Store
) -> None:
    _, addresses = start_collector()
    url = f"{addresses.http}/v1/traces"
    headers = {**PROTOBUF, "Content-Encoding": "gzip"}
    whole = gzip.compress(trace_request([span(f"cut{i}") for i in range(50)]).SerializeToString())
    no_trailer = httpx.post(url, content=whole[:-8], headers=headers)  # CRC and length gone
    assert no_trailer.status_code == 400
    assert "truncated" in no_trailer.content.decode(errors="replace")
    assert httpx.post(url, content=whole[: len(whole) // 2], headers=headers).status_code == 400
    # Two members (gzip a b > c): one protobuf message split across them.
    body = trace_request([span("member-one"), span("member-two")]).SerializeToString()
    two = gzip.compress(body[:10]) + gzip.compress(body[10:])
    assert httpx.post(url, content=two, headers=headers).status_code == 200
    wait_for(lambda: spans_named(store, "member-") == 2)
    assert spans_named(store, "cut") == 0


def test_grpc_key_is_checked_before_the_message_and_a_missing_message_times_out(
    start_collector: Any,
) -> None:
    collector, addresses = start_collector(api_keys=["k3y"], grpc_message_timeout_seconds=0.5)
    wrong = StalledCalls(addresses.grpc, 1, connections=1, metadata=[("x-api-key", "nope")])
    keyed = StalledCalls(addresses.grpc, 1, connections=1, metadata=[("x-api-key", "k3y")])
    try:
        # Refused although no message was ever sent: the key was checked before reading it
        # (the message deadline would have ended the call with DEADLINE_EXCEEDED instead).
        with pytest.raises(grpc.RpcError) as refused:
            wrong.calls[0].result(timeout=2)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as dropped:
            keyed.calls[0].result(timeout=2)
        assert dropped.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert "grpc_message_timeout_seconds" in (dropped.value.details() or "")
    finally:
        wrong.close()
        keyed.close()
    assert collector.metrics.snapshot()["unauthenticated_requests"] == 1


def test_stop_does_not_wait_for_a_handler_stuck_in_a_thread() -> None:
    release = threading.Event()
    entered = threading.Event()

    async def stuck(request: Request) -> PlainTextResponse:
        entered.set()
        await run_in_threadpool(release.wait, 60)
        return PlainTextResponse("late")

    limits = Limits(header_timeout=5, body_timeout=5, idle_timeout=5, max_body_bytes=1024)
    app = GuardedApp(Starlette(routes=[Route("/stuck", stuck)]), limits)
    server = AsgiServer.start(app, "127.0.0.1", 0, "test", shutdown_grace=1)

    def call() -> None:
        # The server may end the request when it stops.
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.port}/stuck", timeout=10)

    client = threading.Thread(target=call, daemon=True)
    try:
        client.start()
        assert entered.wait(5)
        within(3, server.stop)
    finally:
        release.set()


def test_stop_refuses_a_request_still_waiting_for_its_body_at_once(half_sent: Any) -> None:
    async def echo(request: Request) -> PlainTextResponse:
        return PlainTextResponse(await request.body())

    limits = Limits(header_timeout=30, body_timeout=30, idle_timeout=30, max_body_bytes=100_000)
    app = GuardedApp(Starlette(routes=[Route("/echo", echo, methods=["POST"])]), limits)
    server = AsgiServer.start(app, "127.0.0.1", 0, "test", shutdown_grace=5)
    (waiting,) = half_sent(server.port, body_cut("/echo"), 1)
    time.sleep(0.2)
    within(2, server.stop)  # not the 5 s grace: that request has done no work yet
    assert read_until_closed(waiting, 2).startswith(b"HTTP/1.1 503 ")


def test_full_request_slots_answer_503_with_retry_after_but_health_still_answers() -> None:
    release = threading.Event()
    inside = threading.Semaphore(0)

    async def busy(request: Request) -> PlainTextResponse:
        inside.release()
        await run_in_threadpool(release.wait, 10)
        return PlainTextResponse("done")

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    limits = Limits(
        header_timeout=5, body_timeout=5, idle_timeout=5, max_body_bytes=1024, max_requests=2
    )
    app = Starlette(routes=[Route("/busy", busy), Route("/health", health)])
    server = AsgiServer.start(
        GuardedApp(app, limits, health_paths=frozenset({"/health"})), "127.0.0.1", 0, "test"
    )
    base = f"http://127.0.0.1:{server.port}"
    answers: list[int] = []
    holders = [
        threading.Thread(target=lambda: answers.append(httpx.get(f"{base}/busy").status_code))
        for _ in range(2)
    ]
    try:
        for holder in holders:
            holder.start()
        assert inside.acquire(timeout=5) and inside.acquire(timeout=5)
        refused = httpx.get(f"{base}/busy", timeout=2)
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "request slots" in refused.json()["error"]
        assert httpx.get(f"{base}/health", timeout=2).status_code == 200
    finally:
        release.set()
        for holder in holders:
            holder.join(5)
        server.stop()
    assert answers == [200, 200]
