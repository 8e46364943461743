"""Diff mode on experiments built to have known improvements, regressions, ties, unmatched
rows and trials; the CLI gate ``--fail-on-regression`` in both directions.

Expected values come from the seeded rows: per-key means over trials computed here, paired
differences with numpy, intervals and p-values from ClickHouse's ``studentTTestOneSample``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from test_results_seed import T0, Row, clear, results_database, seed

from evalhouse.config import AggregateScore
from evalhouse.evaluators.results import InvalidRequest, Results
from evalhouse.store import Store
from evalhouse.surfaces.cli import main as cli_main

ACCURACY_B = [0.2, 0.4, 0.5, 0.5, 0.6, 0.8, 1.0, 0.3]
ACCURACY_C = [0.5, 0.4, 0.9, 0.5, 0.2, 0.9, 1.0, 0.7]  # +, =, +, =, -, +, =, +
SAFETY_B = [0.9, 0.95, 0.85, 0.9, 1.0, 0.92, 0.88, 0.9]
SAFETY_DROP = [0.3, 0.25, 0.35, 0.3, 0.28, 0.32, 0.3, 0.31]
FLUENCY_B = [0.5, 0.6, 0.4, 0.55, 0.5, 0.45, 0.6, 0.5]
FLUENCY_GAIN = [0.2, 0.22, 0.18, 0.21, 0.19, 0.2, 0.23, 0.2]


def _baseline() -> list[Row]:
    rows = [
        Row(
            f"b{i}",
            {"question": f"q{i}"},
            f"old answer {i}",
            scores={"accuracy": ACCURACY_B[i], "safety": SAFETY_B[i], "fluency": FLUENCY_B[i]},
            metadata={"case": f"c{i}"},
            task_duration_ms=1000.0,
            input_tokens=100,
            output_tokens=50,
            cost_usd=0.01,
            seconds=i,
        )
        for i in range(8)
    ]
    rows[1].scores["rare"] = 0.5
    rows.append(Row("b8", {"question": "q8"}, "only in baseline", scores={"accuracy": 1.0}))
    return rows


def _candidate() -> list[Row]:
    rows = []
    for i in range(8):
        scores = {
            "accuracy": ACCURACY_C[i],
            "safety": SAFETY_B[i] - SAFETY_DROP[i],
            "fluency": FLUENCY_B[i] + FLUENCY_GAIN[i],
        }
        common: dict[str, Any] = {
            "metadata": {"case": f"c{i}"},
            "task_duration_ms": 800.0 + i,
            "input_tokens": 100,
            "output_tokens": 50,
            "cost_usd": None if i == 7 else 0.012,
            "seconds": i,
        }
        if i == 0:
            # Two trials of q0: the comparison uses their mean.
            for trial, spread in enumerate((-0.1, 0.1)):
                trial_scores = {name: value + spread for name, value in scores.items()}
                output = f"new {trial}"
                q0 = {"question": "q0"}
                rows.append(Row("c0", q0, output, scores=trial_scores, trial=trial, **common))
            continue
        if i == 1:
            scores["rare"] = 0.3
        rows.append(Row(f"c{i}", {"question": f"q{i}"}, f"new answer {i}", scores=scores, **common))
    rows.append(Row("c9", {"question": "q9"}, "new only", scores={"accuracy": 0.0}))
    rows.append(Row("c10", {"question": "q10"}, "new only", scores={"accuracy": 0.0}))
    return rows


@pytest.fixture(scope="module")
def shared(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        clear(store)
        seed(store, "base", _baseline(), name="qa")
        seed(store, "cand", _candidate(), name="qa", start=T0 + timedelta(hours=1))
        yield store


@pytest.fixture(scope="module")
def body(shared: Store) -> dict[str, Any]:
    return Results(shared).compare("cand", "base")


def _per_key(rows: list[Row], value: Any) -> dict[str, float]:
    """Mean over trials per input, of ``value(row)`` where it is known."""
    groups: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        v = value(row)
        if v is not None:
            groups[json.dumps(row.input, sort_keys=True)].append(v)
    return {key: float(np.mean(values)) for key, values in groups.items()}


def _expected(shared: Store, name: str, value: Any, alpha: float = 0.05) -> dict[str, Any]:
    b, c = _per_key(_baseline(), value), _per_key(_candidate(), value)
    keys = sorted(set(b) & set(c))
    diffs = [c[k] - b[k] for k in keys]
    expected: dict[str, Any] = {
        "n": len(keys),
        "baseline_mean": float(np.mean([b[k] for k in keys])),
        "candidate_mean": float(np.mean([c[k] for k in keys])),
        "diff": float(np.mean(diffs)),
        "diffs": diffs,
    }
    if len(keys) > 1 and np.std(diffs) > 0:
        ((test,),) = shared.query(
            "SELECT studentTTestOneSample({level:Float64})(d, 0) FROM "
            "(SELECT arrayJoin({d:Array(Float64)}) AS d)",
            {"d": diffs, "level": 1 - alpha},
        )
        parts = list(test.values()) if isinstance(test, dict) else list(test)
        expected.update(p_value=parts[1], ci_low=parts[2], ci_high=parts[3])
    return expected


def _check(got: dict[str, Any], expected: dict[str, Any]) -> None:
    assert got["matched"] == expected["n"]
    for key in ("baseline_mean", "candidate_mean", "diff"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    for key in ("p_value", "ci_low", "ci_high"):
        if key in expected:
            assert got[key] == pytest.approx(expected[key], rel=1e-6, abs=1e-12), key


def _score(name: str) -> Any:
    return lambda row: row.scores.get(name)


def test_matching_counts_keys_both_sides_have(body: dict[str, Any]) -> None:
    assert body["matched_rows"] == 8
    assert body["unmatched"] == {"baseline": 1, "candidate": 2}
    assert body["rows_total"] == 11
    assert body["key"] == "input"
    assert (body["baseline"]["experiment_id"], body["candidate"]["experiment_id"]) == (
        "base",
        "cand",
    )
    assert body["candidate"]["rows"] == 11  # q0 ran twice


def test_a_mixed_change_is_no_significant_change(shared: Store, body: dict[str, Any]) -> None:
    accuracy = body["scores"]["accuracy"]
    expected = _expected(shared, "accuracy", _score("accuracy"))
    _check(accuracy, expected)
    assert (accuracy["improvements"], accuracy["regressions"], accuracy["unchanged"]) == (4, 1, 3)
    assert expected["p_value"] > 0.05
    assert accuracy["verdict"] == "no significant change"


def test_a_consistent_drop_is_a_regression(shared: Store, body: dict[str, Any]) -> None:
    safety = body["scores"]["safety"]
    expected = _expected(shared, "safety", _score("safety"))
    _check(safety, expected)
    assert (safety["improvements"], safety["regressions"], safety["unchanged"]) == (0, 8, 0)
    assert expected["p_value"] < 1e-6
    assert safety["ci_high"] < 0
    assert safety["verdict"] == "regressed"


def test_a_consistent_gain_is_an_improvement(shared: Store, body: dict[str, Any]) -> None:
    fluency = body["scores"]["fluency"]
    _check(fluency, _expected(shared, "fluency", _score("fluency")))
    assert (fluency["improvements"], fluency["regressions"], fluency["unchanged"]) == (8, 0, 0)
    assert fluency["ci_low"] > 0
    assert fluency["verdict"] == "improved"


def test_one_matched_row_is_insufficient_data(body: dict[str, Any]) -> None:
    rare = body["scores"]["rare"]
    assert rare["matched"] == 1
    assert rare["diff"] == pytest.approx(-0.2)
    assert (rare["ci_low"], rare["ci_high"], rare["p_value"]) == (None, None, None)
    assert rare["verdict"] == "insufficient data"


def test_metrics_are_better_when_lower(shared: Store, body: dict[str, Any]) -> None:
    duration = body["metrics"]["task_duration_ms"]
    _check(duration, _expected(shared, "duration", lambda row: row.task_duration_ms))
    assert (duration["improvements"], duration["regressions"]) == (8, 0)
    assert duration["verdict"] == "improved"
    cost = body["metrics"]["cost_usd"]
    # q7's candidate cost is unknown: that key drops out of the cost comparison.
    assert cost["matched"] == 7
    assert cost["diff"] == pytest.approx(0.002)
    assert (cost["improvements"], cost["regressions"], cost["unchanged"]) == (0, 7, 0)
    assert (cost["p_value"], cost["verdict"]) == (0.0, "regressed")
    tokens = body["metrics"]["total_tokens"]
    assert (tokens["diff"], tokens["unchanged"], tokens["p_value"]) == (0.0, 8, 1.0)
    # No change at all is below any practical threshold: "unchanged".
    assert tokens["verdict"] == "unchanged"


def test_rows_come_largest_regression_first(body: dict[str, Any]) -> None:
    rows = body["rows"]
    matched = [row for row in rows if row["baseline"] and row["candidate"]]
    worst = [min(row["diffs"].values()) for row in matched]
    assert worst == sorted(worst)
    assert matched[0]["baseline"]["input"] == {"question": "q4"}  # accuracy -0.4
    assert matched[0]["diffs"]["accuracy"] == pytest.approx(-0.4)
    assert [row["baseline"] is None for row in rows[8:]] == [False, True, True]
    assert rows[8]["candidate"] is None and rows[8]["baseline"]["output"] == "only in baseline"
    first = next(row for row in matched if row["candidate"]["input"] == {"question": "q0"})
    assert first["candidate"]["trials"] == 2
    assert first["candidate"]["scores"]["safety"] == pytest.approx(0.9 - 0.3)
    assert first["baseline"]["output"] == "old answer 0"
    assert first["candidate"]["output"] == "new 0"
    assert first["candidate"]["metrics"]["task_duration_ms"] == 800.0


def test_rows_can_follow_one_score_and_paginate(shared: Store) -> None:
    body = Results(shared).compare("cand", "base", score="fluency", limit=3, offset=1)
    gains = sorted(g for g in FLUENCY_GAIN)
    assert [row["diffs"]["fluency"] for row in body["rows"]] == pytest.approx(gains[1:4])


def test_a_comparison_key_matches_rows_by_metadata(shared: Store) -> None:
    body = Results(shared).compare("cand", "base", key="JSONExtractString(metadata, 'case')")
    # b0..b7 and c0..c7 share cases c0..c7; b8, c9 and c10 have none: they meet on ''.
    assert body["key"] == "JSONExtractString(metadata, 'case')"
    assert body["matched_rows"] == 9
    assert body["unmatched"] == {"baseline": 0, "candidate": 0}
    assert body["scores"]["safety"]["regressions"] == 8


def test_the_baseline_defaults_to_the_previous_run(shared: Store) -> None:
    results = Results(shared)
    body = results.compare("cand")
    assert body["baseline"]["experiment_id"] == "base"
    assert results.compare("qa", "base")["candidate"]["experiment_id"] == "cand"
    with pytest.raises(InvalidRequest, match="no earlier run"):
        results.compare("base")
    with pytest.raises(InvalidRequest, match="same experiment"):
        results.compare("cand", "cand")


def test_alpha_decides_significance(shared: Store) -> None:
    strict = Results(shared).compare("cand", "base", alpha=1e-12)
    assert strict["alpha"] == 1e-12
    assert strict["scores"]["safety"]["verdict"] == "no significant change"
    expected = _expected(shared, "safety", _score("safety"), alpha=0.2)
    loose = Results(shared, alpha=0.2).compare("cand", "base")
    _check(loose["scores"]["safety"], expected)


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1, 1.5])
def test_an_alpha_outside_0_1_is_refused_not_replaced_by_the_default(
    shared: Store, alpha: float
) -> None:
    # alpha=0 once fell back to the default silently (`alpha or default`); now no answer
    # is given at a level the caller did not ask for.
    refusal = f"alpha={alpha:g}: the significance level must be in (0, 1)"
    results = Results(shared)
    with pytest.raises(InvalidRequest, match=refusal.replace("(", r"\(").replace(")", r"\)")):
        results.compare("cand", "base", alpha=alpha)
    with pytest.raises(InvalidRequest, match="must be in"):
        results.summary("cand", alpha=alpha)
    with pytest.raises(InvalidRequest, match="must be in"):
        Results(shared, alpha=alpha)


def test_an_explicit_alpha_is_honoured_everywhere(
    shared: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    results = Results(shared, alpha=0.2)
    assert results.summary("cand", alpha=0.01)["alpha"] == 0.01
    assert results.summary("cand")["alpha"] == 0.2
    assert results.compare("cand", "base", alpha=0.01)["alpha"] == 0.01
    code, out, err = _cli(capsys, shared, "compare", "base", "cand", "--alpha", "0", "--json")
    assert (code, out) == (1, "")
    assert "alpha=0: the significance level must be in (0, 1)" in err


def test_aggregate_scores_are_compared_like_scores(shared: Store) -> None:
    aggregates = {"overall": AggregateScore(scores={"accuracy": 1, "safety": 1})}
    body = Results(shared, aggregates).compare("cand", "base")

    def overall(row: Row) -> float | None:
        if "accuracy" in row.scores and "safety" in row.scores:
            return (row.scores["accuracy"] + row.scores["safety"]) / 2
        return None

    _check(body["scores"]["overall"], _expected(shared, "overall", overall))


def _cli(capsys: pytest.CaptureFixture[str], shared: Store, *args: str) -> tuple[int, str, str]:
    dsn = f"{shared.dsn}?database={shared.database}"
    code = cli_main([*args, "--clickhouse", dsn])
    out, err = capsys.readouterr()
    return code, out, err


def test_fail_on_regression_exits_1_only_on_a_significant_regression(
    shared: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, shared, "compare", "base", "cand", "--fail-on-regression")
    assert code == 1
    assert "significant regression of safety" in err
    assert "REGRESSED" in out and "IMPROVED" in out  # the verdict table is printed either way
    code, out, _ = _cli(
        capsys, shared, "compare", "base", "cand", "--fail-on-regression", "--score", "fluency"
    )
    assert code == 0 and "IMPROVED" in out
    code, _, _ = _cli(
        capsys,
        shared,
        "experiments",
        "compare",
        "base",
        "cand",
        "--fail-on-regression",
        "--score",
        "accuracy",
        "--score",
        "safety",
    )
    assert code == 1
    code, _, _ = _cli(capsys, shared, "compare", "base", "cand", "--alpha", "1e-12",
                      "--fail-on-regression")  # fmt: skip
    assert code == 0
    code, _, _ = _cli(capsys, shared, "compare", "base", "cand")  # no gate: always 0
    assert code == 0
    code, _, err = _cli(capsys, shared, "compare", "base", "cand", "--fail-on-regression",
                        "--score", "nope")  # fmt: skip
    assert code == 1 and "no matched rows carry score 'nope'" in err


def test_compare_json_has_the_stable_keys(
    shared: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, shared, "compare", "cand", "--json")
    assert code == 0
    body = json.loads(out)
    assert {"baseline", "candidate", "matched_rows", "unmatched", "scores", "metrics", "rows"} <= (
        set(body)
    )
    assert set(body["scores"]["safety"]) >= {
        "baseline_mean",
        "candidate_mean",
        "diff",
        "ci_low",
        "ci_high",
        "p_value",
        "improvements",
        "regressions",
        "unchanged",
        "verdict",
    }
    assert set(body["metrics"]["task_duration_ms"]) == set(body["scores"]["safety"])
    assert set(body["rows"][0]) == {"key", "baseline", "candidate", "diffs"}


@pytest.fixture(scope="module")
def twins(shared: Store) -> Store:
    """Two runs of the same task: the same outputs and scores, a few ms of timing noise (the
    second always 3.4 ms slower: a paired test calls that significant), and a third run
    whose model has no price."""
    for experiment_id, hours, noise, cost in (
        ("twin-1", 10, 0.0, 0.002),
        ("twin-2", 11, 3.4, 0.002),
        ("twin-unpriced", 12, 0.0, None),
    ):
        rows = [
            Row(
                f"t{i}",
                {"question": f"same {i}"},
                f"answer {i}",
                scores={"exact": float(i % 4 != 0), "judge": 0.5 + (i % 5) / 10},
                task_duration_ms=400.0 + 7 * (i % 6) + noise + 0.1 * (i % 3),
                llm_duration_ms=300.0 + noise,
                input_tokens=120,
                output_tokens=30,
                cost_usd=cost,
                cost_provenance="inferred" if cost is not None else "unknown",
                seconds=i,
            )
            for i in range(40)
        ]
        if experiment_id == "twin-1":
            rows[0].scores["only_before"] = 1.0
        seed(shared, experiment_id, rows, name="twins", dataset="twins",
             start=T0 + timedelta(hours=hours))  # fmt: skip
    return shared


def test_identical_runs_report_no_regression(
    twins: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 17: noise is not a regression. Durations +3.4 ms with p < 0.05 are "unchanged"
    (below 10% and 50 ms); equal tokens, cost and scores are not regressions either."""
    body = Results(twins).compare("twin-2", "twin-1")
    duration = body["metrics"]["task_duration_ms"]
    assert duration["diff"] == pytest.approx(3.4) and duration["p_value"] < 0.05
    assert duration["min_change"] == pytest.approx(50.0)  # 10% of ~418 ms is below 50 ms
    assert duration["verdict"] == "unchanged"
    assert body["metrics"]["llm_duration_ms"]["verdict"] == "unchanged"
    verdicts = {name: m["verdict"] for name, m in body["metrics"].items()}
    assert "regressed" not in verdicts.values() and "improved" not in verdicts.values()
    assert {body["scores"][n]["verdict"] for n in ("exact", "judge")} == {"no significant change"}
    assert body["practical_thresholds"]["task_duration_ms"] == {"relative": 0.1, "absolute": 50.0}
    assert body["practical_thresholds"]["cost_usd"] == {"relative": 0.05, "absolute": 0.0}
    # A score only the baseline has is listed, saying why it is not compared.
    assert body["scores"]["only_before"]["missing"].startswith("only the baseline has this score")
    assert body["scores"]["only_before"]["verdict"] == "insufficient data"

    dsn = f"{twins.dsn}?database={twins.database}"
    code = cli_main(["compare", "twin-1", "twin-2", "--fail-on-regression", "--clickhouse", dsn])
    out = capsys.readouterr().out
    assert code == 0 and "REGRESSED" not in out
    assert "only_before: only the baseline has this score" in out
    assert "Baseline  twins (twin-1, 40 rows): pinned by id" in out
    assert "Cost source: baseline inferred, candidate inferred" in out


def test_thresholds_come_from_the_settings(twins: Store) -> None:
    from evalhouse.config import load_settings

    settings = load_settings(compare_duration_min_ms=1.0, compare_duration_min_relative=0.0)
    body = Results.from_settings(twins, settings).compare("twin-2", "twin-1")
    assert body["metrics"]["task_duration_ms"]["min_change"] == 1.0
    assert body["metrics"]["task_duration_ms"]["verdict"] == "regressed"  # 3.4 ms now counts


def test_an_unknown_cost_is_missing_with_its_reason(
    twins: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    body = Results(twins).compare("twin-unpriced", "twin-1")
    cost = body["metrics"]["cost_usd"]
    assert (cost["matched"], cost["verdict"]) == (0, "insufficient data")
    assert cost["missing"] == (
        "unknown for candidate (candidate: no price for the model calls of 40 of 40 rows); "
        "no matched row has a known cost on both sides"
    )
    dsn = f"{twins.dsn}?database={twins.database}"
    assert cli_main(["compare", "twin-1", "twin-unpriced", "--clickhouse", dsn]) == 0
    assert "  cost_usd: unknown for candidate" in capsys.readouterr().out
