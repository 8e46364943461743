"""``evalhouse migrate`` upgrades a traces table that a stock OTel Collector created.

The DDL below is the OpenTelemetry Collector ClickHouse exporter's own (templates
``traces_table.sql``, ``traces_id_ts_lookup_table.sql`` and ``traces_id_ts_lookup_mv.sql`` in
exporter/clickhouseexporter/internal/sqltemplates of opentelemetry-collector-contrib, rendered
with the default engine, no cluster, no TTL), and rows are written with the exporter's own
INSERT column list, so the table looks exactly like one the Collector filled.

Migration 11 changed two expressions of migration 3; an install from before it (here: the
exporter's table migrated up to version 10) must end with the columns and values of a fresh one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from conftest import count
from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.store import MIGRATIONS, NORMALISED_COLUMNS, OtlpSink, Store, migrate
from evalhouse.store._migrations import ledger

EXPORTER_DDL = (
    """CREATE TABLE IF NOT EXISTS otel_traces (
    Timestamp DateTime64(9) CODEC(Delta(8), ZSTD(1)),
    TraceId String CODEC(ZSTD(1)),
    SpanId String CODEC(ZSTD(1)),
    ParentSpanId String CODEC(ZSTD(1)),
    TraceState String CODEC(ZSTD(1)),
    SpanName LowCardinality(String) CODEC(ZSTD(1)),
    SpanKind LowCardinality(String) CODEC(ZSTD(1)),
    ServiceName LowCardinality(String) CODEC(ZSTD(1)),
    ResourceAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    ScopeName String CODEC(ZSTD(1)),
    ScopeVersion String CODEC(ZSTD(1)),
    SpanAttributes Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    Duration UInt64 CODEC(T64, ZSTD(1)),
    StatusCode LowCardinality(String) CODEC(ZSTD(1)),
    StatusMessage String CODEC(ZSTD(1)),
    Events Nested (
        Timestamp DateTime64(9),
        Name LowCardinality(String),
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    Links Nested (
        TraceId String,
        SpanId String,
        TraceState String,
        Attributes Map(LowCardinality(String), String)
    ) CODEC(ZSTD(1)),
    ResourceAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), """
    """CAST(ResourceAttributes, 'Array(Tuple(String, String))')),
    SpanAttributeItems Array(String) ALIAS arrayMap(kv -> concat(kv.1, '=', kv.2), """
    """CAST(SpanAttributes, 'Array(Tuple(String, String))')),
    INDEX idx_trace_id TraceId TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_res_attr_key mapKeys(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_res_attr_value mapValues(ResourceAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_key mapKeys(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_span_attr_value mapValues(SpanAttributes) TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_duration Duration TYPE minmax GRANULARITY 1,
    INDEX idx_lower_span_name lower(SpanName) TYPE tokenbf_v1(32768, 3, 0) GRANULARITY 8
) ENGINE = MergeTree()
PARTITION BY toDate(Timestamp)
PRIMARY KEY (ServiceName, SpanName, toDateTime(Timestamp))
ORDER BY (ServiceName, SpanName, toDateTime(Timestamp), Timestamp)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
    """CREATE TABLE IF NOT EXISTS otel_traces_trace_id_ts (
    TraceId String CODEC(ZSTD(1)),
    Start SimpleAggregateFunction(min, DateTime) CODEC(ZSTD(1)),
    End SimpleAggregateFunction(max, DateTime) CODEC(ZSTD(1))
) ENGINE = MergeTree()
PARTITION BY toStartOfWeek(Start)
ORDER BY (TraceId)
SETTINGS index_granularity = 8192, ttl_only_drop_parts = 1""",
    """CREATE MATERIALIZED VIEW IF NOT EXISTS otel_traces_trace_id_ts_mv
TO otel_traces_trace_id_ts
AS SELECT
              TraceId,
              min(Timestamp) as Start,
              max(Timestamp) as End
   FROM otel_traces
   WHERE TraceId != ''
   GROUP BY TraceId""",
)

# The exporter's INSERT (traces_insert.sql), column for column.
EXPORTER_INSERT_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)

