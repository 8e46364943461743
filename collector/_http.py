"""OTLP/HTTP receiver: ``POST /v1/traces``, ``/v1/logs`` and ``/v1/metrics`` (protobuf or
JSON, gzip), plus ``GET /metrics`` (Prometheus text) and ``GET /health``.

Responses follow https://opentelemetry.io/docs/specs/otlp/#otlphttp-response: the same
encoding as the request; errors carry a google.rpc.Status body; 429/503 carry Retry-After.
The listener limits (header/body deadlines, body cap = ``max_message_bytes``, request slots with
``/health`` exempt) are :mod:`evalhouse.asgi`'s, answered in that same Status format.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from evalhouse.asgi import GuardedApp, Limits
from evalhouse.auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.collector._grpc import RETRY_AFTER_SECONDS, export_response
from evalhouse.collector._ingest import Backlogged, Ingest, InvalidRequest
from evalhouse.config import Settings
from evalhouse.errors import EvalhouseError
from evalhouse.store import Signal

_PROTOBUF = "application/x-protobuf"
_JSON = "application/json"
_CONTENT_TYPES = {_PROTOBUF: _PROTOBUF, "application/protobuf": _PROTOBUF, _JSON: _JSON}


class _TooLarge(Exception):
    pass


def _status(
    code: int, message: str, content_type: str, http_status: int, **headers: str
) -> Response:
    if content_type == _JSON:
        return JSONResponse({"code": code, "message": message}, http_status, headers=headers)
    body = status_pb2.Status(code=code, message=message).SerializeToString()
    return Response(body, http_status, media_type=_PROTOBUF, headers=headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, decompressed; at most ``limit`` bytes either way (the wire size is
    capped before the route runs, by :class:`~evalhouse.asgi.GuardedApp`)."""
    body = await request.body()
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidRequest(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    return _inflate(body, encoding, limit)


def _inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Every gzip/zlib member of ``body`` (RFC 1952 allows several, one after another).

    A member must reach its end-of-stream marker: zlib returns whatever a cut-short stream
    decodes to, and that prefix used to be stored as if it were the request.
    """
    members = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
        try:
            data = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise InvalidRequest(f"body is not valid {encoding} data ({exc})") from exc
        size += len(data)
        if size > limit or inflater.unconsumed_tail:
            raise _TooLarge
        if not inflater.eof:
            raise InvalidRequest(
                f"{encoding} body is truncated: the compressed stream ends before its end "
                "marker; send the whole compressed body"
            )
        members.append(data)
        rest = inflater.unused_data
        if not rest:
            return b"".join(members)


def _error_reply(headers: Headers, http_status: int, message: str) -> Response:
    """The listener's own refusals (413 body too large, 503 slots busy) as OTLP errors."""
    raw_type = headers.get("content-type", "").split(";")[0].strip().lower()
    code = code_pb2.UNAVAILABLE if http_status == 503 else code_pb2.INVALID_ARGUMENT
    return _status(code, message, _CONTENT_TYPES.get(raw_type, _JSON), http_status)


def otlp_http_app(ingest: Ingest, keys: ApiKeys, settings: Settings) -> GuardedApp:
    max_message_bytes = settings.max_message_bytes

    async def export(request: Request, signal: Signal) -> Response:
        raw_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        content_type = _CONTENT_TYPES.get(raw_type)
        reply_type = content_type or _JSON
        if not keys.allows(request.headers):
            ingest.metrics.add("unauthenticated_requests")
            return _status(code_pb2.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE, reply_type, 401)
        if content_type is None:
            message = (
                f"unsupported Content-Type {raw_type!r}; "
                "send application/x-protobuf or application/json"
            )
            return _status(code_pb2.INVALID_ARGUMENT, message, reply_type, 415)
        try:
            body = await _read_body(request, max_message_bytes)
            outcome = await run_in_threadpool(
                lambda: ingest.export(signal, body, json=content_type == _JSON)
            )
        except _TooLarge:
            message = (
                f"body is larger than {max_message_bytes} bytes once decompressed; "
                "send smaller batches"
            )
            return _status(code_pb2.INVALID_ARGUMENT, message, reply_type, 413)
        except InvalidRequest as exc:
            return _status(code_pb2.INVALID_ARGUMENT, str(exc), reply_type, 400)
        except Backlogged as exc:
            message = f"spool full ({exc}); retry in {RETRY_AFTER_SECONDS}s"
            return _status(
                code_pb2.RESOURCE_EXHAUSTED,
                message,
                reply_type,
                429,
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        except (EvalhouseError, OSError) as exc:
            return _status(
                code_pb2.UNAVAILABLE,
                f"could not store: {exc}",
                reply_type,
                503,
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        response: Any = export_response(signal, outcome.rejected, outcome.message)
        if content_type == _JSON:
            return Response(json.dumps(json_format.MessageToDict(response)), 200, media_type=_JSON)
        return Response(response.SerializeToString(), 200, media_type=_PROTOBUF)

    async def traces(request: Request) -> Response:
        return await export(request, "traces")

    async def logs(request: Request) -> Response:
        return await export(request, "logs")

    async def metric_points(request: Request) -> Response:
        return await export(request, "metrics")

    async def metrics(request: Request) -> Response:
        if not keys.allows(request.headers):
            return PlainTextResponse(UNAUTHENTICATED_MESSAGE + "\n", 401)
        return PlainTextResponse(
            ingest.metrics.prometheus(), media_type="text/plain; version=0.0.4"
        )

    async def healthcheck(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app = Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/logs", logs, methods=["POST"]),
            Route("/v1/metrics", metric_points, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", healthcheck, methods=["GET"]),
        ]
    )
    return GuardedApp(
        app,
        Limits.from_settings(settings, max_body_bytes=max_message_bytes),
        health_paths=frozenset({"/health"}),
        error=_error_reply,
        too_large_advice="send smaller batches (a smaller max export batch size in the "
        "exporter), or raise EVALHOUSE_MAX_MESSAGE_BYTES",
    )
