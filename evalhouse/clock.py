"""Time as a seam: the evaluator asks a :class:`Clock`, so tests can move time instead of
waiting for it.

Daemons on several hosts must agree on time (leases, when a trace went quiet), so the clock
evalhouse runs on is the ClickHouse server's (:class:`ServerClock`), read once per cycle and
advanced by the local monotonic clock in between. A test passes a :class:`ManualClock` shared
by every worker it runs, and advances it: a lease that ends after 60 s ends when the test says.

>>> clock = ManualClock(now_ms=1_000)
>>> clock.advance(2.5)
>>> clock.now_ms(), clock.monotonic()
(3500, 2.5)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from evalhouse.store import Store

__all__ = ["Clock", "ManualClock", "ServerClock"]


class Clock(Protocol):
    """Agreed time in ms since the epoch (``now_ms``) and local elapsed seconds (``monotonic``)."""

    def now_ms(self) -> int: ...

    def monotonic(self) -> float: ...


class ServerClock:
    """The ClickHouse server's clock: what every evalhouse process of a deployment agrees on."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def now_ms(self) -> int:
        value: int = self.store.query("SELECT toUnixTimestamp64Milli(now64(3))")[0][0]
        return value

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to (:meth:`advance`): deterministic tests."""

    def __init__(self, now_ms: int | None = None) -> None:
        self._now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        self._elapsed = 0.0

    def now_ms(self) -> int:
        return self._now_ms + int(self._elapsed * 1000)

    def monotonic(self) -> float:
        return self._elapsed

    def advance(self, seconds: float) -> None:
        self._elapsed += seconds