NORMALISED_TYPES = {
    "Purpose": "LowCardinality(String)",
    "ExperimentName": "String",
    "ExperimentId": "String",
    "RowId": "String",
    "Trial": "UInt32",
    "LlmProvider": "LowCardinality(String)",
    "LlmRequestModel": "LowCardinality(String)",
    "LlmResponseModel": "LowCardinality(String)",
    "LlmOperation": "LowCardinality(String)",
    "InputTokens": "UInt64",
    "OutputTokens": "UInt64",
    "CacheReadTokens": "UInt64",
    "CacheWriteTokens": "UInt64",
    "ReasoningTokens": "UInt64",
    "ProvidedCostUsd": "Nullable(Float64)",
}

# Spans as a stock Collector receives them from instrumented apps (attribute values already
# rendered to strings by the exporter).
OPENAI_CHAT = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o-mini",
    "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
    "gen_ai.usage.input_tokens": "1500",
    "gen_ai.usage.output_tokens": "200",
    "gen_ai.usage.cache_read.input_tokens": "1024",
}
ANTHROPIC_OLD_NAMES = {
    "gen_ai.system": "Anthropic",
    "llm.request.type": "chat",
    "gen_ai.request.model": "claude-3-5-haiku",
    "gen_ai.usage.prompt_tokens": "80",
    "gen_ai.usage.completion_tokens": "12",
}
# OpenInference: the model asked for is in the request's JSON, the one that answered in
# llm.model_name; a failed call has only the request.
OPENINFERENCE_LLM = {
    "openinference.span.kind": "LLM",
    "llm.invocation_parameters": '{"model": "gpt-4o", "temperature": 0.2}',
    "llm.model_name": "gpt-4o-2024-08-06",
    "llm.provider": "azure",
    "llm.token_count.prompt": "33",
    "llm.token_count.completion": "9",
    "llm.cost.total": "0.00017",
}
OPENINFERENCE_FAILED = {
    "openinference.span.kind": "LLM",
    "llm.invocation_parameters": '{"model": "gpt-4o"}',
    "llm.provider": "azure",
}
HTTP_HANDLER = {"http.request.method": "POST", "http.route": "/answer"}

_NORMALISED = (
    "LlmProvider, LlmRequestModel, LlmResponseModel, LlmOperation, InputTokens, OutputTokens, "
    "CacheReadTokens, ProvidedCostUsd"
)
EXPECTED = {
    "chat gpt-4o-mini": (
        "openai",
        "gpt-4o-mini",
        "gpt-4o-mini-2024-07-18",
        "chat",
        1500,
        200,
        1024,
        None,
    ),
    "chat claude": ("anthropic", "claude-3-5-haiku", "", "chat", 80, 12, 0, None),
    "ChatCompletion": ("azure", "gpt-4o", "gpt-4o-2024-08-06", "chat", 33, 9, 0, 0.00017),
    "ChatCompletion failed": ("azure", "gpt-4o", "", "chat", 0, 0, 0, None),
    "POST /answer": ("", "", "", "", 0, 0, 0, None),
}
# What migration 3's expressions stored for the OpenInference spans: the answered model as the
# requested one, no response model, and nothing for the failed call.
BEFORE_MIGRATION_11 = {
    **EXPECTED,
    "ChatCompletion": ("azure", "gpt-4o-2024-08-06", "", "chat", 33, 9, 0, 0.00017),
    "ChatCompletion failed": ("azure", "", "", "chat", 0, 0, 0, None),
}
SPANS = {
    "POST /answer": HTTP_HANDLER,
    "chat gpt-4o-mini": OPENAI_CHAT,
    "chat claude": ANTHROPIC_OLD_NAMES,
    "ChatCompletion": OPENINFERENCE_LLM,
    "ChatCompletion failed": OPENINFERENCE_FAILED,
}


def exporter_row(
    name: str, attributes: Mapping[str, str], *, trace_id: str, parent: str = ""
) -> tuple[Any, ...]:
    """One row exactly as the exporter writes it (values in EXPORTER_INSERT_COLUMNS order)."""
    start = dt.datetime(2026, 3, 2, 10, 0, 0, tzinfo=dt.UTC)
    failed = name.endswith(" failed")
    return (
        start,
        trace_id,
        uuid.uuid4().hex[:16],
        parent,
        "",
        name,
        "SPAN_KIND_CLIENT",
        "checkout",
        {"service.name": "checkout", "telemetry.sdk.language": "python"},
        "opentelemetry.instrumentation.openai_v2",
        "2.1b0",
        dict(attributes),
        1_250_000_000,
        "STATUS_CODE_ERROR" if failed else "STATUS_CODE_UNSET",
        "Error code: 429" if failed else "",
        [start],
        ["gen_ai.choice"],
        [{"index": "0"}],
        [],
        [],
        [],
        [],
    )


