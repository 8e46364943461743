"""One ``scores`` table for every source: existing experiment scores migrated, feedback through
the API and the SDK, and ``gen_ai.evaluation.result`` events sent by the real OpenTelemetry SDK
stored as scores of their spans.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import wait_for
from online_helpers import API_KEY, Online, call, online, stored_spans
from opentelemetry import trace

import evalhouse
from evalhouse.store import MIGRATIONS, SCORE_COLUMNS, ScoreRecord, Store, migrate
from evalhouse.store._migrations import Migration


@pytest.fixture(scope="module")
def served(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Online]:
    with online(
        chdb_dsn, template_database, tmp_path_factory.mktemp("feedback"), keys=frozenset({API_KEY})
    ) as env:
        yield env


def test_score_record_fills_every_column_once() -> None:
    record = ScoreRecord(name="n", source="rule", target_span_id="00f067aa0ba902b7")
    assert len(record.values()) == len(SCORE_COLUMNS) == len(set(SCORE_COLUMNS))
    assert dict(zip(SCORE_COLUMNS, record.values(), strict=True))["span_id"] == "00f067aa0ba902b7"


def test_existing_scores_move_to_the_contract_sources(chdb_dsn: str) -> None:
    store = Store(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")
    before: tuple[Migration, ...] = tuple(m for m in MIGRATIONS if m.version < 14)
    for migration in before:
        for statement in migration.statements(store.topology):
            store.command(statement)
    store.command(
        "INSERT INTO scores (experiment_id, trace_id, row_id, trial, name, value, error, "
        "explanation, source, created_at, scorer, metadata, span_id) VALUES "
        "('e1', 't1', 'r1', 0, 'accuracy', 1, '', '', 'evaluator', now64(3), 'exact_match', "
        "'', 'aaaaaaaaaaaaaaaa'), "
        "('e1', 't1', 'r1', 0, 'tone', 0.5, '', 'curt', 'span', now64(3), '', '', "
        "'bbbbbbbbbbbbbbbb')"
    )
    fourteen = next(m for m in MIGRATIONS if m.version == 14)
    for _ in range(2):  # safe to run twice (a crash half-way, two processes migrating)
        for statement in fourteen.statements(store.topology):
            store.command(statement)
    rows = store.query_dicts(
        "SELECT name, source, span_id, target_span_id, scorer_span_id, value FROM scores "
        "FINAL ORDER BY name"
    )
    assert [(r["name"], r["source"], r["span_id"], r["scorer_span_id"]) for r in rows] == [
        ("accuracy", "experiment", "", "aaaaaaaaaaaaaaaa"),
        ("tone", "otlp", "", "bbbbbbbbbbbbbbbb"),
    ]
    assert store.query("SELECT count() FROM scores WHERE source IN ('evaluator', 'span')") == [(0,)]
    migrate(store)  # records the ledger; nothing left to apply twice
    assert store.query("SELECT count() FROM scores FINAL") == [(2,)]
    store.command(f"DROP DATABASE {store.database}")


def test_feedback_through_the_api_is_an_api_score_with_a_key(served: Online) -> None:
    trace_id = uuid.uuid4().hex
    status, body = call(
        served.api,
        "POST",
        "/api/feedback",
        {"trace_id": trace_id.upper(), "name": "helpful", "value": 1, "comment": "great"},
        key=API_KEY,
    )
    assert status == 201, body
    assert (body["trace_id"], body["source"], body["value"]) == (trace_id, "api", 1.0)
    # The same author's second verdict on the same target and name replaces the first.
    for value in (0, 1, 0):
        status, _ = call(
            served.api,
            "POST",
            "/api/feedback",
            {"trace_id": trace_id, "name": "helpful", "value": value, "author": "ana"},
            key=API_KEY,
        )
        assert status == 201
    status, body = call(served.api, "GET", "/api/scores", key=API_KEY, trace_id=trace_id)
    assert status == 200
    got = sorted((s["author"], s["value"], s["source"]) for s in body["scores"])
    assert got == [("", 1.0, "api"), ("ana", 0.0, "api")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "x", "value": 1}, "names no target"),
        ({"trace_id": "ab" * 16, "name": "x"}, "needs a value or a label"),
        ({"trace_id": "zz", "name": "x", "value": 1}, "is not a hex trace id"),
        ({"trace_id": "ab" * 16, "name": "", "value": 1}, "'name' must be a non-empty string"),
        ({"trace_id": "ab" * 16, "name": "x", "value": "1"}, "'value' must be a number"),
        ({"trace_id": "ab" * 16, "name": "x", "value": 1, "vlaue": 2}, "unknown field(s) vlaue"),
    ],
)
def test_bad_feedback_is_refused_saying_why(served: Online, body: dict, message: str) -> None:
    status, answer = call(served.api, "POST", "/api/feedback", body, key=API_KEY)
    assert status == 400 and message in answer["error"], answer


def test_session_feedback_without_a_key_is_human(
    chdb_dsn: str, template_database: str, tmp_path: Path
) -> None:
    with online(chdb_dsn, template_database, tmp_path) as open_api:
        status, body = call(
            open_api.api,
            "POST",
            "/api/feedback",
            {"session_id": "s-42", "name": "resolved", "label": "yes", "author": "support"},
        )
        assert status == 201, body
        status, body = call(open_api.api, "GET", "/api/scores", session_id="s-42")
        [score] = body["scores"]
        assert (score["source"], score["label"], score["value"], score["trace_id"]) == (
            "human",
            "yes",
            None,
            "",
        )


def test_sdk_feedback_attaches_a_thumbs_up_to_the_trace_that_answered(
    served: Online, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALHOUSE_API_URL", served.api)
    monkeypatch.setenv("EVALHOUSE_API_KEY", API_KEY)
    tracing = evalhouse.init(endpoint=served.grpc, service_name="support-bot", instrument=False)
    assert tracing.error is None
    tracer = trace.get_tracer("tests.feedback")
    assert evalhouse.current_trace_id() is None
    with tracer.start_as_current_span("answer") as span:
        trace_id = evalhouse.current_trace_id()
        span_id = format(span.get_span_context().span_id, "016x")
        # Inside the request: the current trace is the default target.
        assert evalhouse.feedback("fast", True)
    # Later, when the user clicks: the app kept the trace id with its answer.
    assert evalhouse.feedback(
        "thumbs", value=1, trace_id=trace_id, span_id=span_id, comment="spot on", author="u7"
    )
    assert tracing.force_flush()
    stored_spans(served.store, 1)
    status, body = call(served.api, "GET", "/api/scores", key=API_KEY, trace_id=trace_id)
    assert status == 200
    scores = {s["name"]: s for s in body["scores"]}
    assert scores["fast"]["value"] == 1.0 and scores["fast"]["span_id"] == ""
    thumbs = scores["thumbs"]
    assert (thumbs["span_id"], thumbs["source"], thumbs["author"]) == (span_id, "api", "u7")
    assert thumbs["explanation"] == "spot on"


def test_sdk_feedback_never_raises_into_the_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALHOUSE_API_URL", "http://127.0.0.1:9")
    assert evalhouse.feedback("thumbs", 1, trace_id="ab" * 16) is False
    assert evalhouse.feedback("thumbs", 1) is False  # no trace here: nothing to attach to


def test_evaluation_events_on_production_spans_are_scores_of_those_spans(
    served: Online,
) -> None:
    evalhouse.init(endpoint=served.grpc, service_name="support-bot", instrument=False)
    tracer = trace.get_tracer("tests.feedback")
    with (
        tracer.start_as_current_span("handle") as root,
        tracer.start_as_current_span("chat") as chat,
    ):
        chat.add_event(
            "gen_ai.evaluation.result",
            {
                "gen_ai.evaluation.name": "relevance",
                "gen_ai.evaluation.score.value": 0.75,
                "gen_ai.evaluation.explanation": "mostly on topic",
            },
        )
        chat.add_event(
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": "friendly"},
        )
        root.add_event(
            "gen_ai.evaluation.result",
            {"gen_ai.evaluation.name": "safety", "gen_ai.evaluation.score.value": "high"},
        )
        trace_id = format(root.get_span_context().trace_id, "032x")
        chat_id = format(chat.get_span_context().span_id, "016x")
        root_id = format(root.get_span_context().span_id, "016x")
    assert evalhouse.init(endpoint=served.grpc, instrument=False).force_flush()
    stored = "SELECT count() FROM scores WHERE trace_id = {t:String}"
    wait_for(lambda: served.store.query(stored, {"t": trace_id})[0][0] >= 3)
    rows = served.store.query_dicts(
        "SELECT name, value, label, error, explanation, source, span_id, target_span_id "
        "FROM scores FINAL WHERE trace_id = {t:String} ORDER BY name",
        {"t": trace_id},
    )
    assert [(r["name"], r["value"], r["label"], r["source"], r["span_id"]) for r in rows] == [
        ("relevance", 0.75, "", "otlp", chat_id),
        ("safety", None, "", "otlp", root_id),
        ("tone", None, "friendly", "otlp", chat_id),
    ]
    assert rows[0]["explanation"] == "mostly on topic"
    assert rows[1]["error"] == "score value high is not a number"
    assert all(r["target_span_id"] == r["span_id"] for r in rows)
