"""Exports round-trip (CSV, JSON, JSONL, Parquet, dataset), and results in TrainLoop's layout
validate against TrainLoop's documented field list (data-formats/results.md)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_results_seed import Row, clear, results_database, seed

from evalhouse.datasets import Datasets, wire_rows
from evalhouse.evaluators.results import InvalidRequest, Results
from evalhouse.store import Store

ROWS = [
    Row(
        "r1",
        {"question": "Größe, bitte?", "context": ["a", {"b": 1}]},
        'He said "hi",\nthen left',
        expected="hi",
        scores={"accuracy": 1.0, "tone": 0.25},
        explanations={"accuracy": "exact match"},
        metadata={"topic": "greeting"},
        cost_usd=0.002,
        cost_provenance="inferred",
        input_tokens=12,
        output_tokens=3,
    ),
    Row(
        "r2",
        "plain text input",
        {"answer": 42},
        scores={"accuracy": 0.0},
        error="rate limited",
        cost_usd=None,
        cost_provenance="unknown",
        seconds=1,
    ),
    Row("r2", "plain text input", {"answer": 41}, scores={"accuracy": 0.4}, trial=1, seconds=2),
]


@pytest.fixture(scope="module")
def shared(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        clear(store)
        seed(store, "exp-x", ROWS, name="exports")
        yield store


@pytest.fixture
def results(shared: Store) -> Results:
    return Results(shared)


def _by_trial(records: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["row_id"], int(r["trial"])): r for r in records}


def test_jsonl_and_json_keep_values_as_values(results: Results) -> None:
    export = results.export("exp-x", fmt="jsonl")
    assert export.filename == "exports-exp-x.jsonl"
    assert export.media_type == "application/x-ndjson"
    lines = [json.loads(line) for line in export.data.decode().splitlines()]
    assert len(lines) == 3
    records = _by_trial(lines)
    for row in ROWS:
        record = records[(row.row_id, row.trial)]
        assert record["input"] == row.input
        assert record["output"] == row.output
        assert record["expected"] == row.expected
        assert record["metadata"] == row.metadata
        assert record["scores"] == row.scores
        assert record["error"] == row.error
        assert record["cost_usd"] == row.cost_usd
        assert record["trace_id"] == row.trace_id
        assert record["experiment_name"] == "exports"
    assert records[("r1", 0)]["started_at"] == "2025-03-01T12:00:00.000Z"
    array = json.loads(results.export("exp-x", fmt="json").data)
    assert array == lines


def test_csv_round_trips(results: Results) -> None:
    export = results.export("exp-x", fmt="csv")
    assert export.media_type.startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(export.data.decode())))
    assert len(table) == 3
    records = _by_trial(table)
    for row in ROWS:
        record = records[(row.row_id, row.trial)]
        assert json.loads(record["input"]) == row.input
        assert json.loads(record["output"]) == row.output
        for name in ("accuracy", "tone"):
            cell = record[f"scores.{name}"]
            assert (float(cell) if cell else None) == row.scores.get(name)
        assert record["error"] == row.error
        assert record["cost_usd"] == ("" if row.cost_usd is None else str(row.cost_usd))


def test_parquet_round_trips(results: Results) -> None:
    export = results.export("exp-x", fmt="parquet")
    table = pq.read_table(io.BytesIO(export.data))
    records = _by_trial(table.to_pylist())
    for row in ROWS:
        record = records[(row.row_id, row.trial)]
        assert json.loads(record["input"]) == row.input
        assert record["scores.accuracy"] == row.scores["accuracy"]
        assert record["scores.tone"] == row.scores.get("tone")
        assert record["cost_usd"] == row.cost_usd
        assert record["total_tokens"] == row.input_tokens + row.output_tokens
    assert table.schema.field("trial").type.bit_width == 64
    assert str(table.schema.field("scores.tone").type) == "double"


def test_chosen_fields_and_filters(results: Results) -> None:
    export = results.export("exp-x", fmt="csv", fields=["row_id", "scores"], where="trial = 0")
    lines = export.data.decode().splitlines()
    assert lines == ["row_id,scores.accuracy,scores.tone", "r1,1.0,0.25", "r2,0.0,"]
    picked = results.export("exp-x", fmt="jsonl", fields=["row_id", "input_key", "judge_cost_usd"])
    first = json.loads(picked.data.decode().splitlines()[0])
    assert set(first) == {"row_id", "input_key", "judge_cost_usd"}
    with pytest.raises(InvalidRequest, match="unknown field 'secret'"):
        results.export("exp-x", fields=["row_id", "secret"])
    with pytest.raises(InvalidRequest, match="unknown field"):
        results.export("exp-x", fields=["row_id); DROP TABLE scores; --"])
    with pytest.raises(InvalidRequest, match="unknown export format"):
        results.export("exp-x", fmt="xlsx")


def test_an_experiment_reopens_as_a_dataset(results: Results, shared: Store) -> None:
    export = results.export("exp-x", fmt="dataset")
    lines = [json.loads(line) for line in export.data.decode().splitlines()]
    assert lines == [
        {
            "id": "r1",
            "input": ROWS[0].input,
            "expected": "hi",
            "metadata": {"topic": "greeting"},
        },
        {"id": "r2", "input": "plain text input"},
    ]
    datasets = Datasets(shared)
    version = datasets.push("reopened", wire_rows(lines))
    assert version["rows"] == 2
    _, stored = datasets.load("reopened")
    assert [json.loads(row.input) for row in stored] == [ROWS[0].input, "plain text input"]


# TrainLoop's documented layout: field -> type (None: any JSON value).
RESULT = {
    "timestamp": str,
    "duration": (int, float),
    "total_events": int,
    "suites": dict,
    "summary": dict,
}
SUITE = {
    "events_processed": int,
    "metrics": dict,
    "overall_score": (int, float),
    "tags": list,
    "duration": (int, float),
}
METRIC = {"passed": int, "total": int, "score": (int, float), "details": list}
DETAIL = {"event_id": str, "passed": bool, "input": None, "output": None, "verdict": str}
SUMMARY = {
    "total_suites": int,
    "overall_score": (int, float),
    "total_metrics": int,
    "total_passed": int,
    "total_evaluated": int,
    "pass_rate": (int, float),
}
ERROR = {"timestamp": str, "duration": (int, float), "status": str, "error": dict}


def _valid(document: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, kind in fields.items():
        assert name in document, f"missing {name}"
        if kind is not None:
            assert isinstance(document[name], kind), f"{name}: {document[name]!r}"


def test_results_in_trainloop_layout(results: Results) -> None:
    body = results.trainloop("exp-x")
    _valid(body, RESULT)
    datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00")).astimezone(UTC)
    assert body["total_events"] == 3
    assert list(body["suites"]) == ["exports"]
    suite = body["suites"]["exports"]
    _valid(suite, SUITE)
    assert suite["tags"] == ["support"]
    for metric in suite["metrics"].values():
        _valid(metric, METRIC)
        for detail in metric["details"]:
            _valid(detail, DETAIL)
    accuracy = suite["metrics"]["accuracy"]
    assert (accuracy["passed"], accuracy["total"]) == (1, 3)  # 1.0 passes; 0.0 and 0.4 fail
    assert accuracy["score"] == pytest.approx(1 / 3)
    first = accuracy["details"][0]
    assert (first["event_id"], first["passed"], first["verdict"]) == (
        ROWS[0].trace_id,
        True,
        "exact match",
    )
    assert first["input"] == ROWS[0].input and first["metadata"] == {"topic": "greeting"}
    assert accuracy["details"][1]["verdict"] == "accuracy = 0"
    tone = suite["metrics"]["tone"]
    assert (tone["passed"], tone["total"], tone["score"]) == (0, 1, 0.0)
    summary = body["summary"]
    _valid(summary, SUMMARY)
    assert summary == {
        "total_suites": 1,
        "overall_score": pytest.approx((1 / 3 + 0.0) / 2),
        "total_metrics": 2,
        "total_passed": 1,
        "total_evaluated": 4,
        "pass_rate": pytest.approx(1 / 4),
    }
    assert suite["overall_score"] == summary["overall_score"]
    assert suite["duration"] == pytest.approx(2.1)  # first start to the last row's end
    lenient = results.trainloop("exp-x", pass_threshold=0.2, details=False)
    assert lenient["suites"]["exports"]["metrics"]["accuracy"]["passed"] == 2
    assert lenient["suites"]["exports"]["metrics"]["accuracy"]["details"] == []


def test_scorer_failures_give_the_error_layout_with_partial_results(shared: Store) -> None:
    seed(
        shared,
        "exp-broken",
        [
            Row("a", "q", "x", scores={"accuracy": 1.0}),
            Row("b", "q2", "y", score_errors={"accuracy": "judge returned no JSON"}, seconds=1),
        ],
        name="broken",
    )
    body = Results(shared).trainloop("exp-broken")
    _valid(body, ERROR)
    assert body["status"] == "error"
    error = body["error"]
    assert error["type"] == "ScorerError"
    assert "judge returned no JSON" in error["message"]
    assert error["details"]["metric"] == "accuracy"
    assert error["details"]["suite"] == "broken"
    assert error["details"]["event_id"]
    partial = body["partial_results"]["suites"]["broken"]
    assert partial["status"] == "failed"
    assert partial["events_processed"] == 2
    assert partial["metrics"]["accuracy"]["total"] == 1
