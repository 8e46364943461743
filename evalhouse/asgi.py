"""Running an ASGI app (OTLP/HTTP receiver, API) on its own thread inside one process."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["AsgiServer", "bind"]


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


@dataclass
class AsgiServer:
    server: Any
    thread: threading.Thread
    port: int

    @classmethod
    def start(
        cls, app: Any, host: str, port: int, what: str, *, limit_concurrency: int = 256
    ) -> AsgiServer:
        import uvicorn

        sock = bind(host, port, what)
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            limit_concurrency=limit_concurrency,
            timeout_keep_alive=30,
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
        return cls(server, thread, sock.getsockname()[1])

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
