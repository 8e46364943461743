"""OTLP/gRPC receiver: Trace-, Logs- and MetricsService/Export, plus gRPC health Check.

Requests reach the handler as raw bytes (no deserializer): validation parses them once, with
the classes it needs. Compression (gzip) is handled by gRPC itself.

**Why asyncio, and every method stream-unary.** gRPC calls a unary handler only once the
request message has arrived, and the sync server waits for it on a worker thread: eight calls
that sent headers and never a message blocked all eight workers, and 64 filled every slot.
Here the server runs on an event loop of its own thread and every method
is served as stream-unary (on the wire a unary call is a stream of one message, so unary
clients such as the OTel exporters see no difference). The handler therefore starts as soon as
the headers are in: it checks the API key from the call metadata before reading anything, and
waits for the one message for at most ``grpc_message_timeout_seconds`` (DEADLINE_EXCEEDED
after that). A waiting call costs a coroutine, not a thread, so stalled calls cannot take the
slots that do work: only calls holding their message count against ``MAX_EXPORTS_IN_FLIGHT``
(RESOURCE_EXHAUSTED with RetryInfo beyond it), and the export itself runs on
``EXPORT_THREADS`` worker threads, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from evalhouse.auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.collector._ingest import Backlogged, Ingest, InvalidRequest
from evalhouse.config import Settings
from evalhouse.errors import EvalhouseError
from evalhouse.store import Signal

logger = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
METRICS_SERVICE = "opentelemetry.proto.collector.metrics.v1.MetricsService"
_METHODS: dict[str, Signal] = {
    f"/{TRACE_SERVICE}/Export": "traces",
    f"/{LOGS_SERVICE}/Export": "logs",
    f"/{METRICS_SERVICE}/Export": "metrics",
}
# Each signal's response, and the partial-success field that counts its rejected items.
_RESPONSES: dict[Signal, tuple[Any, str]] = {
    "traces": (ExportTraceServiceResponse, "rejected_spans"),
    "logs": (ExportLogsServiceResponse, "rejected_log_records"),
    "metrics": (ExportMetricsServiceResponse, "rejected_data_points"),
}
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
# Health answers SERVING for the server ("") and for every service in the method table.
_HEALTHY_SERVICES = frozenset({""} | {method.split("/")[1] for method in _METHODS})
RETRY_AFTER_SECONDS = 2

# Threads running exports (validation, WAL write and fsync), as the sync server had.
EXPORT_THREADS = 8
# Calls holding their request message, running or waiting for a thread: this bounds the memory
# held by request bodies (64 x max_message_bytes), as maximum_concurrent_rpcs=64 did.
MAX_EXPORTS_IN_FLIGHT = 64
# Open calls of any kind, most of them (under attack) waiting for a message that never comes:
# each costs a coroutine and gRPC's call state, ~23 KiB (4000 stalled calls: +94 MiB RSS), for
# at most the message timeout.
MAX_OPEN_CALLS = 4096
# HTTP/2 streams one connection may have open (SETTINGS_MAX_CONCURRENT_STREAMS); an OTLP
# exporter has one or a few, so a single connection cannot open thousands of stalled calls.
MAX_STREAMS_PER_CONNECTION = 100


def export_response(signal: Signal, rejected: int, message: str) -> Any:
    response_class, rejected_field = _RESPONSES[signal]
    response = response_class()
    if rejected or message:
        setattr(response.partial_success, rejected_field, rejected)
        response.partial_success.error_message = message
    return response


Behavior = Callable[[Any, Any], Awaitable[bytes]]


class _Handlers(grpc.GenericRpcHandler):
    def __init__(
        self, ingest: Ingest, keys: ApiKeys, message_timeout: float, pool: futures.Executor
    ) -> None:
        self.ingest = ingest
        self.keys = keys
        self.message_timeout = message_timeout
        self.pool = pool
        # Only touched on the server's event loop: no lock.
        self.in_flight = 0

    def service(self, handler_call_details: Any) -> Any:
        method = handler_call_details.method
        behavior: Behavior
        if method in _METHODS:
            behavior = functools.partial(self._export, _METHODS[method])
        elif method == HEALTH_CHECK:
            behavior = self._health
        else:
            return None
        return grpc.stream_unary_rpc_method_handler(behavior)

    async def _message(self, context: Any) -> bytes:
        """The call's one request message, or the call ends (no message in time, or none)."""
        try:
            async with asyncio.timeout(self.message_timeout):
                message = await context.read()
        except TimeoutError:
            logger.debug("dropped a gRPC call that sent no message in %gs", self.message_timeout)
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no request message within {self.message_timeout:g} s of the call's start "
                "(grpc_message_timeout_seconds); send the message with the call",
            )
        if message is grpc.aio.EOF:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the call ended without a request message; send exactly one per call",
            )
        data: bytes = message
        return data

    async def _export(self, signal: Signal, requests: Any, context: Any) -> bytes:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if not self.keys.allows(metadata):
            self.ingest.metrics.add("unauthenticated_requests")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        request = await self._message(context)
        if self.in_flight >= MAX_EXPORTS_IN_FLIGHT:
            await _abort_with_retry(
                context,
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{MAX_EXPORTS_IN_FLIGHT} export requests are already being stored",
            )
        self.in_flight += 1
        try:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self.pool, self.ingest.export, signal, request)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Backlogged as exc:
            await _abort_with_retry(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except (EvalhouseError, OSError) as exc:
            logger.error("could not store a %s request: %s", signal, exc)
            await _abort_with_retry(context, grpc.StatusCode.UNAVAILABLE, f"could not store: {exc}")
        finally:
            self.in_flight -= 1
        data: bytes = export_response(signal, outcome.rejected, outcome.message).SerializeToString()
        return data

    async def _health(self, requests: Any, context: Any) -> bytes:
        """grpc.health.v1 Check, for probes: no key. Watch is not offered, since a Watch call
        stays open for as long as the client likes; probes poll Check."""
        try:
            service = health_pb2.HealthCheckRequest.FromString(await self._message(context)).service
        except DecodeError:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a HealthCheckRequest")
        if service not in _HEALTHY_SERVICES:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {service!r}")
        response = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        data: bytes = response.SerializeToString()
        return data


async def _abort_with_retry(context: Any, code: grpc.StatusCode, message: str) -> None:
    """Answer with google.rpc.RetryInfo, which makes OTLP exporters retry after a delay.

    It travels in the status details (grpc-status-details-bin, which the Go and Java exporters
    read) and on its own (google.rpc.retryinfo-bin, which the Python exporter reads).
    """
    retry = error_details_pb2.RetryInfo(
        retry_delay=duration_pb2.Duration(seconds=RETRY_AFTER_SECONDS)
    )
    status = status_pb2.Status(
        code=code_pb2.RESOURCE_EXHAUSTED
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED
        else code_pb2.UNAVAILABLE,
        message=f"{message}; retry in {RETRY_AFTER_SECONDS}s",
    )
    status.details.add().Pack(retry)
    context.set_trailing_metadata(
        (
            ("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", retry.SerializeToString()),
        )
    )
    await context.abort(code, status.message)


class GrpcReceiver:
    """The gRPC server on an event loop of its own thread; ``stop`` works like grpc.Server's.

    >>> receiver, port = start_grpc(ingest, keys, settings)  # doctest: +SKIP
    >>> receiver.stop(grace=2).wait()  # doctest: +SKIP
    """

    def __init__(self, ingest: Ingest, keys: ApiKeys, settings: Settings) -> None:
        self.settings = settings
        self._pool = futures.ThreadPoolExecutor(EXPORT_THREADS, thread_name_prefix="evalhouse-grpc")
        self._handlers = _Handlers(ingest, keys, settings.grpc_message_timeout_seconds, self._pool)
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._grace: float | None = None
        self._error: BaseException | None = None
        self.port = 0

    def start(self) -> int:
        thread = threading.Thread(target=self._run, name="evalhouse-grpc-server", daemon=True)
        thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self.port

    def stop(self, grace: float | None = None) -> threading.Event:
        """Refuse new calls, give those in progress ``grace`` seconds, then end them; the event
        is set once the server and its export threads have stopped."""
        self._grace = grace
        if self._loop is not None and self._stop_requested is not None:
            # RuntimeError: the loop already ended, the server is stopped.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop_requested.set)
        return self._stopped

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
            else:
                logger.exception("the OTLP/gRPC server stopped on an error")
        finally:
            self._ready.set()
            # Exports already on a thread finish (each is one WAL write): the WAL closes next.
            self._pool.shutdown(wait=True)
            self._stopped.set()

    async def _serve(self) -> None:
        s = self.settings
        server = grpc.aio.server(
            handlers=[self._handlers],
            options=[
                ("grpc.max_receive_message_length", s.max_message_bytes),
                ("grpc.max_send_message_length", 4 * 1024 * 1024),
                ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
                # A connection that never completes the HTTP/2 preface is closed as an HTTP
                # one that never completes its headers is.
                ("grpc.server_handshake_timeout_ms", int(s.http_header_timeout_seconds * 1000)),
            ],
            maximum_concurrent_rpcs=MAX_OPEN_CALLS,
        )
        address = f"{s.host}:{s.grpc_port}"
        advice = "stop whatever uses that port or choose another one"
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as exc:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: {exc}; {advice}") from exc
        if bound == 0:
            raise OSError(f"cannot listen for OTLP/gRPC on {address}: port in use; {advice}")
        await server.start()
        self.port = bound
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._ready.set()
        await self._stop_requested.wait()
        await server.stop(self._grace)


def start_grpc(ingest: Ingest, keys: ApiKeys, settings: Settings) -> tuple[GrpcReceiver, int]:
    """Start the receiver on ``settings.host``/``grpc_port``; returns it and the port it bound
    (``grpc_port`` may be 0)."""
    receiver = GrpcReceiver(ingest, keys, settings)
    return receiver, receiver.start()
