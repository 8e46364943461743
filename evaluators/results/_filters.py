"""Checks on the SQL expressions users hand us: row filters (``where``) and comparison keys.

An expression must be one ClickHouse expression over the columns of ``experiment_rows``. The
engine's own parser decides (:meth:`Store.check_expression`, rules in
``evalhouse/store/_guard.py``): no subquery or clause, no table function, no function that
reaches files, dictionaries or other tables, however it is quoted. What runs is the engine's
normalised text of the expression (no comments, brackets balanced), always inside
parentheses in the ``WHERE`` (or ``SELECT``) of a read-only query over one experiment's rows.

>>> check_expression(store, "scores['accuracy'] < 0.5", "where")  # doctest: +SKIP
"scores['accuracy'] < 0.5"
"""

from __future__ import annotations

from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.store import Store

__all__ = ["MAX_EXPRESSION", "check_expression"]

MAX_EXPRESSION = 4_000

_EXAMPLE = {
    "where": "e.g. scores['accuracy'] < 0.5 AND JSONExtractString(metadata, 'topic') = 'billing'",
    "key": "e.g. JSONExtractString(metadata, 'case_id') or row_id",
}


def _refuse(kind: str, problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid {kind} expression: {problem}; give one ClickHouse expression over the "
        f"columns of experiment_rows ({_EXAMPLE.get(kind, _EXAMPLE['where'])})"
    )


def check_expression(store: Store, expression: str, kind: str = "where") -> str:
    """The normalised expression when it passes; :class:`InvalidRequest` if not.

    ``kind`` (``where`` or ``key``) only changes the wording of the error.
    """
    text = expression.strip()
    if not text:
        raise _refuse(kind, "it is empty")
    if len(text) > MAX_EXPRESSION:
        raise _refuse(kind, f"it is {len(text)} characters long (at most {MAX_EXPRESSION})")
    try:
        return store.check_expression(text)
    except QueryError as exc:
        raise _refuse(kind, str(exc)) from exc
