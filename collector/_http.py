"""OTLP/HTTP receiver: ``POST /v1/traces`` and ``/v1/logs`` (protobuf or JSON, gzip), plus
``GET /metrics`` (Prometheus text) and ``GET /health``.

Responses follow https://opentelemetry.io/docs/specs/otlp/#otlphttp-response: the same
encoding as the request; errors carry a google.rpc.Status body; 429/503 carry Retry-After.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.rpc import code_pb2, status_pb2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from evalhouse.collector._auth import UNAUTHENTICATED_MESSAGE, ApiKeys
from evalhouse.collector._grpc import RETRY_AFTER_SECONDS, export_response
from evalhouse.collector._ingest import Backlogged, Ingest, InvalidRequest
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
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidRequest(f"unsupported Content-Encoding {encoding!r}; use gzip or none")
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidRequest(f"body is not valid {encoding} data ({exc})") from exc
    if len(data) > limit or inflater.unconsumed_tail:
        raise _TooLarge
    return data


def otlp_http_app(ingest: Ingest, keys: ApiKeys, max_message_bytes: int) -> Starlette:
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
            message = f"body is larger than {max_message_bytes} bytes; send smaller batches"
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

    async def metrics(request: Request) -> Response:
        if not keys.allows(request.headers):
            return PlainTextResponse(UNAUTHENTICATED_MESSAGE + "\n", 401)
        return PlainTextResponse(
            ingest.metrics.prometheus(), media_type="text/plain; version=0.0.4"
        )

    async def healthcheck(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/traces", traces, methods=["POST"]),
            Route("/v1/logs", logs, methods=["POST"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/health", healthcheck, methods=["GET"]),
        ]
    )
