"""A small OpenAI-compatible HTTP server for tests: the real ``openai`` client talks to it.

It answers ``POST /v1/chat/completions`` (plain and ``stream=True`` with usage in the last
chunk) and ``POST /v1/embeddings`` with canned content and exact token usage, and records
every request body. Start it with :func:`fake_openai` (a context manager) or the
``fake_openai`` fixture::

    with fake_openai(reply=lambda body: "Paris") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="test")
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Usage:
    prompt_tokens: int = 11
    completion_tokens: int = 7
    cached_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass
class FakeOpenAI:
    """What the test controls: the reply, the usage, a delay, failures; what it sees."""

    reply: Callable[[dict[str, Any]], str] = lambda body: "ok"
    usage: Usage = field(default_factory=Usage)
    # Report usage counted from the request and the reply (4 characters a token, as
    # OpenAI's rule of thumb has it) instead of the fixed `usage`.
    count_tokens: bool = False
    delay_seconds: float = 0.0
    fail_with_status: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(body)

    def completion(self, body: dict[str, Any]) -> dict[str, Any]:
        content = self.reply(body)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "gpt-4o-mini") + "-2024-07-18",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": self._usage(body, content),
        }

    def _usage(self, body: dict[str, Any] | None = None, content: str = "") -> dict[str, Any]:
        usage = self.usage
        if self.count_tokens and body is not None:
            texts = [str(m.get("content") or "") for m in body.get("messages") or []]
            usage = Usage(
                prompt_tokens=sum(-(-len(text) // 4) for text in texts),
                completion_tokens=-(-len(content) // 4),
            )
        return {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        }

    def chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        full = self.completion(body)
        base = {key: full[key] for key in ("id", "created", "model")}
        base["object"] = "chat.completion.chunk"
        content = full["choices"][0]["message"]["content"]
        pieces = [content[i : i + 4] for i in range(0, len(content), 4)] or [""]
        for number, piece in enumerate(pieces):
            delta = {"content": piece} if number else {"role": "assistant", "content": piece}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        if (body.get("stream_options") or {}).get("include_usage"):
            yield {**base, "choices": [], "usage": self._usage(body, content)}

    def embeddings(self, body: dict[str, Any]) -> dict[str, Any]:
        inputs = body.get("input")
        items = inputs if isinstance(inputs, list) else [inputs]
        return {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                for i in range(len(items))
            ],
            "model": body.get("model", "text-embedding-3-small"),
            "usage": {
                "prompt_tokens": self.usage.prompt_tokens,
                "total_tokens": self.usage.prompt_tokens,
            },
        }


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Without this, TCP holds each small response back ~40 ms (Nagle + delayed ACK).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            fake.record(body)
            if fake.delay_seconds:
                time.sleep(fake.delay_seconds)
            if fake.fail_with_status is not None:
                error = {"message": "injected failure", "type": "server_error", "code": None}
                self._json(fake.fail_with_status, {"error": error})
                return
            if self.path.endswith("/chat/completions"):
                if body.get("stream"):
                    self._stream(body)
                else:
                    self._json(200, fake.completion(body))
            elif self.path.endswith("/embeddings"):
                self._json(200, fake.embeddings(body))
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def _stream(self, body: dict[str, Any]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for chunk in fake.chunks(body):
                self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # Judges call with concurrency 32 and more; the default backlog of 5 resets connections.
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away mid-call (a scorer cancelled at shutdown) is not an error
        # of the server; anything else is reported as usual.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@contextmanager
def fake_openai(**options: Any) -> Iterator[FakeOpenAI]:
    """Run a :class:`FakeOpenAI` on a free loopback port for the ``with`` block."""
    fake = FakeOpenAI(**options)
    server = _Server(("127.0.0.1", 0), _handler(fake))
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="fake-openai", daemon=True
    )
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
