"""Summaries of experiments built with known values: scores, metrics, cost, spans, groups,
aggregate scores, the experiments list, trends and row pages.

Expected numbers are computed here from the seeded values with numpy (and ClickHouse's
the interval formulas of docs/results-api.md written out again), not by the code under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from scipy import stats
from test_results_seed import T0, Row, clear, results_database, seed

from evalhouse.config import AggregateScore
from evalhouse.evaluators.results import ExperimentNotFound, InvalidRequest, Results
from evalhouse.store import Store

ROWS = [
    Row(
        "r1",
        {"q": "refund?"},
        "30 days",
        scores={"accuracy": 1.0, "relevance": 0.8},
        metadata={"topic": "billing"},
        task_duration_ms=100,
        llm_duration_ms=80,
        input_tokens=10,
        output_tokens=5,
        cost_usd=0.01,
        cost_provenance="provided",
        judge_cost_usd=0.001,
        price_data_version="2025-01",
        span_count=4,
    ),
    Row(
        "r2",
        {"q": "invoice?"},
        "in the app",
        scores={"accuracy": 0.0, "relevance": 0.6},
        metadata={"topic": "billing"},
        task_duration_ms=300,
        llm_duration_ms=250,
        input_tokens=20,
        output_tokens=10,
        cache_read_tokens=8,
        cost_usd=0.02,
        cost_provenance="inferred",
        judge_cost_usd=0.002,
        price_data_version="2025-01",
        seconds=1,
    ),
    Row(
        "r3",
        {"q": "where is my order?"},
        "tracking link",
        scores={"accuracy": 1.0},
        score_errors={"relevance": "judge timed out"},
        metadata={"topic": "orders"},
        task_duration_ms=200,
        input_tokens=30,
        output_tokens=15,
        reasoning_tokens=7,
        cost_usd=None,
        cost_provenance="unknown",
        late_spans=1,
        seconds=2,
    ),
    Row(
        "r4",
        {"q": "cancel?"},
        None,
        scores={"accuracy": 0.5, "relevance": 0.9},
        metadata={"topic": "orders"},
        error="task crashed",
        task_duration_ms=400,
        cost_usd=0.04,
        cost_provenance="inferred",
        seconds=3,
    ),
    Row(
        "r5",
        {"q": "address?"},
        "settings page",
        scores={"accuracy": 0.25, "relevance": 0.7},
        metadata={"topic": "orders"},
        task_duration_ms=500,
        cost_usd=0.0,
        cost_provenance="none",
        orphan_spans=1,
        seconds=4,
    ),
    Row(
        "r6",
        {"q": "hello"},
        "hi",
        scores={"accuracy": 0.75},
        task_duration_ms=600,
        cost_usd=None,
        cost_provenance="partly_unknown",
        evaluator_spans=2,
        span_count=6,
        seconds=5,
    ),
]


@pytest.fixture(scope="module")
def shared(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        yield store


@pytest.fixture
def store(shared: Store) -> Store:
    """The module's database, emptied: each test sees only what it seeds."""
    return clear(shared)


@pytest.fixture
def store_with_experiment(store: Store) -> Store:
    seed(store, "exp-1", ROWS, metadata={"model": "gpt-4o", "temperature": 0.2})
    return store


def _values(name: str, rows: list[Row] = ROWS) -> list[float]:
    return [row.scores[name] for row in rows if name in row.scores]


