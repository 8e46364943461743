"""Checks on the SQL expressions users hand us: row filters (``where``) and comparison keys.

An expression must be one ClickHouse expression over the columns of ``experiment_rows``: no
``;``, no comments, no subqueries or clauses (``SELECT``, ``SETTINGS``, ``FORMAT``, ...), no
table functions or reads of other tables (``file(...)``, ``x IN some_table``), and brackets
that never close more than they opened (so it cannot escape the parentheses it is put in).
Words inside string literals and quoted identifiers do not count. The check is the first
guard; the second is that every results query runs with ClickHouse's ``readonly=1`` and puts
the expression only in a ``WHERE`` (or ``SELECT``) of a query over one experiment's rows.

>>> check_expression("scores['accuracy'] < 0.5 AND output LIKE '%; DROP%'", "where")
"scores['accuracy'] < 0.5 AND output LIKE '%; DROP%'"
"""

from __future__ import annotations

import re

from evalhouse.evaluators.results._errors import InvalidRequest

__all__ = ["MAX_EXPRESSION", "check_expression"]

MAX_EXPRESSION = 4_000

_EXAMPLE = {
    "where": "e.g. scores['accuracy'] < 0.5 AND JSONExtractString(metadata, 'topic') = 'billing'",
    "key": "e.g. JSONExtractString(metadata, 'case_id') or row_id",
}


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Clause and statement keywords: none of them belongs in one expression.
_KEYWORDS = _names(
    """SELECT FROM WHERE PREWHERE HAVING GROUP ORDER LIMIT OFFSET UNION INTERSECT EXCEPT JOIN
    WITH SETTINGS FORMAT INTO OUTFILE INSERT CREATE ALTER DROP DELETE UPDATE TRUNCATE ATTACH
    DETACH RENAME GRANT REVOKE SYSTEM KILL OPTIMIZE SET USE SHOW DESCRIBE EXPLAIN EXCHANGE
    TABLE DATABASE DICTIONARY QUALIFY WINDOW ARRAY GLOBAL"""
)
# Words that are also ordinary functions when called: format('{}-{}', a, b) is fine.
_CALLABLE_KEYWORDS = frozenset({"FORMAT", "ARRAY"})
# Table functions and functions that read files, other tables, dictionaries or the network,
# or that only serve to stall the server (compared lower-case).
_FUNCTIONS = frozenset(
    name.lower()
    for name in _names(
        """file fileCluster url urlCluster s3 s3Cluster gcs hdfs hdfsCluster remote
        remoteSecure cluster clusterAllReplicas mysql postgresql jdbc odbc sqlite mongodb redis
        azureBlobStorage azureBlobStorageCluster iceberg icebergS3 icebergAzure icebergHDFS
        icebergLocal icebergCluster deltaLake deltaLakeCluster hudi hudiCluster hive paimon
        executable input generateRandom numbers numbers_mt zeros zeros_mt merge mergeTreeIndex
        mergeTreeProjection view viewIfPermitted viewExplain loop fuzzJSON fuzzQuery primes
        generateSeries generate_series dictionary timeSeriesData timeSeriesMetrics timeSeriesTags
        prometheusQuery arrowFlight ytsaurus dictGet dictGetOrDefault dictGetOrNull dictHas
        dictGetHierarchy dictGetChildren dictGetDescendants dictIsIn joinGet joinGetOrNull
        sleep sleepEachRow"""
    )
)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CLOSE = {")": "(", "]": "["}


def _refuse(kind: str, problem: str) -> InvalidRequest:
    return InvalidRequest(
        f"invalid {kind} expression: {problem}; give one ClickHouse expression over the "
        f"columns of experiment_rows ({_EXAMPLE.get(kind, _EXAMPLE['where'])})"
    )


def _skip_quoted(text: str, start: int, quote: str, kind: str) -> int:
    """Index just past the literal or quoted identifier opening at ``start``."""
    at = start + 1
    while at < len(text):
        char = text[at]
        if char == "\\":
            at += 2
            continue
        if char == quote:
            if text[at + 1 : at + 2] == quote:  # a doubled quote stands for one
                at += 2
                continue
            return at + 1
        at += 1
    raise _refuse(kind, f"the {quote} opened at character {start + 1} is never closed")


def _next_significant(text: str, at: int) -> str:
    while at < len(text) and text[at].isspace():
        at += 1
    return text[at : at + 1]


def check_expression(expression: str, kind: str = "where") -> str:
    """Return ``expression`` (stripped) when it passes; raise :class:`InvalidRequest` if not.

    ``kind`` (``where`` or ``key``) only changes the wording of the error.
    """
    text = expression.strip()
    if not text:
        raise _refuse(kind, "it is empty")
    if len(text) > MAX_EXPRESSION:
        raise _refuse(kind, f"it is {len(text)} characters long (at most {MAX_EXPRESSION})")
    stack: list[str] = []
    previous_word = ""
    at = 0
    while at < len(text):
        char = text[at]
        if char in "'\"`":
            at = _skip_quoted(text, at, char, kind)
            previous_word = ""
            continue
        if text.startswith(("--", "/*"), at) or char == "#":
            raise _refuse(kind, "comments are not allowed")
        if char == ";":
            raise _refuse(kind, "';' is not allowed (one expression, not statements)")
        if char in "{}$":
            raise _refuse(kind, f"'{char}' is not allowed outside string literals")
        if char in "([":
            stack.append(char)
        elif char in ")]" and (not stack or stack.pop() != _CLOSE[char]):
            raise _refuse(kind, f"'{char}' at character {at + 1} closes nothing it opened")
        match = _WORD.match(text, at) if char.isalpha() or char == "_" else None
        if match is None:
            if not char.isspace():
                previous_word = ""
            at += 1
            continue
        word = match.group(0)
        upper = word.upper()
        at = match.end()
        called = _next_significant(text, at) == "("
        if upper in _KEYWORDS and not (called and upper in _CALLABLE_KEYWORDS):
            raise _refuse(kind, f"{upper} is not allowed here (no subqueries or clauses)")
        if called and word.lower() in _FUNCTIONS:
            raise _refuse(kind, f"{word}() reads outside the experiment's rows")
        if previous_word == "IN" and not called and upper not in {"NOT"}:
            raise _refuse(kind, f"IN {word}: IN takes a list in parentheses, not a table")
        previous_word = upper
    if stack:
        raise _refuse(kind, f"'{stack[-1]}' is never closed")
    return text
