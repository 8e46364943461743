"""The trace summarizer's rescan: spans that became visible behind its cursor are found, and
only the traces they changed are read whole."""

from __future__ import annotations

import uuid
from typing import Any

from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.evaluators._summaries import Summarizer
from evalhouse.store import SHARDS, OtlpSink, Store


class _Recording:
    """The store, remembering the parameters of every query."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.queries: list[tuple[str, dict[str, Any]]] = []

    def query(self, sql: str, params: dict[str, Any] | None = None, **options: Any) -> Any:
        self.queries.append((sql, dict(params or {})))
        return self._store.query(sql, params, **options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _send(store: Store, *spans: dict[str, Any]) -> None:
    payload = trace_request(list(spans), service="shop").SerializeToString()
    OtlpSink(store).insert_otlp("traces", _length_delimited([payload]), uuid.uuid4().hex)


def _now_ms(store: Store) -> int:
    return int(store.query("SELECT toUnixTimestamp64Milli(now64(3))")[0][0])


def _span_counts(store: Store) -> dict[str, int]:
    rows = store.query("SELECT trace_id, span_count FROM trace_summaries FINAL")
    return {trace_id: count for trace_id, count in rows}


def test_a_rescan_reads_whole_only_the_traces_a_late_visible_span_changed(store: Store) -> None:
    grows, stays = uuid.uuid4().bytes, uuid.uuid4().bytes
    root = span("agent", trace_id=grows)
    _send(
        store,
        root,
        span("step", trace_id=grows, parent_span_id=root["span_id"]),
        span("agent", trace_id=stays),
    )
    # The first summarizer reads up to 30 s ahead of the spans' InsertedAt, so the span sent
    # next is stored behind its checkpoint: as a span that became visible late.
    first = Summarizer(store, quiet_ms=0, worker="first")
    assert first.run(range(SHARDS), _now_ms(store) + 30_000) == 2
    _send(store, span("late step", trace_id=grows, parent_span_id=root["span_id"]))

    recording = _Recording(store)
    # A summarizer taking over the shards rescans the margin behind their checkpoints.
    second = Summarizer(recording, quiet_ms=0, worker="second")  # type: ignore[arg-type]
    assert second.run(range(SHARDS), _now_ms(store) + 30_000) == 1
    assert _span_counts(store) == {grows.hex(): 3, stays.hex(): 1}
    read_whole = [params for sql, params in recording.queries if "groupArrayIf" in sql]
    assert read_whole == [{"ids": [grows.hex()]}]
