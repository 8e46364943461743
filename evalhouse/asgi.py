"""Running an ASGI app (OTLP/HTTP receiver, API) on its own thread inside one process, with
listener limits that no stalled, slow or hostile client can use to starve the others.

uvicorn alone has no header or body deadline and counts *open connections* against
``limit_concurrency``: 257 connections that each sent half a request made every request on the
port, health included, a 503. Here the two halves of that are split:

- **Connections** are cheap and bounded in time, not in number: a connection must deliver a
  request's headers within ``header_timeout`` and its body within ``body_timeout`` of the
  headers, or it is answered 408 and closed; a kept-alive connection idle for ``idle_timeout``
  is closed (:class:`_DeadlineH11`, a subclass of uvicorn's HTTP/1.1 protocol).
- **Request slots** bound the work and memory of requests being handled: a request takes one
  only once it has arrived whole, so a half-sent request never holds one; ``max_body_bytes``
  caps every body (413) and health paths never need a slot (:class:`GuardedApp`).

>>> limits = Limits(header_timeout=10, body_timeout=60, idle_timeout=30, max_body_bytes=2**24)
>>> server = AsgiServer.start(GuardedApp(app, limits), "127.0.0.1", 0, "API")  # doctest: +SKIP
>>> server.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from starlette.datastructures import Headers
    from starlette.responses import Response
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from evalhouse.config import Settings

__all__ = ["AsgiServer", "GuardedApp", "Limits", "bind"]

logger = logging.getLogger(__name__)

# How long ``stop()`` lets requests in progress finish before uvicorn cancels them. Then the
# server stops waiting even for a handler stuck in a thread (a runaway query): ``serve`` must
# stop within 10 s of SIGTERM, and stops the API, the OTLP/gRPC server (2 s grace), the
# OTLP/HTTP server and the writer (up to 5 s draining the log) one after the other.
GRACEFUL_SHUTDOWN_SECONDS = 2
# Retry-After on a 503 for full request slots: slots free as fast as requests finish.
SLOTS_RETRY_AFTER_SECONDS = 1

ErrorReply = Callable[["Headers", int, str], "Response"]
"""Builds an error response in the app's own format from (request headers, status, message)."""


