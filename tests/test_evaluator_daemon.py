"""The daemon end to end on the embedded store: scorers once per row, restarts, several
workers, late spans, orphans, scorer failures, the LLM judge, retrospective scoring, repricing.

Scorers used here are plain ``module:function`` callables of this module, resolved by the same
path users' scorers take (``test_evaluator_daemon:counting``).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from typing import Any

import pytest
from conftest import wait_for
from fake_openai import Usage, fake_openai
from test_evaluator_spans import Trace, eval_root, evaluate, evaluator, rows, tokens, write

from evalhouse.errors import EvalhouseError
from evalhouse.evaluators import reprice_experiment, score_experiment
from evalhouse.evaluators._cost import price_data_version
from evalhouse.store import Store

_LOCK = threading.Lock()
CALLS: Counter[str] = Counter()  # started runs, by row input
FINISHED: Counter[str] = Counter()  # runs that got to return a score
SLOW_SECONDS = 0.3


def counting(input: Any, output: Any, expected: Any) -> bool:
    with _LOCK:
        CALLS[json.dumps(input)] += 1
        FINISHED[json.dumps(input)] += 1
    return bool(output == expected)


async def slow(input: Any, output: Any) -> float:
    with _LOCK:
        CALLS[json.dumps(input)] += 1
    await asyncio.sleep(SLOW_SECONDS)
    with _LOCK:
        FINISHED[json.dumps(input)] += 1
    return 1.0


def failing(output: Any) -> float:
    raise RuntimeError("judge exploded")


async def hanging(output: Any) -> float:
    await asyncio.sleep(3600)
    return 1.0


def not_a_score(output: Any) -> str:
    return "great"


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    CALLS.clear()
    FINISHED.clear()


class Record:
    """Observer: every row computation and stored scorer result, from every worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.computed: list[tuple[str, str, int]] = []
        self.stored: list[tuple[str, str, str]] = []

    def row_computed(self, worker: str, trace_id: str, watermark_ms: int) -> None:
        with self.lock:
            self.computed.append((worker, trace_id, watermark_ms))

    def scored(self, worker: str, trace_id: str, scorer_id: str) -> None:
        with self.lock:
            self.stored.append((worker, trace_id, scorer_id))


def experiment(count: int, scorers: list[Any], *, name: str = "exp-1") -> list[Trace]:
    traces = []
    for i in range(count):
        t = Trace()
        root = eval_root(
            t,
            experiment=name,
            row_id=f"row-{i}",
            input={"experiment": name, "i": i},
            output="yes" if i % 2 == 0 else "no",
            expected="yes",
            scorers=scorers,
        )
        t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=1, ms=100)
        traces.append(t)
    return traces


def evaluator_scores(store: Store) -> list[dict[str, Any]]:
    return store.query_dicts(
        "SELECT trace_id, scorer, name, value, error, scorer_span_id FROM scores FINAL "
        "WHERE source = 'experiment' ORDER BY trace_id, scorer, name"
    )


def test_scorers_run_once_and_are_stored_and_traced(store: Store) -> None:
    traces = experiment(6, ["test_evaluator_daemon:counting", "exact_match"])
    write(store, *traces)
    evaluate(store)
    evaluate(store)  # a restart finds nothing to redo
    assert set(CALLS.values()) == {1} and len(CALLS) == 6
    scores = evaluator_scores(store)
    assert len(scores) == 12
    by_trace = {t.hex: t for t in traces}
    values = {(s["trace_id"], s["name"]): s["value"] for s in scores}
    for i, t in enumerate(traces):
        expected = 1.0 if i % 2 == 0 else 0.0
        assert values[(t.hex, "counting")] == expected
        assert values[(t.hex, "exact_match")] == expected
    # Each run is a scorer span under the row's eval root, written by the evaluator.
    spans = store.query_dicts(
        "SELECT TraceId, SpanId, ParentSpanId, Purpose, StatusCode, ScopeName, "
        "SpanAttributes['evalhouse.score.name'] AS name, "
        "SpanAttributes['evalhouse.score.value'] AS value "
        "FROM otel_traces WHERE ScopeName = 'evalhouse.evaluator'"
    )
    assert len(spans) == 12
    roots = {t.hex: t.spans[0]["span_id"].hex() for t in traces}
    for span in spans:
        assert span["TraceId"] in by_trace
        assert span["ParentSpanId"] == roots[span["TraceId"]]
        assert (span["Purpose"], span["StatusCode"]) == ("scorer", "STATUS_CODE_OK")
    assert {s["scorer_span_id"] for s in scores} == {span["SpanId"] for span in spans}
    # The daemon's own scorer spans do not make the row recompute or count as scores twice.
    found = rows(store)
    assert {row["computations"] for row in found.values()} == {1}
    assert found[traces[0].hex]["scores"] == {"counting": 1.0, "exact_match": 1.0}
    assert store.query("SELECT count() FROM scores FINAL WHERE source = 'otlp'") == [(0,)]


