"""OTLP/gRPC receiver: TraceService/Export and LogsService/Export, plus gRPC health.

Requests reach the handler as raw bytes (no deserializer): validation parses them once, with
the classes it needs. Compression (gzip) is handled by gRPC itself.
"""

from __future__ import annotations

import logging
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from evalhouse.collector._auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.collector._ingest import Backlogged, Ingest, InvalidRequest
from evalhouse.errors import EvalhouseError
from evalhouse.store import Signal

logger = logging.getLogger(__name__)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
_METHODS: dict[str, Signal] = {
    f"/{TRACE_SERVICE}/Export": "traces",
    f"/{LOGS_SERVICE}/Export": "logs",
}
RETRY_AFTER_SECONDS = 2


def export_response(signal: Signal, rejected: int, message: str) -> Any:
    if signal == "traces":
        response: Any = ExportTraceServiceResponse()
        if rejected or message:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = message
    else:
        response = ExportLogsServiceResponse()
        if rejected or message:
            response.partial_success.rejected_log_records = rejected
            response.partial_success.error_message = message
    return response


class _Export(grpc.GenericRpcHandler):
    def __init__(self, ingest: Ingest, keys: ApiKeys) -> None:
        self.ingest = ingest
        self.keys = keys

    def service(self, handler_call_details: Any) -> Any:
        signal = _METHODS.get(handler_call_details.method)
        if signal is None:
            return None
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: self._export(signal, request, context)
        )

    def _export(self, signal: Signal, request: bytes, context: Any) -> bytes:
        metadata = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        if not self.keys.allows(metadata):
            self.ingest.metrics.add("unauthenticated_requests")
            context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        try:
            outcome = self.ingest.export(signal, request)
        except InvalidRequest as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Backlogged as exc:
            _abort_with_retry(context, grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        except (EvalhouseError, OSError) as exc:
            logger.error("could not store a %s request: %s", signal, exc)
            _abort_with_retry(context, grpc.StatusCode.UNAVAILABLE, f"could not store: {exc}")
        data: bytes = export_response(signal, outcome.rejected, outcome.message).SerializeToString()
        return data


def _abort_with_retry(context: Any, code: grpc.StatusCode, message: str) -> None:
    """Answer with google.rpc.RetryInfo, which makes OTLP exporters retry after a delay."""
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
    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
    context.abort(code, status.message)


def start_grpc(
    ingest: Ingest, keys: ApiKeys, host: str, port: int, max_message_bytes: int
) -> tuple[grpc.Server, int]:
    """Start the receiver; returns the server and the port it bound (``port`` may be 0)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="evalhouse-grpc"),
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", 4 * 1024 * 1024),
        ],
        # Beyond this many requests in progress gRPC answers RESOURCE_EXHAUSTED itself,
        # which bounds the memory held by request bodies.
        maximum_concurrent_rpcs=64,
    )
    server.add_generic_rpc_handlers((_Export(ingest, keys),))
    checker = health.HealthServicer()
    for name in ("", TRACE_SERVICE, LOGS_SERVICE):
        checker.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError as exc:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot listen for OTLP/gRPC on {host}:{port}: port in use")
    server.start()
    return server, bound