def write_like_the_exporter(store: Store, rows: Sequence[tuple[Any, ...]]) -> None:
    store.insert_rows("otel_traces", rows, EXPORTER_INSERT_COLUMNS)


def write_every_span(store: Store) -> None:
    trace_id = uuid.uuid4().hex
    write_like_the_exporter(
        store, [exporter_row(name, attrs, trace_id=trace_id) for name, attrs in SPANS.items()]
    )


@pytest.fixture
def exporter_store(bare_store: Store) -> Store:
    """A database holding only what a stock Collector created, with five spans in it."""
    for statement in EXPORTER_DDL:
        bare_store.command(statement)
    write_every_span(bare_store)
    return bare_store


def normalised_by_span_name(store: Store) -> dict[str, tuple[Any, ...]]:
    rows = store.query(f"SELECT SpanName, {_NORMALISED} FROM otel_traces")
    return {row[0]: tuple(row[1:]) for row in rows}


def distinct_normalised(store: Store) -> set[tuple[str, tuple[Any, ...]]]:
    """(span name, normalised values) of every row: one wrong row adds a pair."""
    rows = store.query(f"SELECT SpanName, {_NORMALISED} FROM otel_traces")
    return {(row[0], tuple(row[1:])) for row in rows}


def columns(store: Store) -> dict[str, tuple[str, str]]:
    rows = store.query(
        "SELECT name, type, default_kind FROM system.columns "
        "WHERE database = currentDatabase() AND table = 'otel_traces'"
    )
    return {name: (type_, kind) for name, type_, kind in rows}


def definitions(store: Store) -> dict[str, tuple[str, str, str, str, str]]:
    """Every column of otel_traces as ClickHouse holds it: type, kind, expression, codec and
    comment."""
    rows = store.query(
        "SELECT name, type, default_kind, default_expression, compression_codec, comment "
        "FROM system.columns WHERE database = currentDatabase() AND table = 'otel_traces'"
    )
    return {row[0]: tuple(row[1:]) for row in rows}


def migrate_to(store: Store, version: int) -> None:
    """What ``evalhouse migrate`` did when ``version`` was the newest migration."""
    store.command(ledger(store.topology))
    for migration in MIGRATIONS:
        if migration.version <= version:
            for statement in migration.statements(store.topology):
                store.command(statement)
            store.insert_rows(
                "evalhouse_migrations", [(migration.version, migration.name)], ["version", "name"]
            )


def test_the_exporter_table_starts_without_normalised_columns(exporter_store: Store) -> None:
    assert not set(NORMALISED_TYPES) & set(columns(exporter_store))
    assert count(exporter_store) == 5


def test_migrate_adds_every_normalised_column_with_its_contract_type(
    exporter_store: Store,
) -> None:
    before = columns(exporter_store)
    assert migrate(exporter_store) == [m.version for m in MIGRATIONS]
    after = columns(exporter_store)
    assert {name: after[name] for name in NORMALISED_TYPES} == {
        name: (type_, "MATERIALIZED") for name, type_ in NORMALISED_TYPES.items()
    }
    assert set(NORMALISED_TYPES) == {column.name for column in NORMALISED_COLUMNS}
    # Nothing of the exporter's table was changed or dropped.
    assert {name: after[name] for name in before} == before


def test_migrate_normalises_rows_the_exporter_wrote_before_it(exporter_store: Store) -> None:
    migrate(exporter_store)
    assert normalised_by_span_name(exporter_store) == EXPECTED
    # Once old parts are merged the columns are stored; values stay the same.
    exporter_store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert normalised_by_span_name(exporter_store) == EXPECTED
    assert count(exporter_store) == 5


def test_migrating_twice_applies_nothing_the_second_time(exporter_store: Store) -> None:
    first = migrate(exporter_store)
    schema = columns(exporter_store)
    assert first == [m.version for m in MIGRATIONS]
    assert migrate(exporter_store) == []
    assert columns(exporter_store) == schema
    ledger = exporter_store.query("SELECT version FROM evalhouse_migrations FINAL ORDER BY version")
    assert [row[0] for row in ledger] == first
    assert normalised_by_span_name(exporter_store) == EXPECTED


