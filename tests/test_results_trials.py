"""Trials: per input the mean and spread of each score across trials; flaky inputs flagged.

Flaky: a score differs between trials (a pass/fail flip is such a difference), or a scorer
failed on some trials of the input and not on others. Stable inputs are not flaky, whatever
their score.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from test_results_seed import Row, clear, results_database, seed

from evalhouse.evaluators.results import Results

# input -> per-trial (accuracy, relevance); None = that scorer failed on the trial.
TRIALS: dict[str, list[tuple[float | None, float]]] = {
    "stable-pass": [(1.0, 0.8), (1.0, 0.8), (1.0, 0.8)],
    "stable-fail": [(0.0, 0.3), (0.0, 0.3), (0.0, 0.3)],
    "flip": [(1.0, 0.5), (0.0, 0.5), (1.0, 0.5)],
    "drift": [(0.6, 0.5), (0.6, 0.7), (0.6, 0.6)],
    "erratic-scorer": [(1.0, 0.9), (None, 0.9), (1.0, 0.9)],
}


@pytest.fixture(scope="module")
def results(chdb_dsn: str) -> Iterator[Results]:
    with results_database(chdb_dsn) as store:
        clear(store)
        rows = []
        for index, (name, trials) in enumerate(TRIALS.items()):
            for trial, (accuracy, relevance) in enumerate(trials):
                scores = {"relevance": relevance}
                errors = {}
                if accuracy is None:
                    errors["accuracy"] = "judge returned no verdict"
                else:
                    scores["accuracy"] = accuracy
                # Row ids differ per trial on purpose: trials group by input.
                rows.append(
                    Row(
                        f"{name}-{trial}",
                        {"case": name},
                        "out",
                        scores=scores,
                        score_errors=errors,
                        trial=trial,
                        seconds=index * 10 + trial,
                    )
                )
        rows.append(Row("single", {"case": "single"}, "out", scores={"accuracy": 0.5}))
        seed(store, "exp-trials", rows)
        yield Results(store)


def test_every_input_gets_mean_and_spread_per_score(results: Results) -> None:
    body = results.trials("exp-trials")
    inputs = {item["input"]["case"]: item for item in body["inputs"]}
    assert body["total"] == 6
    for name, trials in TRIALS.items():
        item = inputs[name]
        assert item["trials"] == 3
        for index, score in enumerate(("accuracy", "relevance")):
            values = [t[index] for t in trials if t[index] is not None]
            stats = item["scores"][score]
            assert stats["mean"] == pytest.approx(np.mean(values))
            assert stats["stddev"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
            assert (stats["min"], stats["max"]) == (min(values), max(values))
            assert stats["count"] == len(values)
            assert stats["errors"] == 3 - len(values)
    single = inputs["single"]
    assert single["trials"] == 1 and single["flaky"] is False
    assert single["scores"]["accuracy"]["stddev"] is None


def test_flaky_inputs_are_flagged_and_come_first(results: Results) -> None:
    body = results.trials("exp-trials")
    flags = {item["input"]["case"]: item["flaky"] for item in body["inputs"]}
    assert flags == {
        "stable-pass": False,
        "stable-fail": False,
        "flip": True,
        "drift": True,
        "erratic-scorer": True,
        "single": False,
    }
    assert body["flaky"] == 3
    assert [item["flaky"] for item in body["inputs"]] == [True] * 3 + [False] * 3
    # Largest spread first: the pass/fail flip (1.0) before the drift (0.2).
    assert [item["input"]["case"] for item in body["inputs"][:2]] == ["flip", "drift"]


def test_only_flaky_inputs_on_request_and_paginated(results: Results) -> None:
    flaky = results.trials("exp-trials", flaky_only=True)
    assert flaky["total"] == 3
    assert {item["input"]["case"] for item in flaky["inputs"]} == {
        "flip",
        "drift",
        "erratic-scorer",
    }
    page = results.trials("exp-trials", limit=2, offset=1)
    assert len(page["inputs"]) == 2 and page["total"] == 6
    assert page["inputs"][0]["input"]["case"] == "drift"


def test_trial_spread_can_be_tolerated(results: Results) -> None:
    lenient = results.trials("exp-trials", tolerance=0.5)
    flags = {item["input"]["case"]: item["flaky"] for item in lenient["inputs"]}
    assert flags["drift"] is False and flags["flip"] is True
    assert flags["erratic-scorer"] is True  # a failing scorer is flaky at any tolerance
