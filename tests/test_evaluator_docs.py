"""The evaluator examples of docs/sql.md return what the doc says, on rows the daemon computed.

``test_docs_sql.py`` runs every example on a store without evaluator output; these tests seed
an experiment, let the daemon compute and score it, and check the results.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from test_docs_sql import EXAMPLES
from test_evaluator_spans import Trace, eval_root, evaluate, write

from evalhouse.store import Store, migrate

EXPERIMENT = "summaries-v2"


def _row(i: int, *, correct: bool, judge_tokens: int, model: str) -> Trace:
    t = Trace()
    root = eval_root(
        t,
        experiment=EXPERIMENT,
        row_id=f"row-{i}",
        input={"text": f"article {i}"},
        expected="summary",
        output="summary" if correct else "something else",
        scorers=["exact_match", "no_such_scorer"],
    )
    task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=5, ms=200)
    t.add(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": model,
            "gen_ai.usage.input_tokens": 100,
            "gen_ai.usage.output_tokens": 10,
        },
        parent=task,
        at_ms=6,
        ms=150,
    )
    scorer = t.add("judge", {"evalhouse.span.purpose": "scorer"}, parent=root, at_ms=300, ms=40)
    t.add(
        "chat",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": judge_tokens,
            "gen_ai.usage.output_tokens": 1,
        },
        parent=scorer,
        at_ms=301,
        ms=30,
    )
    return t


@pytest.fixture(scope="module")
def evaluated(chdb_dsn: str) -> Iterator[Store]:
    writer = Store(chdb_dsn, database=f"test_evaldocs_{uuid.uuid4().hex[:8]}")
    migrate(writer)
    traces = [
        _row(0, correct=True, judge_tokens=50, model="gpt-4o-mini"),
        _row(1, correct=False, judge_tokens=60, model="gpt-4o-mini"),
        _row(2, correct=True, judge_tokens=70, model="acme-unknown-model"),
    ]
    write(writer, *traces)
    evaluate(writer)
    yield Store(chdb_dsn, database=writer.database)
    writer.command(f"DROP DATABASE IF EXISTS {writer.database}")


def run(store: Store, title: str) -> list[dict[str, Any]]:
    output = store.readonly_query(EXAMPLES[title], "JSONEachRow")
    return [json.loads(line) for line in output.decode().splitlines() if line]


def test_rows_of_an_experiment_list_worst_scores_first(evaluated: Store) -> None:
    rows = run(evaluated, "rows of an experiment")
    assert [(r["row_id"], r["exact_match"], r["task_ms"]) for r in rows] == [
        ("row-1", 0, 200),
        ("row-0", 1, 200),
        ("row-2", 1, 200),
    ]
    assert [r["cost_provenance"] for r in rows] == ["inferred", "inferred", "unknown"]
    assert rows[2]["cost_usd"] is None


def test_experiment_summary_has_mean_scores_and_no_false_total(evaluated: Store) -> None:
    (summary,) = run(evaluated, "experiment summaries")
    assert summary["experiment_name"] == EXPERIMENT
    assert (summary["rows"], summary["errored_rows"]) == (3, 0)
    assert summary["scores"]["exact_match"] == pytest.approx(2 / 3)
    assert summary["total_cost_usd"] is None and summary["rows_cost_unknown"] == 1
    assert summary["total_tokens"] == 330


def test_task_and_judge_cost_are_apart(evaluated: Store) -> None:
    (line,) = run(evaluated, "task vs judge cost")
    assert (line["task_tokens"], line["judge_tokens"]) == (330, 183)
    assert line["rows_cost_unknown"] == 1
    assert line["task_known_usd"] > 0 and line["judge_usd"] > 0


def test_scorer_errors_are_listed_with_their_message(evaluated: Store) -> None:
    errors = run(evaluated, "scorer errors")
    assert len(errors) == 3
    assert {e["scorer"] for e in errors} == {"no_such_scorer"}
    assert all("unknown scorer 'no_such_scorer'" in e["error"] for e in errors)


def test_incomplete_rows_query_finds_none_on_complete_traces(evaluated: Store) -> None:
    assert run(evaluated, "incomplete rows") == []