def test_restart_while_scoring_resumes_without_redoing_work(store: Store) -> None:
    traces = experiment(12, ["test_evaluator_daemon:slow"])
    write(store, *traces)
    record = Record()
    first = evaluator(store, evaluator_scorer_concurrency=2, observer=record)
    first.start()
    wait_for(lambda: len(record.stored) >= 4, timeout=30)
    first.stop()  # scorers still running are cancelled: their rows stay owed
    stored_before = {trace for _, trace, _ in record.stored}
    assert 4 <= len(stored_before) < 12
    evaluate(store, evaluator_scorer_concurrency=4, observer=record)
    # Every row scored once, the ones stored before the restart not again.
    assert sorted(trace for _, trace, _ in record.stored) == sorted(t.hex for t in traces)
    assert set(FINISHED.values()) == {1} and len(FINISHED) == 12
    # No row computed twice from the same spans.
    keys = [(trace, mark) for _, trace, mark in record.computed]
    assert len(keys) == len(set(keys)) == 12
    assert len(evaluator_scores(store)) == 12


@pytest.mark.slow
def test_several_workers_split_the_work_exactly_once(store: Store) -> None:
    record = Record()
    workers = [
        evaluator(
            store,
            worker_id=f"w{i}",
            evaluator_lease_seconds=2,
            evaluator_scorer_timeout=1,
            evaluator_poll_seconds=0.1,
            observer=record,
        )
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    try:
        first = experiment(60, ["test_evaluator_daemon:counting"], name="a")
        write(store, *first)
        wait_for(lambda: len(record.stored) >= 60, timeout=60)
        # Leases rebalance at epoch boundaries: let them, then send more work.
        wait_for(lambda: _owners(store) >= 3, timeout=30)
        second = experiment(60, ["test_evaluator_daemon:counting"], name="b")
        write(store, *second)
        wait_for(lambda: len(record.stored) >= 120, timeout=60)
    finally:
        for worker in workers:
            worker.stop()
    keys = [(trace, mark) for _, trace, mark in record.computed]
    assert len(keys) == len(set(keys)) == 120
    assert len(CALLS) == 120 and set(CALLS.values()) == {1}
    scored = [(trace, scorer) for _, trace, scorer in record.stored]
    assert len(scored) == len(set(scored)) == 120
    assert len({worker for worker, _, _ in record.computed}) >= 2
    assert len(evaluator_scores(store)) == 120


def _owners(store: Store) -> int:
    rows = store.query(
        "SELECT uniqExact(owner) FROM evaluator_claims "
        "WHERE epoch = (SELECT max(epoch) FROM evaluator_claims)"
    )
    return int(rows[0][0])


def test_late_span_recomputes_the_row_but_never_rescores(store: Store) -> None:
    t = Trace()
    root = eval_root(t, scorers=["test_evaluator_daemon:counting"])
    task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=1, ms=300)
    late = t.add(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 40,
            "gen_ai.usage.output_tokens": 4,
        },
        parent=task,
        at_ms=2,
        ms=100,
    )
    first = {s["span_id"] for s in t.spans if s["span_id"] != late}
    write(store, t, only=first)
    evaluate(store)
    row = rows(store)[t.hex]
    assert (tokens(row), row["span_count"], row["computations"]) == ((0,) * 6, 2, 1)
    write(store, t, only={late})
    evaluate(store)
    row = rows(store)[t.hex]
    assert tokens(row) == (40, 0, 0, 4, 0, 44)
    assert row["computations"] == 2
    assert store.query(
        "SELECT late_spans, span_count FROM experiment_rows WHERE trace_id = {t:String}",
        {"t": t.hex},
    ) == [(1, 4)]  # root, task, the daemon's scorer span, the late chat span
    assert sum(CALLS.values()) == 1


