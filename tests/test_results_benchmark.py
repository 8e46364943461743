"""Benchmark view: experiments of one dataset grouped by model, best overall, best value and
cost savings; and the same in TrainLoop's benchmark layout (cost_analysis, comparison)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_results_seed import Row, clear, results_database, seed

from evalhouse.evaluators.results import ExperimentNotFound, Results

# model -> per row (accuracy, cost, duration ms, tokens)
MODELS = {
    "big": [(1.0, 0.010, 900.0, 300), (0.9, 0.012, 1100.0, 340), (1.0, 0.008, 1000.0, 260)],
    "small": [(0.8, 0.001, 300.0, 280), (0.9, 0.001, 350.0, 300), (0.7, 0.001, 250.0, 320)],
    "mystery": [(0.95, None, 500.0, 100), (0.5, 0.002, 500.0, 100), (0.6, 0.002, 500.0, 100)],
}


@pytest.fixture(scope="module")
def results(chdb_dsn: str) -> Iterator[Results]:
    with results_database(chdb_dsn) as store:
        clear(store)
        for model, rows in MODELS.items():
            seeded = [
                Row(
                    f"q{i}",
                    {"q": i},
                    "a",
                    scores={"accuracy": accuracy},
                    cost_usd=cost,
                    task_duration_ms=duration,
                    input_tokens=tokens,
                )
                for i, (accuracy, cost, duration, tokens) in enumerate(rows)
            ]
            seed(store, f"exp-{model}", seeded, dataset="bench", metadata={"model": model})
        # Another dataset's experiment stays out of the benchmark.
        seed(store, "exp-x", [Row("q", 1, scores={"accuracy": 1.0})], metadata={"model": "big"})
        yield Results(store)


def test_groups_add_up_each_model(results: Results) -> None:
    body = results.benchmark(dataset="bench", by="metadata.model")
    groups = {g["key"]: g for g in body["groups"]}
    assert set(groups) == set(MODELS)
    for model, rows in MODELS.items():
        group = groups[model]
        assert group["experiments"] == 1 and group["experiment_ids"] == [f"exp-{model}"]
        assert group["rows"] == 3
        assert group["score"] == pytest.approx(sum(r[0] for r in rows) / 3)
        assert group["avg_task_duration_ms"] == pytest.approx(sum(r[2] for r in rows) / 3)
        assert group["total_tokens"] == sum(r[3] for r in rows)
        assert group["pass_counts"]["accuracy"] == {
            "passed": sum(r[0] >= 0.5 for r in rows),
            "total": 3,
        }
    assert groups["big"]["cost_total_usd"] == pytest.approx(0.030)
    assert groups["small"]["cost_per_row_usd"] == pytest.approx(0.001)
    # One row of unknown price: no total, and no place in the value ranking.
    assert groups["mystery"]["cost_total_usd"] is None
    assert groups["mystery"]["cost_unknown_rows"] == 1


def test_best_overall_best_value_and_savings(results: Results) -> None:
    body = results.benchmark(dataset="bench")  # by metadata.model by default
    assert body["best_overall"] == "big"
    assert body["best_value"] == "small"
    big, small = 0.030 / 3, 0.001
    assert body["cost_savings"] == {
        "best_overall": "big",
        "best_value": "small",
        "per_row_usd": pytest.approx(big - small),
        "total_usd": pytest.approx((big - small) * 3),
        "fraction": pytest.approx((big - small) / big),
        "score_difference": pytest.approx(0.8 - (2.9 / 3)),
    }


def test_benchmarks_by_experiment_and_by_score(results: Results) -> None:
    body = results.benchmark(dataset="bench", by="experiment")
    assert [g["key"] for g in body["groups"]] == ["qa"]
    assert body["groups"][0]["experiments"] == 3
    with pytest.raises(ExperimentNotFound, match="no experiment ran on dataset 'nope'"):
        results.benchmark(dataset="nope")


def test_trainloop_benchmark_layout(results: Results) -> None:
    body = results.benchmark(dataset="bench", by="metadata.model", layout="trainloop")
    assert set(body) >= {"timestamp", "type", "providers", "total_samples", "results"}
    assert body["type"] == "benchmark"
    assert sorted(body["providers"]) == sorted(MODELS)
    assert body["total_samples"] == 3
    big = body["results"]["big"]
    assert big["metrics"]["accuracy"] == {"passed": 3, "total": 3, "score": 1.0}
    assert big["overall_score"] == pytest.approx(2.9 / 3)
    assert big["cost_analysis"] == {
        "total_cost": pytest.approx(0.030),
        "cost_per_token": pytest.approx(0.030 / 900),
        "cost_per_score": pytest.approx(0.030 / 3),
    }
    assert big["performance"] == {"avg_response_time": pytest.approx(1.0), "total_tokens": 900}
    assert body["results"]["mystery"]["cost_analysis"]["total_cost"] is None
    assert body["comparison"] == {
        "best_overall": "big",
        "best_value": "small",
        "cost_savings": pytest.approx((0.01 - 0.001) / 0.01),
    }
