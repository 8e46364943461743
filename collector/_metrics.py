"""The collector's self-metrics: counters and gauges, in Prometheus text format and a log line."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_COUNTERS = {
    "received": "Spans, log records and metric data points received in export requests.",
    "accepted": "Items (spans, log records, data points) made durable in the write-ahead log.",
    "rejected": "Items (spans, log records, data points) rejected by validation.",
    "written": "Items (spans, log records, data points) inserted into ClickHouse.",
    "truncated_values": "Attribute values truncated to the size limit.",
    "utf8_repaired": "Strings whose invalid UTF-8 was replaced.",
    "duplicate_requests": "Retried requests recognised and not stored twice.",
    "invalid_requests": "Requests refused as undecodable.",
    "unauthenticated_requests": "Requests refused for a missing or wrong API key.",
    "throttled_requests": "Requests refused because the spool was full.",
    "insert_failures": "Failed ClickHouse inserts (retried).",
    "wal_failures": "Requests refused (retryable) because the write-ahead log could not write "
    "or fsync them: a full or failing disk.",
    "writer_errors": "Unexpected errors in writer threads (logged and retried).",
}


@dataclass
class Metrics:
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(_COUNTERS, 0))
    insert_seconds_sum: float = 0.0
    insert_count: int = 0
    last_insert_seconds: float = 0.0
    gauges: dict[str, Callable[[], float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, name: str, value: int = 1) -> None:
        with self._lock:
            self.counters[name] += value

    def observe_insert(self, seconds: float) -> None:
        with self._lock:
            self.insert_seconds_sum += seconds
            self.insert_count += 1
            self.last_insert_seconds = seconds

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            values: dict[str, float] = {k: float(v) for k, v in self.counters.items()}
            values["insert_seconds_sum"] = self.insert_seconds_sum
            values["insert_count"] = float(self.insert_count)
            values["last_insert_seconds"] = self.last_insert_seconds
        for name, read in self.gauges.items():
            values[name] = float(read())
        return values

    def prometheus(self) -> str:
        values = self.snapshot()
        lines = []
        for name, help_text in _COUNTERS.items():
            metric = f"evalhouse_collector_{name}_total"
            lines += [
                f"# HELP {metric} {help_text}",
                f"# TYPE {metric} counter",
                f"{metric} {int(values[name])}",
            ]
        lines += [
            "# HELP evalhouse_collector_insert_seconds Time spent in ClickHouse inserts.",
            "# TYPE evalhouse_collector_insert_seconds summary",
            f"evalhouse_collector_insert_seconds_sum {values['insert_seconds_sum']:.6f}",
            f"evalhouse_collector_insert_seconds_count {int(values['insert_count'])}",
        ]
        for name in self.gauges:
            metric = f"evalhouse_collector_{name}"
            lines += [f"# TYPE {metric} gauge", f"{metric} {values[name]:g}"]
        return "\n".join(lines) + "\n"

    def log_line(self) -> str:
        v = self.snapshot()
        return " ".join(f"{k}={v[k]:g}" for k in (*_COUNTERS, *self.gauges))
