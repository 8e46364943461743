"""A one-line progress bar on a terminal; silent when stderr is not a TTY (CI, notebooks, logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_WIDTH = 30
_REDRAW_SECONDS = 0.1


class Progress:
    """``advance()`` once per finished row; ``close()`` ends the line."""

    def __init__(
        self, total: int, label: str, enabled: bool | None = None, stream: TextIO | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self.stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self.total = total
        self.label = label
        self.done = 0
        self.errored = 0
        self._started = time.monotonic()
        self._drawn = 0.0

    def advance(self, errored: bool = False) -> None:
        self.done += 1
        self.errored += errored
        now = time.monotonic()
        if self.enabled and (now - self._drawn >= _REDRAW_SECONDS or self.done == self.total):
            self._drawn = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        filled = _WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (_WIDTH - filled)
        errors = f", {self.errored} errored" if self.errored else ""
        self.stream.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} rows{errors} "
            f"{now - self._started:.1f} s"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()
