"""User SQL expressions (row filters, comparison keys): checked with ClickHouse's own parser,
then run read-only.

The check refuses anything that is not one expression; what passes is the engine's normalised
text of it, run read-only over a subquery of one experiment's rows, never pasted into DDL or DML.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_results_seed import Row, clear, results_database, seed

from evalhouse.errors import QueryError
from evalhouse.evaluators.results import InvalidRequest, Results
from evalhouse.evaluators.results._filters import check_expression
from evalhouse.store import Store

ACCEPTED = [
    "scores['accuracy'] < 0.5",
    "error != '' OR task_duration_ms > 2000",
    "JSONExtractString(metadata, 'topic') IN ('billing', 'orders')",
    "output LIKE '%; DROP TABLE scores; --%'",
    "input ILIKE '%select * from users%' AND row_id NOT IN ('a', 'b')",
    "format('{}-{}', row_id, toString(trial)) = 'r1-0'",
    "`row_id` = 'x' AND \"trial\" = 1",
    "has(mapKeys(scores), 'it''s') OR output = 'say \\'hi\\''",
    "arrayExists(x -> x > 0.9, mapValues(scores))",
    "row_id IN ['r1', 'r2']",
    "row_id = $$x$$",
]

REFUSED = {
    "1; DROP TABLE scores": "Multi-statements are not allowed",
    "trace_id IN (SELECT trace_id FROM otel_traces)": "subqueries are not allowed",
    "1 SETTINGS readonly = 0": "readonly",
    "1 FORMAT JSON": "FORMAT is not allowed",
    "1) OR (1": "Syntax error",
    "(1": "Syntax error",
    "[1)": "Syntax error",
    "length(file('/etc/passwd')) > 0": "function file() is not allowed",
    "length(`file`('/etc/passwd')) > 0": "function file() is not allowed",
    "length(FiLe('/etc/passwd')) > 0": "function FiLe() is not allowed",
    "row_id IN otel_traces": "IN takes a list in parentheses",
    "trace_id NOT IN scores": "IN takes a list in parentheses",
    "row_id IN system.tables": "IN takes a list in parentheses",
    "dictGet('d', 'x', 1) = 1": "function dictGet() is not allowed",
    "1 IN numbers(3)": "table function numbers() is not allowed",
    "x = {ids:Array(String)}": "ids",
    "output = 'unterminated": "Syntax error",
    "1 UNION ALL 2": "Syntax error",
    "1, 2": "give one expression",
    "1 FROM otel_traces": "give one expression",
    "  ": "it is empty",
    "1 = 1 " + "OR 1 = 1 " * 600: "characters long",
}


@pytest.fixture(scope="module")
def shared(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        yield store


@pytest.mark.parametrize("expression", ACCEPTED)
def test_expressions_are_accepted_in_the_engine_s_normal_form(
    shared: Store, expression: str
) -> None:
    normal = check_expression(shared, expression)
    assert normal
    assert check_expression(shared, normal) == normal


@pytest.mark.parametrize("expression", ["1 -- and the rest", "1 /* x */", "1 # x"])
def test_comments_are_gone_from_what_runs(shared: Store, expression: str) -> None:
    # What runs is the engine's normalised text, so a comment cannot swallow the rest of
    # the query the expression is put into.
    assert check_expression(shared, expression) == "1"


@pytest.mark.parametrize(("expression", "problem"), sorted(REFUSED.items()))
def test_injections_are_refused_with_a_reason(shared: Store, expression: str, problem: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check_expression(shared, expression, "where")
    message = str(raised.value)
    assert problem in message
    assert "give one ClickHouse expression over the columns of experiment_rows" in message


@pytest.fixture
def results(shared: Store) -> Results:
    store = clear(shared)
    seed(
        store, "exp-a", [Row(f"a{i}", {"i": i}, "x", scores={"accuracy": i / 4}) for i in range(5)]
    )
    seed(store, "exp-b", [Row(f"b{i}", {"i": i}, "y", scores={"accuracy": 1.0}) for i in range(3)])
    return Results(store)


def test_a_filter_only_sees_the_chosen_experiment(results: Results) -> None:
    # A tautology returns the experiment's own rows, never the other experiment's.
    page = results.rows("exp-a", where="1 = 1 OR experiment_id = 'exp-b'")
    assert page["total"] == 5
    assert {row["row_id"] for row in page["rows"]} == {f"a{i}" for i in range(5)}


def test_filters_run_with_clickhouse_readonly(results: Results) -> None:
    page = results.rows("exp-a", where="getSetting('readonly') = 1")
    assert page["total"] == 5


def test_a_bad_expression_is_clickhouse_s_message(results: Results) -> None:
    with pytest.raises(QueryError) as raised:
        results.rows("exp-a", where="no_such_column > 1")
    assert "no_such_column" in str(raised.value)
    with pytest.raises(QueryError):
        results.summary("exp-a", where="'not a boolean'")


def test_filters_select_rows_everywhere(results: Results) -> None:
    where = "scores['accuracy'] >= 0.5"
    assert results.rows("exp-a", where=where)["total"] == 3
    assert results.summary("exp-a", where=where)["scores"]["accuracy"]["count"] == 3
    assert results.trials("exp-a", where=where)["total"] == 3
    percent = results.rows("exp-a", where="output LIKE '%x%'")
    assert percent["total"] == 5