def test_exporter_insert_column_list_still_works_after_migration(exporter_store: Store) -> None:
    migrate(exporter_store)
    trace_id = uuid.uuid4().hex
    names = ("chat gpt-4o-mini", "POST /answer", "ChatCompletion", "ChatCompletion failed")
    write_like_the_exporter(
        exporter_store, [exporter_row(name, SPANS[name], trace_id=trace_id) for name in names]
    )
    assert count(exporter_store) == 9
    rows = exporter_store.query(
        f"SELECT SpanName, {_NORMALISED} FROM otel_traces WHERE TraceId = {{t:String}}",
        {"t": trace_id},
    )
    assert sorted((row[0], tuple(row[1:])) for row in rows) == sorted(
        (name, EXPECTED[name]) for name in names
    )
    # The exporter's trace-id lookup keeps being fed.
    lookup = exporter_store.query(
        "SELECT count() FROM otel_traces_trace_id_ts WHERE TraceId = {t:String}", {"t": trace_id}
    )
    assert lookup == [(1,)]


def test_evalhouse_ingest_writes_into_the_migrated_exporter_table(exporter_store: Store) -> None:
    migrate(exporter_store)
    sent = span("chat", {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 42})
    payload = trace_request([sent]).SerializeToString()
    OtlpSink(exporter_store).insert_otlp("traces", _length_delimited([payload]), "token-1")
    assert count(exporter_store) == 6
    row = exporter_store.query(
        "SELECT SpanKind, StatusCode, LlmOperation, InputTokens FROM otel_traces "
        "WHERE SpanId = {s:String}",
        {"s": sent["span_id"].hex()},
    )
    assert row == [("SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET", "chat", 42)]


def assert_defined_like_a_fresh_install(upgraded: Store, fresh: Store) -> None:
    """Every column of a fresh install, the normalised ones with their final expressions
    included, is defined alike; only the exporter's own ALIAS columns are extra."""
    new, old = definitions(fresh), definitions(upgraded)
    assert set(old) - set(new) == {"ResourceAttributeItems", "SpanAttributeItems"}
    assert {name: old[name] for name in new} == new


def test_migrated_exporter_table_has_the_columns_of_a_fresh_install(
    exporter_store: Store, store: Store
) -> None:
    migrate(exporter_store)
    assert_defined_like_a_fresh_install(exporter_store, store)


def test_an_install_from_before_migration_11_is_rewritten_and_ends_like_a_fresh_one(
    exporter_store: Store, store: Store
) -> None:
    """The exporter's table was migrated by an evalhouse without migration 11, and both the
    exporter and evalhouse's ingest wrote OpenInference spans into it since."""
    migrate_to(exporter_store, 10)
    write_every_span(exporter_store)
    openinference = [
        ("ChatCompletion", OPENINFERENCE_LLM),
        ("ChatCompletion failed", OPENINFERENCE_FAILED),
    ]
    request = trace_request([span(name, attrs) for name, attrs in openinference])
    OtlpSink(exporter_store).insert_otlp(
        "traces", _length_delimited([request.SerializeToString()]), "before-11"
    )
    # Merged, every part stores the columns as migration 3 computed them.
    exporter_store.command("OPTIMIZE TABLE otel_traces FINAL")
    assert distinct_normalised(exporter_store) == set(BEFORE_MIGRATION_11.items())
    assert count(exporter_store) == 12

    assert migrate(exporter_store) == [m.version for m in MIGRATIONS if m.version > 10]
    # The stored values are rewritten (a changed expression alone would leave them).
    assert_defined_like_a_fresh_install(exporter_store, store)
    assert distinct_normalised(exporter_store) == set(EXPECTED.items())

    # New spans from both writers get the new values at insert.
    write_every_span(exporter_store)
    request = trace_request([span(name, attrs) for name, attrs in openinference])
    OtlpSink(exporter_store).insert_otlp(
        "traces", _length_delimited([request.SerializeToString()]), "after-11"
    )
    assert count(exporter_store) == 19
    assert distinct_normalised(exporter_store) == set(EXPECTED.items())
