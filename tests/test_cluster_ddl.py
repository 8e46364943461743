"""Cluster DDL (``evalhouse migrate --cluster NAME``), asserted statement by statement.

chDB cannot run Replicated engines, ``ON CLUSTER`` or ``Distributed`` (no cluster is
configured), so the cluster DDL is checked as text, and every statement is parsed by
ClickHouse's own parser (``formatQuery``, which parses without executing). The single-server
DDL must stay byte for byte what it was before cluster mode existed, and still applies on chDB.
Insert settings for a cluster are checked by a real insert through chDB: ClickHouse accepts
them and a retried batch still leaves one copy.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from conftest import count, run_cli
from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.store import MIGRATIONS, NORMALISED_COLUMNS, OtlpSink, Store, Topology, migrate
from evalhouse.store._migrations import ledger, statements

CLUSTER = "evalhouse_cluster"
ON = f" ON CLUSTER `{CLUSTER}`"
SHARDED = "'/clickhouse/tables/{shard}/{database}/{table}', '{replica}'"
GLOBAL = "'/clickhouse/tables/global/{database}/{table}', '{replica}'"

# sha256 of each migration's single-server statements (joined by NUL), captured before
# cluster mode was written. An applied migration must never change: installed databases would
# not get the change, so a new schema change is a new migration.
SINGLE_SERVER_SHA256 = {
    0: "2ee87a0280370ee2",  # the ledger
    1: "91793f562cb73a46",
    2: "9efa937b112a76f4",
    3: "d60714d75fd0bd7d",
    4: "b5c5cc6ccf4be271",
    5: "70b7ab3348001ebd",
    6: "30838322c5a2789b",
    7: "139188d7548d52c5",
    8: "734aee600de31064",
    9: "5316a712a0c352e6",
    10: "7367331a64db413c",
    11: "ee33674cfb986f86",
    12: "b1f45ec7ccafa013",
    13: "a22e91e86d2ca483",
    14: "7d7cf4bd06fd6485",
    15: "f896182c07caf617",
    16: "a17011083c4501a2",
}

# Data tables: sharded local table + Distributed table, and the key each one shards by.
SHARDED_TABLES = {
    "otel_traces": ("MergeTree", "cityHash64(TraceId)"),
    "otel_traces_trace_id_ts": ("AggregatingMergeTree", "cityHash64(TraceId)"),
    "experiment_traces": ("MergeTree", "cityHash64(TraceId)"),
    "otel_logs": (
        "MergeTree",
        "if(TraceId = '', cityHash64(ServiceName, Timestamp, Body), cityHash64(TraceId))",
    ),
    "experiment_row_metrics": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "scores": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "trace_summaries": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    # Migration 15 builds it and renames it to trace_summaries (_summaries_layout.py).
    "trace_summaries_next": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "trace_rank": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "usage_rollup": ("AggregatingMergeTree", "cityHash64(level, kind, bucket)"),
    "session_traces": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "rule_targets": ("ReplacingMergeTree", "cityHash64(trace_id)"),
    "evalhouse_dataset_rows": ("MergeTree", "cityHash64(dataset, row_id)"),
    "evalhouse_dataset_staging": ("MergeTree", "cityHash64(dataset, push_id, position)"),
    **{
        f"otel_metrics_{kind}": (
            "MergeTree",
            "cityHash64(ResourceAttributes, MetricName, Attributes)",
        )
        for kind in ("gauge", "sum", "histogram", "exponential_histogram", "summary")
    },
}
# Bookkeeping: whole on every node, one replica set, no Distributed table.
BOOKKEEPING_TABLES = {
    "evalhouse_migrations": "ReplacingMergeTree",
    "evaluator_claims": "MergeTree",
    "evaluator_checkpoints": "ReplacingMergeTree",
    "evaluator_workers": "ReplacingMergeTree",
    "evalhouse_dataset_versions": "MergeTree",
    "trace_summary_checkpoints": "ReplacingMergeTree",
    "rules": "ReplacingMergeTree",
    "rule_checkpoints": "ReplacingMergeTree",
    "rule_spend": "SummingMergeTree",
    "rule_backfills": "ReplacingMergeTree",
    "review_queues": "ReplacingMergeTree",
    "review_items": "ReplacingMergeTree",
    "review_claims": "MergeTree",
}
# Tables that only relay inserts on the node that receives them.
NULL_TABLES = {
    "evalhouse_ingest_traces",
    "evalhouse_ingest_logs",
    "evalhouse_ingest_metrics",
    "trace_summaries_in",
}
# The explorer's views on trace_summaries_in: the summarizer's one insert fills three tables.
SUMMARY_VIEWS = {
    "trace_summaries_mv": "trace_summaries",  # until migration 16
    "trace_summaries_next_mv": "trace_summaries_next",  # migrations 15-16
    "trace_summaries_fill_mv": "trace_summaries",  # from migration 16
    "trace_rank_mv": "trace_rank",
    "usage_traces_mv": "usage_rollup",
    "usage_traces_hour_mv": "usage_rollup",
    "usage_users_mv": "usage_rollup",
    "usage_calls_mv": "usage_rollup",
    "usage_calls_hour_mv": "usage_rollup",
    "session_traces_mv": "session_traces",
}
METRICS_VIEWS = {
    f"otel_metrics_{kind}_mv"
    for kind in ("gauge", "sum", "histogram", "exponential_histogram", "summary")
}
VIEWS = {"experiment_rows", "experiments", "experiment_row_scores", "traces", "sessions"}

_CREATE = re.compile(
    r"CREATE (TABLE|VIEW|MATERIALIZED VIEW) IF NOT EXISTS (\w+)( ON CLUSTER `\w+`)?"
)


def _engine(statement: str) -> tuple[str, str]:
    """(engine name, its argument text) of a CREATE TABLE, parentheses balanced."""
    match = re.search(r"ENGINE = (\w+)(\(?)", statement)
    assert match, statement
    if not match.group(2):
        return match.group(1), ""
    depth, start = 1, match.end()
    for at in range(start, len(statement)):
        depth += {"(": 1, ")": -1}.get(statement[at], 0)
        if depth == 0:
            return match.group(1), statement[start:at]
    raise AssertionError(f"unbalanced engine clause: {statement[:200]}")


def _creates(topology: Topology) -> dict[str, tuple[str, str]]:
    """name -> (kind, statement) for every CREATE of a fresh migration."""
    found = {}
    for statement in statements(topology):
        match = _CREATE.match(statement)
        if match:
            assert match.group(2) not in found, f"{match.group(2)} created twice"
            found[match.group(2)] = (match.group(1), statement)
    return found


@pytest.fixture(scope="module")
def cluster_ddl() -> list[str]:
    return statements(Topology(CLUSTER))


@pytest.fixture(scope="module")
def creates() -> dict[str, tuple[str, str]]:
    return _creates(Topology(CLUSTER))


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]


def test_single_server_ddl_is_unchanged_by_cluster_mode() -> None:
    single = Topology()
    now = {0: _digest([ledger(single)])}
    now.update({m.version: _digest(m.statements(single)) for m in MIGRATIONS})
    assert {v: now[v] for v in SINGLE_SERVER_SHA256} == SINGLE_SERVER_SHA256
    text = "\n".join(statements(single))
    for cluster_only in ("ON CLUSTER", "Replicated", "Distributed", "_local", "{shard}"):
        assert cluster_only not in text


def test_every_cluster_statement_is_on_cluster_and_parses(
    cluster_ddl: list[str], bare_store: Store
) -> None:
    assert len(cluster_ddl) > len(statements(Topology()))
    for statement in cluster_ddl:
        # formatQuery parses with ClickHouse's own parser and executes nothing.
        formatted = bare_store.query("SELECT formatQuery({q:String})", {"q": statement})[0][0]
        if statement.startswith("INSERT INTO "):
            # Data (a backfill), not DDL: written through the Distributed tables, which route
            # each row to its shard, so it names no local table.
            assert "_local" not in statement and ON not in statement
            continue
        head = statement.split("(", 1)[0].split(" AS", 1)[0]
        assert ON in head, f"not ON CLUSTER: {statement[:120]}"
        assert f"ON CLUSTER {CLUSTER}" in formatted


def test_cluster_tables_match_the_single_server_definitions(
    cluster_ddl: list[str], bare_store: Store
) -> None:
    """Apart from names, engines and ON CLUSTER, the cluster DDL defines the same tables,
    columns, views and ALTERs (normalised by ClickHouse's formatter on both sides)."""

    def fmt(statement: str) -> str:
        text: str = bare_store.query("SELECT formatQuery({q:String})", {"q": statement})[0][0]
        # Replicated tables deduplicate without a window setting; plain ones need it.
        text = re.sub(r",?\s*non_replicated_deduplication_window = 10000", "", text)
        return re.sub(r"\nSETTINGS(?=\n|$)", "", text)

    def declustered(statement: str) -> str:
        text = statement.replace(ON, "")
        text = re.sub(r"\b(\w+)_local\b", r"\1", text)
        for path in (SHARDED, GLOBAL):
            text = text.replace(f"{path}, ", "").replace(path, "")
        return fmt(re.sub(r"ENGINE = Replicated(\w+)", r"ENGINE = \1", text))

    single = [fmt(s) for s in statements(Topology()) if "MODIFY SETTING non_replicated" not in s]
    # Left out: the Distributed tables and the ALTERs that repeat a column on them.
    clustered = [
        declustered(s)
        for s in cluster_ddl
        if "ENGINE = Distributed(" not in s
        and not any(s.startswith(f"ALTER TABLE {name}{ON} ") for name in SHARDED_TABLES)
    ]
    # experiment_rows reads the scores of its own shard (see the view test): declustered, that
    # is the single-server text again.
    assert clustered == single


def test_data_tables_are_sharded_local_tables_behind_distributed_tables(
    creates: dict[str, tuple[str, str]],
) -> None:
    for name, (family, key) in SHARDED_TABLES.items():
        kind, local = creates[f"{name}_local"]
        assert kind == "TABLE"
        engine, args = _engine(local)
        assert engine == f"Replicated{family}"
        assert args.startswith(SHARDED), local[:300]
        kind, distributed = creates[name]
        assert kind == "TABLE"
        assert f"CREATE TABLE IF NOT EXISTS {name}{ON} AS {name}_local\n" in distributed
        assert _engine(distributed) == (
            "Distributed",
            f"`{CLUSTER}`, currentDatabase(), {name}_local, {key}",
        )
    data_tables = {
        name
        for name, (kind, statement) in creates.items()
        if kind == "TABLE" and "Distributed" not in statement and name.endswith("_local")
    }
    assert data_tables == {f"{name}_local" for name in SHARDED_TABLES}


def test_one_trace_lands_on_one_shard(creates: dict[str, tuple[str, str]]) -> None:
    """Spans, the trace lookup, rows and scores all hash the trace id the same way, so a
    trace's spans, computed row and scores are always on the same shard."""
    keys = {name: _engine(creates[name][1])[1].rsplit(", ", 1)[1] for name in SHARDED_TABLES}
    by_trace = {keys[n] for n in ("otel_traces", "otel_traces_trace_id_ts", "experiment_traces")}
    by_row = {
        keys[n] for n in ("experiment_row_metrics", "scores", "trace_summaries", "trace_rank")
    }
    assert by_trace == {"cityHash64(TraceId)"}
    assert by_row == {"cityHash64(trace_id)"}
    assert keys["otel_logs"].endswith("cityHash64(TraceId))")
    # No random sharding: a retried block must split into the same per-shard blocks.
    assert not any("rand" in key for key in keys.values())


def test_bookkeeping_tables_are_one_unsharded_replica_set(
    creates: dict[str, tuple[str, str]], cluster_ddl: list[str]
) -> None:
    for name, family in BOOKKEEPING_TABLES.items():
        kind, statement = creates[name]
        engine, args = _engine(statement)
        assert (kind, engine) == ("TABLE", f"Replicated{family}")
        assert args.startswith(GLOBAL) and "{shard}" not in args, statement
        assert f"{name}_local" not in creates
        assert not any(f"currentDatabase(), {name}" in s for s in cluster_ddl)
    # Evaluator claims deduplicate by token in Keeper: synchronous, replicated, no window
    # setting needed (replicated tables keep 10,000 blocks by default).
    claims = creates["evaluator_claims"][1]
    assert "non_replicated_deduplication_window" not in claims


def test_alters_reach_local_tables_and_columns_reach_distributed_ones(
    cluster_ddl: list[str],
) -> None:
    alters = [s for s in cluster_ddl if s.startswith("ALTER TABLE")]
    target = re.compile(
        r"ALTER TABLE (\w+) ON CLUSTER `\w+` ((ADD COLUMN IF NOT EXISTS|MODIFY COLUMN) (\w+)|.*)"
    )
    columns: dict[str, set[str]] = {}
    declared: dict[tuple[str, str], list[str]] = {}
    for statement in alters:
        match = target.match(statement)
        assert match, statement
        table, column = match.group(1), match.group(4)
        if column is None:
            # Mutations, indexes and sorting keys exist only on the MergeTree side.
            assert table in ("otel_traces_local", "scores_local"), statement
        else:
            columns.setdefault(column, set()).add(table)
            declared.setdefault((table, column), []).append(statement)
    expected = {c.name: {"otel_traces_local", "otel_traces"} for c in NORMALISED_COLUMNS}
    expected["InsertedAt"] = {"otel_traces_local", "otel_traces"}
    expected["input_key"] = {"experiment_row_metrics_local", "experiment_row_metrics"}
    # Migration 14 adds the scores' target, rule and judge columns in one ALTER per table
    # (the local one also extends its sorting key): the first column names the statement.
    expected["target_span_id"] = {"scores_local", "scores"}
    assert columns == expected
    # The Distributed table declares the normalised columns MATERIALIZED too: it does not
    # send them with inserts, each shard computes its own. Both tables end with the current
    # expression (migration 3's, or a later MODIFY COLUMN's).
    for c in NORMALISED_COLUMNS:
        for table in ("otel_traces_local", "otel_traces"):
            assert f"MATERIALIZED {c.expression} COMMENT" in declared[table, c.name][-1]
    # Each column is added (and modified) on the local table before the Distributed one.
    for verb in ("ADD COLUMN IF NOT EXISTS InsertedAt ", "MODIFY COLUMN LlmRequestModel "):
        order = [s.split()[2] for s in alters if verb in s]
        assert order == ["otel_traces_local", "otel_traces"]


def test_migration_11_rewrites_the_model_columns_in_each_shards_local_table() -> None:
    """Migration 11 replaces two expressions of migration 3, which keeps writing the released
    ones, and rewrites the stored parts (a mutation: local tables only, waited for)."""
    by_version = {m.version: m for m in MIGRATIONS}
    mutations = [
        s for s in by_version[11].statements(Topology(CLUSTER)) if "MATERIALIZE COLUMN" in s
    ]
    assert mutations == [
        f"ALTER TABLE otel_traces_local{ON} MATERIALIZE COLUMN LlmRequestModel, "
        "MATERIALIZE COLUMN LlmResponseModel SETTINGS mutations_sync = 2"
    ]
    migration_3 = "\n".join(by_version[3].statements(Topology()))
    for column in NORMALISED_COLUMNS:
        released = column.expression in migration_3
        assert released == (column.name not in ("LlmRequestModel", "LlmResponseModel"))


def test_materialized_views_attach_where_the_rows_are(
    creates: dict[str, tuple[str, str]],
) -> None:
    views = {name: s for name, (kind, s) in creates.items() if kind == "MATERIALIZED VIEW"}
    assert set(views) == {
        "otel_traces_trace_id_ts_mv",
        "experiment_traces_mv",
        "evalhouse_ingest_traces_mv",
        "evalhouse_ingest_logs_mv",
        *METRICS_VIEWS,
        *SUMMARY_VIEWS,
        "otel_evaluation_scores_mv",
    }
    # The lookup views fire on the shard that stores the spans and fill that shard's table;
    # so do evaluation events becoming scores (scores shard by trace id like the spans).
    events = views["otel_evaluation_scores_mv"]
    assert f"otel_evaluation_scores_mv{ON} TO scores_local AS\n" in events
    assert "FROM otel_traces_local\n" in events
    lookup = views["otel_traces_trace_id_ts_mv"]
    assert "\nTO otel_traces_trace_id_ts_local AS\n" in lookup
    assert "FROM otel_traces_local WHERE" in lookup
    index = views["experiment_traces_mv"]
    assert f"experiment_traces_mv{ON} TO experiment_traces_local AS SELECT" in index
    assert "FROM otel_traces_local WHERE" in index
    # The OTLP ingest views write through the Distributed tables, which route each span.
    assert (
        f"evalhouse_ingest_traces_mv{ON} TO otel_traces AS SELECT"
        in views["evalhouse_ingest_traces_mv"]
    )
    assert (
        f"evalhouse_ingest_logs_mv{ON} TO otel_logs AS SELECT" in views["evalhouse_ingest_logs_mv"]
    )
    for name in METRICS_VIEWS:
        table = name.removesuffix("_mv")
        assert f"{name}{ON} TO {table} AS\nSELECT" in views[name]
        assert "FROM evalhouse_ingest_metrics\n" in views[name]
    # The summarizer's views write through the Distributed tables, which route each row to
    # its trace's shard (rollup rows: by bucket).
    for name, table in SUMMARY_VIEWS.items():
        assert f"{name}{ON}" in views[name] and f"TO {table} AS" in views[name], views[name][:200]
        assert "FROM trace_summaries_in" in views[name]
    for name in NULL_TABLES:
        kind, statement = creates[name]
        assert (kind, _engine(statement)) == ("TABLE", ("Null", ""))


def test_views_read_the_distributed_tables(creates: dict[str, tuple[str, str]]) -> None:
    views = {name: s for name, (kind, s) in creates.items() if kind == "VIEW"}
    assert set(views) == VIEWS
    rows = views["experiment_rows"]
    assert "FROM experiment_row_metrics AS r FINAL" in rows
    # The join runs on each shard with the Distributed left table; the right side reads that
    # shard's own scores (co-sharded by trace id) instead of a double-distributed subquery.
    assert "FROM scores_local FINAL" in rows
    assert "GLOBAL" not in rows
    assert "FROM experiment_rows\nGROUP BY experiment_id" in views["experiments"]
    assert "FROM experiment_rows\nARRAY JOIN" in views["experiment_row_scores"]
    # traces joins each trace's scores on its shard, as experiment_rows does.
    assert "FROM trace_summaries AS t FINAL" in views["traces"]
    assert "FROM scores_local FINAL" in views["traces"]
    assert "FROM traces\nWHERE session_id != ''" in views["sessions"]
    for name, statement in views.items():
        if name not in ("experiment_rows", "traces"):
            assert "_local" not in statement, name


def test_cluster_writes_carry_the_settings_that_keep_retries_idempotent() -> None:
    store = Store("http://clickhouse.invalid:8123", cluster=CLUSTER)
    expected = {
        "distributed_foreground_insert": 1,
        "deduplicate_blocks_in_dependent_materialized_views": 1,
        "insert_deduplicate": 1,
        "async_insert": 0,
    }
    assert Topology(CLUSTER).insert_settings() == expected
    assert store.write_settings() == expected
    # A caller's own settings are kept (the claim's token, the OTLP format settings).
    assert store.write_settings({"insert_deduplication_token": "t", "async_insert": 0}) == {
        **expected,
        "insert_deduplication_token": "t",
    }
    sink = OtlpSink(store)
    settings = sink.settings("traces", "batch-1:traces")
    assert settings["insert_deduplication_token"] == "batch-1:traces"
    assert settings["format_schema_source"] == "string"
    assert {k: settings[k] for k in expected} == expected
    assert Topology(CLUSTER).consistent_read_settings() == {"select_sequential_consistency": 1}
    # One server: nothing added.
    assert Store("http://clickhouse.invalid:8123").write_settings() is None
    assert Topology().insert_settings() == {} == Topology().consistent_read_settings()


@pytest.fixture
def cluster_flagged(store: Store) -> Iterator[Store]:
    """A store on the migrated (single-server) database that writes like a cluster node."""
    flagged = Store(store.dsn, database=store.database, cluster=CLUSTER)
    yield flagged
    flagged.close()


def test_clickhouse_accepts_the_cluster_insert_settings_and_still_deduplicates(
    store: Store, cluster_flagged: Store
) -> None:
    payload = _length_delimited([trace_request([span("chat"), span("tool")]).SerializeToString()])
    sink = OtlpSink(cluster_flagged)
    token = f"{uuid.uuid4().hex}:traces"
    for _ in range(3):
        sink.insert_otlp("traces", payload, token)
    assert count(store) == 2
    for _ in range(2):
        cluster_flagged.insert_rows(
            "evaluator_workers",
            [("w", datetime.now(UTC))],
            ["worker", "heartbeat"],
            {"insert_deduplication_token": f"{token}:worker"},
        )
    assert store.query("SELECT count() FROM evaluator_workers") == [(1,)]


def test_the_whole_migration_set_applies_on_chdb(store: Store) -> None:
    assert store.query("SELECT version FROM evalhouse_migrations FINAL ORDER BY version") == [
        (m.version,) for m in MIGRATIONS
    ]
    tables = {
        row[0]
        for row in store.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
    }
    # What migration 16 drops once the rebuilt trace_summaries is in place.
    dropped = {"trace_summaries_mv", "trace_summaries_next_mv", "trace_summaries_next"}
    assert set(_creates(Topology())) - dropped <= tables
    assert not tables & dropped
    assert store.query("SELECT count() FROM trace_summaries_old") == [(0,)]
    assert not any(name.endswith("_local") for name in tables)
    assert migrate(store) == []


def test_migrate_print_shows_the_cluster_statements_without_a_server() -> None:
    # No ClickHouse at this DSN: --print must not connect.
    result = run_cli(
        "migrate", "--clickhouse", "http://127.0.0.1:9", "--cluster", CLUSTER, "--print"
    )
    printed = [s.strip() for s in result.stdout.split(";\n\n") if s.strip()]
    assert printed == statements(Topology(CLUSTER))