def _interval(values: list[float]) -> tuple[float, float]:
    """Wilson's interval with the effective sample size n·m(1-m)/s² and Student's t critical
    value (docs/results-api.md, "Statistics"), written out here with numpy."""
    x = np.array(values)
    n, m, s2 = len(x), x.mean(), x.var(ddof=1)
    n_eff = n * m * (1 - m) / s2
    z = stats.t.ppf(0.975, n - 1)
    centre = (m + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
    half = z / (1 + z * z / n_eff) * np.sqrt(m * (1 - m) / n_eff + z * z / (4 * n_eff * n_eff))
    return float(centre - half), float(centre + half)


def test_summary_scores_have_mean_count_errors_and_interval(
    store_with_experiment: Store,
) -> None:
    body = Results(store_with_experiment).summary("exp-1")
    assert set(body["scores"]) == {"accuracy", "relevance"}
    for name, errors in (("accuracy", 0), ("relevance", 1)):
        values = _values(name)
        low, high = _interval(values)
        assert 0 <= low <= high <= 1
        assert body["scores"][name] == {
            "mean": pytest.approx(np.mean(values)),
            "count": len(values),
            "errors": errors,
            "stddev": pytest.approx(np.std(values, ddof=1)),
            "ci_low": pytest.approx(low),
            "ci_high": pytest.approx(high),
            "ci_method": "wilson_effective_n",  # continuous scores
        }
    experiment = body["experiment"]
    assert experiment["experiment_id"] == "exp-1"
    assert experiment["rows"] == 6 and experiment["errored_rows"] == 1
    assert experiment["scores"] == {
        "accuracy": pytest.approx(np.mean(_values("accuracy"))),
        "relevance": pytest.approx(np.mean(_values("relevance"))),
    }
    assert experiment["metadata"] == {"model": "gpt-4o", "temperature": 0.2}
    assert experiment["created_at"] == "2025-03-01T12:00:00.000Z"
    assert (experiment["unique_rows"], experiment["trials"]) == (6, 1)


def test_summary_metrics_have_mean_and_percentiles(store_with_experiment: Store) -> None:
    metrics = Results(store_with_experiment).summary("exp-1")["metrics"]
    columns: dict[str, list[Any]] = {
        "task_duration_ms": [r.task_duration_ms for r in ROWS],
        "llm_duration_ms": [r.llm_duration_ms for r in ROWS],
        "input_tokens": [r.input_tokens for r in ROWS],
        "output_tokens": [r.output_tokens for r in ROWS],
        "cache_read_tokens": [r.cache_read_tokens for r in ROWS],
        "reasoning_tokens": [r.reasoning_tokens for r in ROWS],
        "total_tokens": [r.input_tokens + r.output_tokens for r in ROWS],
        # Rows of unknown cost are left out, never counted as $0.
        "cost_usd": [r.cost_usd for r in ROWS if r.cost_usd is not None],
    }
    for name, values in columns.items():
        assert metrics[name] == {
            "mean": pytest.approx(np.mean(values)),
            "p50": pytest.approx(np.percentile(values, 50)),
            "p95": pytest.approx(np.percentile(values, 95)),
        }, name


def test_summary_reports_cost_spans_and_errors(store_with_experiment: Store) -> None:
    body = Results(store_with_experiment).summary("exp-1")
    assert body["cost"] == {
        "total_usd": None,  # two rows have no known price: the total is unknown, not low
        "known_usd": pytest.approx(0.07),
        "per_row_usd": None,
        "judge_usd": pytest.approx(0.003),
        "provenance": {
            "provided": 1,
            "inferred": 2,
            "partly_unknown": 1,
            "unknown": 1,
            "none": 1,
        },
        "price_data_version": "2025-01",
    }
    received = sum(r.span_count - r.evaluator_spans for r in ROWS)
    assert body["spans"] == {"received": received, "used": received - 1, "orphans": 1, "late": 1}
    assert body["errors"] == {"rows": 1, "scorer_errors": 1}


def test_summary_groups_by_metadata_and_filters_rows(store_with_experiment: Store) -> None:
    results = Results(store_with_experiment)
    grouped = results.summary("exp-1", group_by="metadata.topic")["group_by"]
    assert grouped["by"] == "metadata.topic"
    groups = {g["key"]: g for g in grouped["groups"]}
    assert {key: g["rows"] for key, g in groups.items()} == {None: 1, "billing": 2, "orders": 3}
    orders = [r for r in ROWS if (r.metadata or {}).get("topic") == "orders"]
    assert groups["orders"]["scores"]["accuracy"]["mean"] == pytest.approx(
        np.mean(_values("accuracy", orders))
    )
    assert groups["orders"]["scores"]["relevance"]["errors"] == 1
    assert groups["orders"]["metrics"]["task_duration_ms"]["mean"] == pytest.approx(
        np.mean([r.task_duration_ms for r in orders])
    )
    filtered = results.summary("exp-1", where="scores['accuracy'] >= 0.5")
    kept = [r for r in ROWS if r.scores["accuracy"] >= 0.5]
    assert filtered["rows"] == len(kept) == 4
    assert filtered["where"] == "scores['accuracy'] >= 0.5"
    assert filtered["scores"]["accuracy"]["mean"] == pytest.approx(
        np.mean(_values("accuracy", kept))
    )
    assert filtered["experiment"]["rows"] == 6  # the experiment itself is not narrowed
    by_model = results.summary("exp-1", group_by="metadata.model")["group_by"]["groups"]
    assert [(g["key"], g["rows"]) for g in by_model] == [("gpt-4o", 6)]


def test_aggregate_scores_appear_as_scores_everywhere(store_with_experiment: Store) -> None:
    aggregates = {
        "overall": AggregateScore(scores={"accuracy": 3, "relevance": 1}),
        "worst": AggregateScore(method="min", scores=["accuracy", "relevance"]),
        "best": AggregateScore(method="max", scores=["accuracy", "relevance"]),
    }
    results = Results(store_with_experiment, aggregates)
    both = [r for r in ROWS if {"accuracy", "relevance"} <= set(r.scores)]
    expected = {
        "overall": [(3 * r.scores["accuracy"] + r.scores["relevance"]) / 4 for r in both],
        "worst": [min(r.scores["accuracy"], r.scores["relevance"]) for r in both],
        "best": [max(r.scores["accuracy"], r.scores["relevance"]) for r in both],
    }
    body = results.summary("exp-1")
    for name, values in expected.items():
        assert body["scores"][name]["mean"] == pytest.approx(np.mean(values)), name
        assert body["scores"][name]["count"] == len(values)
        # r3's relevance failed: its aggregates are errors, r6 (no relevance) has none.
        assert body["scores"][name]["errors"] == 1
        assert body["experiment"]["scores"][name] == pytest.approx(np.mean(values))
    rows = {r["row_id"]: r for r in results.rows("exp-1")["rows"]}
    assert rows["r1"]["scores"]["overall"] == pytest.approx((3 * 1.0 + 0.8) / 4)
    assert "overall" not in rows["r6"]["scores"] and "overall" not in rows["r6"]["score_errors"]
    assert rows["r3"]["score_errors"]["worst"] == "needs relevance, which failed"
    listed = results.experiments()["experiments"][0]["scores"]
    assert listed["best"] == pytest.approx(np.mean(expected["best"]))


def test_the_list_filters_and_puts_the_newest_first(store: Store) -> None:
    seed(store, "e1", [Row("a", 1, scores={"s": 0.5})], name="qa", metadata={"model": "m1"})
    seed(
        store,
        "e2",
        [Row("a", 1, scores={"s": 0.7})],
        name="qa",
        metadata={"model": "m2", "temperature": 0.5},
        start=T0 + timedelta(hours=1),
    )
    seed(
        store,
        "e3",
        [Row("a", 1, scores={"s": 0.9})],
        name="other",
        dataset="faq",
        start=T0 + timedelta(hours=2),
    )
    results = Results(store)
    ids = lambda body: [e["experiment_id"] for e in body["experiments"]]  # noqa: E731
    everything = results.experiments()
    assert (ids(everything), everything["total"]) == (["e3", "e2", "e1"], 3)
    assert ids(results.experiments(name="qa")) == ["e2", "e1"]
    assert ids(results.experiments(dataset="faq")) == ["e3"]
    assert ids(results.experiments(metadata={"model": "m1"})) == ["e1"]
    assert ids(results.experiments(metadata={"temperature": "0.5"})) == ["e2"]
    page = results.experiments(limit=1, offset=1)
    assert (ids(page), page["total"]) == (["e2"], 3)
    assert results.experiments(limit=5, offset=10) == {"experiments": [], "total": 3}
    # A name means its latest run.
    assert results.summary("qa")["experiment"]["experiment_id"] == "e2"


def test_the_trend_compares_each_score_with_the_previous_run(store: Store) -> None:
    for hour, (accuracy, speed) in enumerate([(0.5, 0.9), (0.6, 0.7), (0.8, 0.7)]):
        seed(
            store,
            f"run-{hour}",
            [Row("a", 1, scores={"accuracy": accuracy, "speed": speed}, cost_usd=0.02)],
            name="nightly",
            start=T0 + timedelta(hours=hour),
        )
    seed(store, "old", [Row("b", 1, scores={"gone": 1.0})], name="nightly", start=T0)
    body = Results(store).trend(name="nightly")
    assert [run["experiment_id"] for run in body["runs"]] == ["old", "run-0", "run-1", "run-2"]
    assert body["runs"][1]["avg_cost_usd"] == pytest.approx(0.02)
    assert body["trend"]["accuracy"] == {"change": pytest.approx(0.2), "direction": "improving"}
    assert body["trend"]["speed"] == {"change": pytest.approx(0.0), "direction": "flat"}
    assert body["trend"]["gone"] == {"change": None, "direction": "flat"}
    by_dataset = Results(store).trend(dataset="support")
    assert len(by_dataset["runs"]) == 4
    with pytest.raises(InvalidRequest):
        Results(store).trend()


def test_the_trend_sees_a_decline(store: Store) -> None:
    for hour, accuracy in enumerate([0.9, 0.7]):
        seed(
            store,
            f"d-{hour}",
            [Row("a", 1, scores={"accuracy": accuracy})],
            name="d",
            start=T0 + timedelta(hours=hour),
        )
    trend = Results(store).trend(name="d")["trend"]["accuracy"]
    assert trend == {"change": pytest.approx(-0.2), "direction": "declining"}


def test_rows_pages_sort_search_and_filter_errors(store_with_experiment: Store) -> None:
    results = Results(store_with_experiment)
    page = results.rows("exp-1", sort="score:accuracy", order="desc", limit=3)
    assert page["total"] == 6
    assert [r["row_id"] for r in page["rows"]] == ["r1", "r3", "r6"]
    assert page["columns"][-2:] == ["score:accuracy", "score:relevance"]
    # Rows without the score come last in both directions.
    ascending = results.rows("exp-1", sort="score:relevance", order="asc")["rows"]
    assert [r["row_id"] for r in ascending] == ["r2", "r5", "r1", "r4", "r3", "r6"]
    slowest = results.rows("exp-1", sort="task_duration_ms", order="desc", limit=2, offset=1)
    assert [r["row_id"] for r in slowest["rows"]] == ["r5", "r4"]
    found = results.rows("exp-1", q="ORDER")["rows"]
    assert [r["row_id"] for r in found] == ["r3"]
    assert [r["row_id"] for r in results.rows("exp-1", q="crashed")["rows"]] == ["r4"]
    assert [r["row_id"] for r in results.rows("exp-1", errors="only")["rows"]] == ["r4"]
    assert [r["row_id"] for r in results.rows("exp-1", errors="scorer_errors")["rows"]] == ["r3"]
    row = results.rows("exp-1", limit=1)["rows"][0]
    assert row["input"] == {"q": "refund?"} and row["output"] == "30 days"
    assert row["metadata"] == {"topic": "billing"} and row["error"] is None
    assert row["cost_usd"] == 0.01 and row["cost_provenance"] == "provided"
    assert results.rows("exp-1", sort="input_tokens")["rows"][-1]["row_id"] == "r3"


def test_unknown_experiments_and_bad_parameters_say_what_to_do(
    store_with_experiment: Store,
) -> None:
    results = Results(store_with_experiment)
    with pytest.raises(ExperimentNotFound, match="evalhouse experiments list"):
        results.summary("nope")
    with pytest.raises(InvalidRequest, match="cannot sort by 'nope'"):
        results.rows("exp-1", sort="nope")
    with pytest.raises(InvalidRequest, match="asc or desc"):
        results.rows("exp-1", order="sideways")
    with pytest.raises(InvalidRequest, match="cannot group by"):
        results.summary("exp-1", group_by="colour")