def bind(host: str, port: int, what: str) -> socket.socket:
    """Bind a listening socket now, so 'port in use' is one clear error at start-up."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}; "
            "stop whatever uses that port or choose another one"
        ) from exc
    sock.listen(1024)
    sock.set_inheritable(True)
    return sock


@dataclass(frozen=True)
class Limits:
    """What one HTTP client may hold, and for how long (seconds, bytes, requests).

    >>> Limits.from_settings(load_settings(), max_body_bytes=1024).max_body_bytes
    1024
    """

    header_timeout: float
    body_timeout: float
    idle_timeout: int
    max_body_bytes: int
    # Requests being handled at once (each may hold a body of up to max_body_bytes); beyond
    # this a request is answered 503 with Retry-After. The figure uvicorn's limit had before.
    max_requests: int = 256

    @classmethod
    def from_settings(cls, settings: Settings, *, max_body_bytes: int) -> Limits:
        return cls(
            header_timeout=settings.http_header_timeout_seconds,
            body_timeout=settings.http_body_timeout_seconds,
            idle_timeout=settings.http_idle_timeout_seconds,
            max_body_bytes=max_body_bytes,
        )


def json_error(headers: Headers, status: int, message: str) -> Response:
    """The default error body: ``{"error": "<what went wrong and what to do>"}``."""
    from starlette.responses import JSONResponse

    return JSONResponse({"error": message}, status)


class GuardedApp:
    """An ASGI app with the limits it is served under; :meth:`AsgiServer.start` serves only these.

    Per request: a declared body over ``max_body_bytes`` is answered 413 before the app runs, a
    streamed one as soon as it crosses the limit; a request takes one of ``max_requests`` slots
    once its body is complete (at once when it has none) and 503 when none is free; requests
    to ``health_paths`` bypass slots, so probes are answered however busy the server is.
    ``error`` formats those answers like the app's own errors; ``too_large_advice`` ends the 413
    message (what the client should do, which setting raises the limit).
    """

    def __init__(
        self,
        app: ASGIApp,
        limits: Limits,
        *,
        health_paths: frozenset[str] = frozenset(),
        error: ErrorReply = json_error,
        too_large_advice: str = "send less per request",
    ) -> None:
        self.app = app
        self.limits = limits
        self.health_paths = health_paths
        self.error = error
        self.too_large_advice = too_large_advice
        # One server runs one event loop: a plain counter needs no lock.
        self.in_progress = 0
        self._warned_full = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.health_paths:
            await self.app(scope, receive, send)
            return
        await _Exchange(self, scope, receive, send).run()

    def take_slot(self) -> bool:
        if self.in_progress >= self.limits.max_requests:
            if not self._warned_full:
                self._warned_full = True
                logger.warning(
                    "all %d request slots are busy: answering 503 until one frees",
                    self.limits.max_requests,
                )
            return False
        self.in_progress += 1
        return True

    def release_slot(self) -> None:
        self.in_progress -= 1
        self._warned_full = False


class _Exchange:
    """One request through a :class:`GuardedApp`: counts its body, takes and frees its slot."""

    def __init__(self, guard: GuardedApp, scope: Scope, receive: Receive, send: Send) -> None:
        from starlette.datastructures import Headers

        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        self.headers = Headers(scope=scope)
        self.body_complete = not (
            self.headers.get("transfer-encoding") or self.headers.get("content-length", "0") != "0"
        )
        self.received = 0
        self.holds_slot = False
        self.response_started = False
        # Set once the guard answered for the app: the app then sees a disconnect and whatever
        # it still sends is dropped.
        self.answered = False

    async def run(self) -> None:
        from starlette.requests import ClientDisconnect

        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.guard.limits.max_body_bytes:
            await self._too_large(f"request body of {int(declared)} bytes")
            return
        if self.body_complete and not await self._take_slot():
            return
        try:
            await self.guard.app(self.scope, self.receive, self.send)
        except ClientDisconnect:
            # The client left, or the guard answered mid-body: there is nobody to tell.
            logger.debug("request %s %s ended: client gone", self.scope["method"], self.path)
        finally:
            if self.holds_slot:
                self.guard.release_slot()

    @property
    def path(self) -> str:
        path: str = self.scope["path"]
        return path

    async def receive(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        message = await self._receive()
        if message["type"] != "http.request" or self.body_complete:
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.guard.limits.max_body_bytes:
            await self._too_large("request body")
            return {"type": "http.disconnect"}
        if not message.get("more_body", False):
            self.body_complete = True
            if not await self._take_slot():
                return {"type": "http.disconnect"}
        return message

    async def send(self, message: Message) -> None:
        if self.answered:
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)

    async def _take_slot(self) -> bool:
        if self.guard.take_slot():
            self.holds_slot = True
            return True
        limit = self.guard.limits.max_requests
        await self._answer(
            503,
            f"server busy: all {limit} request slots are in use; retry in "
            f"{SLOTS_RETRY_AFTER_SECONDS} s",
            {"Retry-After": str(SLOTS_RETRY_AFTER_SECONDS)},
        )
        return False

    async def _too_large(self, what: str) -> None:
        limit = self.guard.limits.max_body_bytes
        logger.debug("refused %s %s: body over %d bytes", self.scope["method"], self.path, limit)
        # The rest of the body is never read, so the connection cannot carry another request.
        await self._answer(
            413,
            f"{what} is larger than this server's limit of {limit} bytes; "
            f"{self.guard.too_large_advice}",
            {"Connection": "close"},
        )

    async def _answer(self, status: int, message: str, headers: dict[str, str]) -> None:
        if not self.response_started:
            response = self.guard.error(self.headers, status, message)
            response.headers.update(headers)
            await response(self.scope, self._receive, self._send)
        self.answered = True


def _raw_response(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response that closes the connection, written below the app."""
    body = f"{message}\n".encode()
    head = (
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


Phase = Literal["headers", "body"]


def _protocol(limits: Limits) -> type[asyncio.Protocol]:
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class _DeadlineH11(H11Protocol):
        """uvicorn's HTTP/1.1 protocol plus the two deadlines it lacks.

        ``headers``: from the connection's start, or from the first byte of a later request on a
        kept-alive connection, to the end of the request's headers. ``body``: from the end of
        the headers to the end of the body, whether or not the app reads it (an app that
        answered 401 without reading must not let the client trickle bytes forever). Each is a
        total, not a gap between reads, so sending a byte now and then does not extend it.
        """

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._phase: Phase | None = None
            self._deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._watch()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            self._arm(None)
            super().connection_lost(exc)

        def shutdown(self) -> None:
            # A request still waiting for its body has done no work yet: at shutdown it is
            # refused (the client retries) instead of holding the whole grace period open, as
            # every half-sent request would.
            if self._phase == "body" and self.cycle is not None and not self.cycle.response_started:
                self.cycle.disconnected = True
                self.transport.write(_raw_response(503, "server shutting down; retry shortly"))
                self.transport.close()
                return
            super().shutdown()

        def _watch(self) -> None:
            import h11

            state = self.conn.their_state
            phase: Phase | None = None
            if state is h11.SEND_BODY:
                phase = "body"
            elif state is h11.IDLE and (self.cycle is None or self.conn.trailing_data[0]):
                # A new connection, or bytes of a next request: after a response with nothing
                # buffered, uvicorn's keep-alive (idle) timer is the one that runs.
                phase = "headers"
            self._arm(phase)

        def _arm(self, phase: Phase | None) -> None:
            if phase == self._phase:
                return
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._phase = phase
            if phase is not None:
                seconds = limits.header_timeout if phase == "headers" else limits.body_timeout
                self._deadline = self.loop.call_later(seconds, self._expired, phase)

        def _expired(self, phase: Phase) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if phase == "headers":
                message = (
                    f"request headers not received within {limits.header_timeout:g} s "
                    "(http_header_timeout_seconds); send each request without pauses"
                )
                # A connection that sent nothing at all is closed without a word, like an idle one.
                say = bool(self.conn.trailing_data[0])
            else:
                message = (
                    f"request body not received within {limits.body_timeout:g} s of its "
                    "headers (http_body_timeout_seconds); send the body without pauses or "
                    "raise that setting"
                )
                say = self.cycle is not None and not self.cycle.response_started
            logger.debug("closing a connection from %s: %s", self.client, message)
            if say:
                if self.cycle is not None:
                    # Whatever the app still sends has nowhere to go once this is written.
                    self.cycle.disconnected = True
                self.transport.write(_raw_response(408, message))
            self.transport.close()

    return _DeadlineH11


@dataclass
class AsgiServer:
    server: Any
    thread: threading.Thread
    port: int
    shutdown_grace: int = GRACEFUL_SHUTDOWN_SECONDS

    @classmethod
    def start(
        cls,
        app: GuardedApp,
        host: str,
        port: int,
        what: str,
        *,
        shutdown_grace: int = GRACEFUL_SHUTDOWN_SECONDS,
    ) -> AsgiServer:
        """Serve ``app`` on a thread; ``shutdown_grace``: seconds :meth:`stop` lets requests in
        progress finish."""
        import uvicorn

        sock = bind(host, port, what)
        limits = app.limits
        config = uvicorn.Config(
            app,
            http=_protocol(limits),
            log_level="warning",
            lifespan="off",
            access_log=False,
            # Slots are counted per request by GuardedApp: uvicorn's limit counts connections.
            limit_concurrency=None,
            timeout_keep_alive=limits.idle_timeout,
            timeout_graceful_shutdown=shutdown_grace,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"evalhouse-{what}", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise OSError(f"{what} server did not start on {host}:{port}")
        return cls(server, thread, sock.getsockname()[1], shutdown_grace)

    def stop(self) -> None:
        """Stop accepting, let requests in progress finish for a bounded time, then return.

        A handler stuck in a worker thread (a query that ignores cancellation) can keep the
        server's daemon thread alive; ``stop`` leaves it behind rather than wait for it.
        """
        self.server.should_exit = True
        # uvicorn notices should_exit within 0.1 s, then waits up to the grace period.
        waited = self.shutdown_grace + 1
        self.thread.join(timeout=waited)
        if self.thread.is_alive():
            logger.warning(
                "%s: a request handler still runs %d s after shutdown began; not waiting for it",
                self.thread.name,
                waited,
            )
