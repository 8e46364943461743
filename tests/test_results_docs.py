"""The comparison examples of docs/sql.md give the numbers ``evalhouse compare`` gives, and
docs/results-api.md documents the keys the API really returns."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_docs_sql import EXAMPLES
from test_results_seed import T0, Row, clear, results_database, seed

from evalhouse.evaluators.results import Results
from evalhouse.store import Store
from evalhouse.surfaces._api_experiments import ENDPOINTS

API_DOC = Path(__file__).resolve().parent.parent / "docs" / "results-api.md"
V1 = [0.2, 0.5, 0.9, 0.4, 0.6]
V2 = [0.3, 0.5, 0.7, 0.9]  # q4 is not in v2; v2's q0 ran twice (0.2 and 0.4)


@pytest.fixture(scope="module")
def store(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        clear(store)
        seed(
            store,
            "summaries-v1",
            [Row(f"r{i}", {"q": i}, f"a{i}", scores={"accuracy": v}) for i, v in enumerate(V1)],
            name="summaries",
        )
        rows = [Row(f"r{i}", {"q": i}, f"b{i}", scores={"accuracy": v}) for i, v in enumerate(V2)]
        rows[0].scores["accuracy"] = 0.2
        rows.append(Row("r0", {"q": 0}, "b0'", scores={"accuracy": 0.4}, trial=1))
        rows.append(Row("r9", {"q": 9}, "b9", scores={"accuracy": 1.0}))
        seed(store, "summaries-v2", rows, name="summaries", start=T0 + timedelta(hours=1))
        yield store


def run(store: Store, title: str) -> list[dict[str, Any]]:
    output = store.readonly_query(EXAMPLES[title], "JSONEachRow")
    return [json.loads(line) for line in output.decode().splitlines() if line]


def test_the_paired_comparison_query_agrees_with_compare(store: Store) -> None:
    (row,) = run(store, "paired comparison of two experiments")
    body = Results(store).compare("summaries-v2", "summaries-v1")["scores"]["accuracy"]
    assert row["score"] == "accuracy"
    assert int(row["matched"]) == body["matched"] == 4
    assert row["baseline_mean"] == pytest.approx(body["baseline_mean"])
    assert row["candidate_mean"] == pytest.approx(body["candidate_mean"])
    assert row["diff"] == pytest.approx(body["diff"])
    assert (int(row["improvements"]), int(row["regressions"])) == (
        body["improvements"],
        body["regressions"],
    )
    test = row["t_p_ci"]
    assert test["p_value"] == pytest.approx(body["p_value"], rel=1e-6)
    assert test["confidence_interval_low"] == pytest.approx(body["ci_low"], rel=1e-6)
    assert test["confidence_interval_high"] == pytest.approx(body["ci_high"], rel=1e-6)


def test_the_other_comparison_queries(store: Store) -> None:
    runs = run(store, "score of each run")
    assert [(r["experiment_id"], r["accuracy"]) for r in runs] == [
        ("summaries-v1", pytest.approx(sum(V1) / 5)),
        ("summaries-v2", pytest.approx((0.2 + 0.4 + 0.5 + 0.7 + 0.9 + 1.0) / 6)),
    ]
    worst = run(store, "largest regressions of a score")
    # Outputs as stored: JSON text.
    assert [(r["baseline_output"], r["candidate_output"]) for r in worst] == [('"a2"', '"b2"')]
    assert worst[0]["diff"] == pytest.approx(0.7 - 0.9)
    unmatched = run(store, "inputs only one experiment has")
    assert [(r["row_id"], r["experiments"]) for r in unmatched] == [
        ("r4", ["summaries-v1"]),
        ("r9", ["summaries-v2"]),
    ]
    body = Results(store).compare("summaries-v2", "summaries-v1")
    assert body["unmatched"] == {"baseline": 1, "candidate": 1}
    flaky = run(store, "flaky inputs")
    assert [(r["row_id"], int(r["trials"]), r["lowest"], r["highest"]) for r in flaky] == [
        ("r0", 2, 0.2, 0.4)
    ]
    assert Results(store).trials("summaries-v2", flaky_only=True)["total"] == 1


def test_the_documented_compare_json_is_what_compare_returns(store: Store) -> None:
    text = API_DOC.read_text(encoding="utf-8")
    section = text.split("## The compare JSON (stable keys)")[1]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    body = Results(store).compare("summaries-v2", "summaries-v1", limit=1)
    assert set(example) == set(body)
    assert set(example["scores"]["accuracy"]) == set(body["scores"]["accuracy"])
    assert set(example["metrics"]["task_duration_ms"]) == set(body["metrics"]["task_duration_ms"])
    documented, real = example["rows"][0], body["rows"][0]
    assert set(documented) == set(real)
    for side in ("baseline", "candidate"):
        assert set(documented[side]) == set(real[side])
        assert set(documented[side]["metrics"]) == set(real[side]["metrics"])
    for key in (*body["scores"]["accuracy"], *body, "unmatched"):
        assert f"`{key}`" in section, f"{key} is not described in docs/results-api.md"


def test_every_route_is_documented() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    for endpoint in ENDPOINTS.values():
        assert f"GET {endpoint.path}" in text, endpoint.path