def test_orphans_are_counted_until_their_parent_arrives(store: Store) -> None:
    t = Trace()
    root = eval_root(t)
    task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=1, ms=300)
    agent = t.add("agent", {"gen_ai.operation.name": "invoke_agent"}, parent=task, at_ms=2)
    t.add(
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 9},
        parent=agent,
        at_ms=3,
    )
    write(store, t, only={s["span_id"] for s in t.spans if s["span_id"] != agent})
    evaluate(store)
    row = store.query_dicts("SELECT orphan_spans, input_tokens FROM experiment_rows")[0]
    assert (row["orphan_spans"], row["input_tokens"]) == (1, 0)
    assert store.query("SELECT orphan_spans FROM experiments") == [(1,)]
    write(store, t, only={agent})
    evaluate(store)
    row = store.query_dicts("SELECT orphan_spans, input_tokens, late_spans FROM experiment_rows")[0]
    assert (row["orphan_spans"], row["input_tokens"], row["late_spans"]) == (0, 9, 1)


def test_scorer_failures_are_recorded_with_their_message(store: Store) -> None:
    traces = experiment(
        2,
        [
            "exact_match",
            "test_evaluator_daemon:failing",
            "test_evaluator_daemon:hanging",
            "test_evaluator_daemon:not_a_score",
            "no_such_scorer",
            "no_such_module_xyz:scorer",
            {"name": "exact_match", "options": {"no_such_option": 1}},
            42,
        ],
    )
    write(store, *traces)
    started = time.monotonic()
    evaluate(store, evaluator_scorer_timeout=0.5, evaluator_lease_seconds=5)
    assert time.monotonic() - started < 20
    scores = evaluator_scores(store)
    mine = [s for s in scores if s["trace_id"] == traces[0].hex]
    errors = {s["scorer"]: s["error"] for s in mine}
    assert errors["exact_match"] == ""
    assert [s["value"] for s in mine if s["scorer"] == "exact_match"] == [1.0]
    assert errors["test_evaluator_daemon:failing"] == "RuntimeError: judge exploded"
    assert "timed out after 0.5 s" in errors["test_evaluator_daemon:hanging"]
    assert "returned str" in errors["test_evaluator_daemon:not_a_score"]
    assert "unknown scorer 'no_such_scorer'" in errors["no_such_scorer"]
    assert "cannot import module 'no_such_module_xyz'" in errors["no_such_module_xyz:scorer"]
    assert "no_such_option" in errors['exact_match{"no_such_option":1}']
    invalid = [s for s in mine if s["scorer"].startswith("!")]
    assert len(invalid) == 1 and "neither a scorer name" in invalid[0]["error"]
    assert len(mine) == 8
    # Failed runs are traced too: status ERROR with the message.
    failed = store.query(
        "SELECT StatusCode, StatusMessage, SpanAttributes['evalhouse.score.error'] "
        "FROM otel_traces WHERE ScopeName = 'evalhouse.evaluator' "
        "AND SpanAttributes['evalhouse.scorer'] = 'test_evaluator_daemon:failing'"
    )
    assert (
        failed == [("STATUS_CODE_ERROR", "RuntimeError: judge exploded")] * 2
        or failed
        == [("STATUS_CODE_ERROR", "RuntimeError: judge exploded", "RuntimeError: judge exploded")]
        * 2
    )
    row = rows(store)[traces[0].hex]
    assert row["scores"] == {"exact_match": 1.0}
    # A failing scorer is not retried by itself: re-scoring is explicit.
    evaluate(store, evaluator_scorer_timeout=0.5, evaluator_lease_seconds=5)
    assert len(evaluator_scores(store)) == 16


def test_a_slow_judge_does_not_hold_back_other_scorers(store: Store) -> None:
    global SLOW_SECONDS
    SLOW_SECONDS = 1.5
    try:
        traces = experiment(8, ["test_evaluator_daemon:slow", "exact_match"])
        write(store, *traces)
        record = Record()
        daemon = evaluator(store, evaluator_scorer_concurrency=1, observer=record)
        daemon.start()
        try:
            fast = lambda: sum(1 for _, _, s in record.stored if s == "exact_match")  # noqa: E731
            wait_for(lambda: fast() == 8, timeout=10)
            slow_done = sum(1 for _, _, s in record.stored if s != "exact_match")
            assert slow_done <= 2  # one slow run at a time: it took ~1.5 s each
        finally:
            daemon.stop()
    finally:
        SLOW_SECONDS = 0.3


