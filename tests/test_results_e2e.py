"""End to end: OTLP spans through the real ingest path, the evaluator daemon computes rows and
runs a configured scorer, and the results read what it wrote."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator
from evalhouse.evaluators.results import Results
from evalhouse.store import OtlpSink, Store

MS = 1_000_000
# experiment -> per row (output, judge score reported by a scorer span, task ms)
RUNS = {
    "run-1": [("Paris", 1.0, 200), ("Lyon", 0.0, 300), ("Rome", 1.0, 250)],
    "run-2": [("Paris", 0.0, 150), ("Berlin", 1.0, 260), ("Rome", 1.0, 240)],
}
EXPECTED = ["Paris", "Berlin", "Rome"]


def _experiment_spans(experiment: str, start_ns: int) -> list[dict[str, Any]]:
    spans = []
    for index, (output, judged, task_ms) in enumerate(RUNS[experiment]):
        trace = os.urandom(16)
        root = span(
            f"eval row {index}",
            {
                "evalhouse.span.purpose": "eval",
                "evalhouse.experiment.name": "capitals",
                "evalhouse.experiment.id": experiment,
                "evalhouse.dataset.name": "capitals-v1",
                # No row id: rows are matched (and trials grouped) by their input.
                "evalhouse.input": json.dumps({"country": ["France", "Germany", "Italy"][index]}),
                "evalhouse.expected": json.dumps(EXPECTED[index]),
                "evalhouse.output": json.dumps(output),
            },
            trace_id=trace,
            start_ns=start_ns + index * 1000 * MS,
            duration_ns=(task_ms + 50) * MS,
        )
        task = span(
            "task",
            {"evalhouse.span.purpose": "task"},
            trace_id=trace,
            parent_span_id=root["span_id"],
            start_ns=start_ns + index * 1000 * MS + MS,
            duration_ns=task_ms * MS,
        )
        judge = span(
            "score judge",
            {
                "evalhouse.span.purpose": "scorer",
                "evalhouse.score.name": "judge",
                "evalhouse.score.value": judged,
            },
            trace_id=trace,
            parent_span_id=root["span_id"],
            start_ns=start_ns + index * 1000 * MS + (task_ms + 5) * MS,
            duration_ns=MS,
        )
        spans += [root, task, judge]
    return spans


def test_results_read_what_the_daemon_computed(store: Store, tmp_path: Path) -> None:
    start = time.time_ns() - 3_600_000 * MS
    sink = OtlpSink(store)
    for offset, experiment in enumerate(RUNS):
        request = trace_request(_experiment_spans(experiment, start + offset * 60_000 * MS))
        sink.insert_otlp("traces", _length_delimited([request.SerializeToString()]), experiment)
    settings = load_settings(
        data_dir=tmp_path,
        evaluator_quiet_seconds=0,
        evaluator_scorers={"capitals": ["exact_match"]},
    )
    evaluator = Evaluator(settings, store)
    try:
        evaluator.run_until_idle(timeout=120)
    finally:
        evaluator.close()

    results = Results(store)
    listed = results.experiments(name="capitals")
    assert [e["experiment_id"] for e in listed["experiments"]] == ["run-2", "run-1"]
    summary = results.summary("run-2")
    assert summary["scores"]["judge"]["mean"] == pytest.approx(2 / 3)
    assert summary["scores"]["exact_match"]["mean"] == pytest.approx(1.0)
    assert summary["metrics"]["task_duration_ms"]["mean"] == pytest.approx((150 + 260 + 240) / 3)

    body = results.compare("run-2")  # the previous run of "capitals" is the baseline
    assert body["baseline"]["experiment_id"] == "run-1"
    assert body["matched_rows"] == 3 and body["unmatched"] == {"baseline": 0, "candidate": 0}
    exact = body["scores"]["exact_match"]
    assert (exact["improvements"], exact["regressions"], exact["unchanged"]) == (1, 0, 2)
    judge = body["scores"]["judge"]
    assert (judge["improvements"], judge["regressions"], judge["unchanged"]) == (1, 1, 1)
    assert judge["diff"] == pytest.approx(0.0)
    worst = body["rows"][0]
    assert worst["baseline"]["input"] == {"country": "France"}
    assert worst["diffs"]["judge"] == pytest.approx(-1.0)
    duration = body["metrics"]["task_duration_ms"]
    assert duration["diff"] == pytest.approx(((150 - 200) + (260 - 300) + (240 - 250)) / 3)


def _model_run(experiment: str, model: str, start_ns: int) -> list[dict[str, Any]]:
    """Two rows of "costing", each a task calling ``model`` once (openai's GenAI attributes)."""
    spans = []
    for index, country in enumerate(["France", "Italy"]):
        trace = os.urandom(16)
        at = start_ns + index * 1000 * MS
        root = span(
            "eval",
            {
                "evalhouse.span.purpose": "eval",
                "evalhouse.experiment.name": "costing",
                "evalhouse.experiment.id": experiment,
                "evalhouse.experiment.metadata": json.dumps({"model": model}),
                "evalhouse.dataset.name": "costing-v1",
                "evalhouse.input": json.dumps(country),
                "evalhouse.output": json.dumps("Paris"),
            },
            trace_id=trace,
            start_ns=at,
            duration_ns=300 * MS,
        )
        task = span(
            "task",
            {"evalhouse.span.purpose": "task"},
            trace_id=trace,
            parent_span_id=root["span_id"],
            start_ns=at + MS,
            duration_ns=200 * MS,
        )
        call = span(
            f"chat {model}",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": model,
                "gen_ai.usage.input_tokens": 100,
                "gen_ai.usage.output_tokens": 20,
            },
            trace_id=trace,
            parent_span_id=task["span_id"],
            start_ns=at + 2 * MS,
            duration_ns=150 * MS,
        )
        spans += [root, task, call]
    return spans


def test_an_unknown_cost_names_the_model_without_a_price(store: Store, tmp_path: Path) -> None:
    """Issue 17: compare and benchmark say which model made a cost unknown, never silence."""
    start = time.time_ns() - 3_600_000 * MS
    sink = OtlpSink(store)
    for offset, (experiment, model) in enumerate(
        [("priced-run", "gpt-4o-mini"), ("tiny-run", "tiny-model")]
    ):
        request = trace_request(_model_run(experiment, model, start + offset * 60_000 * MS))
        sink.insert_otlp("traces", _length_delimited([request.SerializeToString()]), experiment)
    evaluator = Evaluator(load_settings(data_dir=tmp_path, evaluator_quiet_seconds=0), store)
    try:
        evaluator.run_until_idle(timeout=120)
    finally:
        evaluator.close()

    results = Results(store)
    cost = results.compare("tiny-run", "priced-run")["metrics"]["cost_usd"]
    assert cost["missing"] == (
        "unknown for candidate (candidate: no price for openai/tiny-model (2 of 2 rows)); "
        "no matched row has a known cost on both sides"
    )
    groups = {g["key"]: g for g in results.benchmark(dataset="costing-v1")["groups"]}
    assert groups["tiny-model"]["cost_total_usd"] is None
    assert groups["tiny-model"]["cost_missing"] == "no price for openai/tiny-model (2 of 2 rows)"
    assert groups["tiny-model"]["cost_provenance"]["unknown"] == 2
    priced = groups["gpt-4o-mini"]
    assert priced["cost_missing"] is None and priced["cost_provenance"]["inferred"] == 2
    assert priced["price_data_version"].startswith("genai-prices ")
