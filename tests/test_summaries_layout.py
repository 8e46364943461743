"""Migrations 15 and 16: ``trace_summaries`` rebuilt in 1,024-row granules, on a store that
already holds summaries (``evalhouse/store/_summaries_layout.py``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from online_helpers import summarize_all
from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.errors import QueryError
from evalhouse.explorer import list_traces
from evalhouse.explorer._params import TracesRequest
from evalhouse.store import (
    MIGRATIONS,
    TRACE_COLUMNS,
    OtlpSink,
    Store,
    Topology,
    migrate,
)
from evalhouse.store import _migrations as migrations

_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "session.id": "s-1",
    "user.id": "u-1",
    "input.value": "Where is my order 4242?",
    "output.value": "It ships tomorrow.",
}


def _send(store: Store, *spans: dict[str, Any]) -> None:
    payload = trace_request(list(spans), service="shop").SerializeToString()
    OtlpSink(store).insert_otlp("traces", _length_delimited([payload]), uuid.uuid4().hex)


def _conversation(store: Store) -> bytes:
    """Two traces, one failing, one re-summarized after a late span (a tombstone and a second
    version in the table): what the rebuilt table must keep."""
    grows, fails = uuid.uuid4().bytes, uuid.uuid4().bytes
    root = span("agent", _CHAT, trace_id=grows)
    _send(store, root, span("agent", {"error.type": "Timeout"}, trace_id=fails))
    summarize_all(store)
    _send(store, span("chat", _CHAT, trace_id=grows, parent_span_id=root["span_id"]))
    summarize_all(store)
    return grows


def _migrated_to_14(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(migrations, "MIGRATIONS", MIGRATIONS[:14])
        migrate(store)


def _page(store: Store) -> list[dict[str, Any]]:
    request = TracesRequest.from_params({"kind": "all", "since": "1d", "limit": "1000"})
    traces: list[dict[str, Any]] = list_traces(store, request)["traces"]
    return traces


def _shown_as_stored(store: Store) -> None:
    """Every trace row the API shows holds what the ``traces`` view holds for it."""
    columns = [c for c in TRACE_COLUMNS if not c.endswith("_time")]
    stored = {
        row["trace_id"]: row for row in store.select(f"SELECT {', '.join(columns)} FROM traces", {})
    }
    page = _page(store)
    assert {t["trace_id"] for t in page} == set(stored)
    for trace in page:
        assert {c: trace[c] for c in columns} == stored[trace["trace_id"]]


def _tables(store: Store) -> set[str]:
    return {
        r[0]
        for r in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }


def test_the_rebuilt_table_keeps_every_row_and_the_view_fills_it_once(
    bare_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bare_store
    _migrated_to_14(store, monkeypatch)
    grows = _conversation(store)
    kept = store.query("SELECT count() FROM trace_summaries FINAL")[0][0]
    view = store.query("SELECT * FROM traces ORDER BY trace_id")
    assert sorted(r[0] for r in store.query("SELECT llm_calls FROM traces")) == [0, 1]

    assert migrate(store) == [15, 16]

    assert store.query("SELECT * FROM traces ORDER BY trace_id") == view
    _shown_as_stored(store)
    assert store.query("SELECT count() FROM trace_summaries FINAL") == [(kept,)]
    ddl = store.query("SHOW CREATE TABLE trace_summaries")[0][0]
    assert "index_granularity = 1024" in ddl
    assert "idx_kind" not in ddl
    tables = _tables(store)
    assert {"trace_summaries_fill_mv", "trace_summaries_old"} <= tables
    assert not tables & {"trace_summaries_mv", "trace_summaries_next_mv", "trace_summaries_next"}
    assert store.query("SELECT count() FROM trace_summaries_old") == [(0,)]

    # New summaries reach the rebuilt table through one view: one row per version.
    fresh = uuid.uuid4().bytes
    _send(store, span("agent", _CHAT, trace_id=fresh))
    summarize_all(store)
    assert store.query(
        "SELECT count() FROM trace_summaries WHERE trace_id = {id:String}", {"id": fresh.hex()}
    ) == [(1,)]
    shown = {t["trace_id"]: t for t in _page(store)}
    assert shown[fresh.hex()]["session_id"] == "s-1"
    assert shown[fresh.hex()]["input_tokens"] == 1200
    assert shown[grows.hex()]["span_count"] == 2


def test_a_rerun_after_a_crash_past_the_rename_leaves_the_rebuilt_table_in_place(
    bare_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = bare_store
    _migrated_to_14(store, monkeypatch)
    _conversation(store)
    view = store.query("SELECT * FROM traces ORDER BY trace_id")
    # A crash after migration 15's statements, before the ledger recorded it.
    for statement in MIGRATIONS[14].statements(Topology()):
        store.command(statement)

    assert migrate(store) == [15, 16]

    assert "index_granularity = 1024" in store.query("SHOW CREATE TABLE trace_summaries")[0][0]
    assert store.query("SELECT * FROM traces ORDER BY trace_id") == view
    page = _page(store)
    # A second process that passed the check while the first one was copying: its rename
    # fails on the table migration 16 keeps, and the rebuilt table stays where it is.
    with pytest.raises(QueryError, match="trace_summaries_old"):
        for statement in MIGRATIONS[14].statements(Topology()):
            store.command(statement)
    assert "index_granularity = 1024" in store.query("SHOW CREATE TABLE trace_summaries")[0][0]
    assert _page(store) == page