def test_llm_judge_scores_and_its_tokens_are_judge_tokens(store: Store) -> None:
    judge = {
        "name": "llm_judge",
        "options": {
            "prompt": "Is this answer correct? {{output}} (expected {{expected}})",
            "choice_scores": {"Y": 1.0, "N": 0.0},
            "use_cot": False,
            "api_key": "test-key",
            "model": "gpt-4o-mini",
        },
    }
    with fake_openai(
        reply=lambda body: "Choice: Y", usage=Usage(prompt_tokens=123, completion_tokens=4)
    ) as server:
        judge["options"]["base_url"] = server.base_url  # type: ignore[index]
        traces = experiment(2, [judge])
        write(store, *traces)
        # Both calls at once: the pool resolves the judge once, so aclose() closes its client.
        evaluate(store, evaluator_scorer_concurrency=8)
        assert len(server.requests) == 2
    scores = evaluator_scores(store)
    assert [(s["name"], s["value"], s["error"]) for s in scores] == [("llm_judge", 1.0, "")] * 2
    row = rows(store)[traces[0].hex]
    # The judge's call is traced under its scorer span; the row is recomputed with it.
    assert (row["judge_input_tokens"], row["judge_output_tokens"]) == (123, 4)
    assert row["judge_cost_usd"] is not None and row["judge_cost_usd"] > 0
    assert (row["input_tokens"], row["cost_provenance"]) == (0, "none")
    assert row["scores"] == {"llm_judge": 1.0}


def test_score_applies_scorers_retrospectively(store: Store) -> None:
    traces = experiment(6, [])
    write(store, *traces)
    evaluate(store)
    settings = evaluator(store).settings
    spec = "test_evaluator_daemon:counting"
    report = score_experiment(store, "exp-1", [spec], settings=settings, where="row_id < 'row-3'")
    assert (report.rows, report.runs, report.skipped, report.errors) == (3, 3, 0, 0)
    report = score_experiment(store, "exp-1-id", [spec, "exact_match"], settings=settings)
    assert (report.rows, report.runs, report.skipped) == (6, 9, 3)
    assert sum(CALLS.values()) == 6
    report = score_experiment(store, "exp-1", [spec], settings=settings, rescore=True)
    assert (report.runs, report.skipped) == (6, 0)
    assert sum(CALLS.values()) == 12
    assert len(evaluator_scores(store)) == 12  # a re-score replaces, never duplicates
    found = rows(store)
    assert found[traces[0].hex]["scores"] == {"counting": 1.0, "exact_match": 1.0}
    # The daemon sees these as done and does not run them again.
    evaluate(store)
    assert sum(CALLS.values()) == 12
    # The one experiment resolver's message (evaluators/_experiments.py).
    with pytest.raises(EvalhouseError, match="no experiment with id or name 'nope'"):
        score_experiment(store, "nope", [spec], settings=settings)


def test_reprice_recomputes_costs_with_the_installed_prices(store: Store) -> None:
    t = Trace()
    root = eval_root(t)
    task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=1)
    t.add(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 100,
        },
        parent=task,
        at_ms=2,
    )
    write(store, t)
    evaluate(store)
    priced = rows(store)[t.hex]["cost_usd"]
    # Pretend the row was priced with older data and a different price.
    store.command(
        "INSERT INTO experiment_row_metrics SELECT * REPLACE (cost_usd * 2 AS cost_usd, "
        "'genai-prices 0.0.1 data old' AS price_data_version, version + 1 AS version) "
        "FROM experiment_row_metrics FINAL"
    )
    assert rows(store)[t.hex]["cost_usd"] == pytest.approx(priced * 2)
    report = reprice_experiment(store, "exp-1", settings=evaluator(store).settings)
    assert report.rows == 1
    assert report.previous_versions == ("genai-prices 0.0.1 data old",)
    assert report.price_data_version == price_data_version()
    row = rows(store)[t.hex]
    assert row["cost_usd"] == pytest.approx(priced)
    assert row["computations"] == 2


def test_project_config_names_scorers_by_experiment_name(store: Store) -> None:
    chosen = experiment(2, [], name="qa-7")
    other = experiment(1, [], name="summaries")
    write(store, *chosen, *other)
    evaluate(store, evaluator_scorers={"qa-*": ["test_evaluator_daemon:counting"]})
    scored = {s["trace_id"] for s in evaluator_scores(store)}
    assert scored == {t.hex for t in chosen}
    assert rows(store)[chosen[0].hex]["scores"] == {"counting": 1.0}
