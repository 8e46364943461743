"""What user SQL may do, decided on the tree ClickHouse's own parser builds.

User SQL reaches the store through four doors: ``POST /api/sql`` and ``evalhouse sql`` (whole
statements), and the results filters and retrospective ``--where`` (one expression spliced
into evalhouse's own query). Both are first normalised by the engine
(``formatQuerySingleLine``, which also refuses several statements in one), then parsed again
with ``EXPLAIN AST`` and checked here, node by node:

* a statement is a SELECT (WITH, UNION, INTERSECT...), EXPLAIN of one, DESCRIBE, EXISTS,
  SHOW TABLES or SHOW CREATE TABLE; no ``INTO OUTFILE``, ``FORMAT`` or ``SETTINGS``;
* tables are evalhouse's own (the store's database): a name qualified with any other
  database (``system.processes``, ``INFORMATION_SCHEMA.tables``) is refused, however quoted;
* no table function at all (``file()``, ``url()``, ``s3()``, ``remote()``, ``numbers()``...)
  and no function that touches files, the network, dictionaries, other tables' internals or
  the server process (``file``, ``dictGet``, ``joinGet``, ``sleep``, ``logTrace``...): the
  parser has already resolved quoting and case, so `` `FiLe`(...) `` is ``file``;
* an expression is exactly one expression: no subquery, no clause, no table after ``IN``.

This is the first wall. The second is the engine: read-only sessions run with ``readonly=1``
and, on the embedded engine, a role that may only SELECT the store's database and has no
SOURCES grant (so ``file()``/``url()``/``s3()`` table functions fail even if a gap here let
one through). See ``evalhouse/store/_readonly.py``.

>>> tree = parse_tree("SelectWithUnionQuery (children 1)\\n ExpressionList (children 1)")
>>> tree.kind, tree.children[0].kind
('SelectWithUnionQuery', 'ExpressionList')
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from evalhouse.errors import QueryError

__all__ = ["Catalog", "Node", "QueryRefused", "check_expression", "check_statement", "parse_tree"]


class QueryRefused(QueryError):
    """User SQL asks for something read-only SQL may not do (HTTP 400)."""


@dataclass(frozen=True)
class Catalog:
    """What the checks need to know about the engine: names the parser cannot tell apart."""

    database: str
    other_databases: frozenset[str]
    table_functions: frozenset[str]  # lower-case
    functions: frozenset[str]  # lower-case names of ordinary (and aggregate) functions


@dataclass
class Node:
    kind: str
    text: str  # what follows the kind on its line, without "(alias x)" / "(children n)"
    children: list[Node] = field(default_factory=list)

    @property
    def name(self) -> str:
        """A function's name as written (the parser removed any quoting)."""
        return self.text.split(" ", 1)[0] if self.text else ""

    def walk(self, parent: Node | None = None) -> Iterator[tuple[Node, Node | None]]:
        yield self, parent
        for child in self.children:
            yield from child.walk(self)


_LINE = re.compile(r"^( *)(\S+) ?(.*)$")
_CHILDREN = re.compile(r" ?\(children \d+\)$")
_ALIAS = re.compile(r" ?\(alias .*\)$")

# Functions that read files, dictionaries, other tables or the server's own state, write to
# logs or stall a session. Compared lower-case; names starting with these prefixes too.
_DENIED = frozenset(
    name.lower()
    for name in (
        *("file", "joinGet", "joinGetOrNull", "hasColumnInTable", "showCertificate"),
        *("filesystemAvailable", "filesystemCapacity", "filesystemUnreserved", "filesystemFree"),
        *("generateSerialID", "getClientHTTPHeader", "getMacro", "getServerSetting"),
        *("getServerPort", "logTrace", "sleep", "sleepEachRow", "trap", "hasThreadFuzzer"),
        *("addressToLine", "addressToLineWithInlines", "addressToSymbol", "demangle"),
        "zookeeperSessionUptime",
    )
)
_DENIED_PREFIXES = ("dict", "naivebayes", "__")
_IN_FUNCTIONS = frozenset(
    {"in", "notin", "globalin", "globalnotin", "nullin", "notnullin"}
    | {"globalnullin", "globalnotnullin"}
)
_STATEMENTS = frozenset(
    {
        "SelectWithUnionQuery",
        "Explain",
        "DescribeQuery",
        "ExistsTableQuery",
        "ShowTables",
        "ShowCreateTableQuery",
    }
)
_SUBQUERY = frozenset({"SelectWithUnionQuery", "SelectQuery", "Subquery", "TablesInSelectQuery"})
_ALLOWED = "SELECT, WITH, EXPLAIN, DESCRIBE, EXISTS, SHOW TABLES and SHOW CREATE TABLE"


def parse_tree(text: str) -> Node:
    """The tree of ``EXPLAIN AST`` output (one node per line, one space of indent per level).

    A name that contains a line break can only add lines, never hide one, and every check
    below refuses on what it finds: an extra line can make a query refused, not allowed.
    """
    root: Node | None = None
    stack: list[tuple[int, Node]] = []
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        depth, kind, rest = len(match.group(1)), match.group(2), match.group(3)
        rest = _ALIAS.sub("", _CHILDREN.sub("", rest.rstrip()))
        node = Node(kind, rest)
        while stack and stack[-1][0] >= depth:
            stack.pop()
        if stack:
            stack[-1][1].children.append(node)
        elif root is None:
            root = node
        else:  # a second top-level node: only a forged line can do that
            raise QueryRefused("the query could not be checked; simplify names and retry")
        stack.append((depth, node))
    if root is None:
        raise QueryRefused("the query is empty; send one SELECT statement")
    return root


def _first_words(sql: str) -> str:
    """The statement's keyword(s) for a message: ``INSERT``, ``KILL QUERY``, ``SHOW USERS``."""
    words = sql.upper().split()
    return " ".join(words[:2] if words[:1] in (["SHOW"], ["KILL"], ["SYSTEM"]) else words[:1])


def check_statement(tree: Node, catalog: Catalog, sql: str) -> None:
    """Raise :class:`QueryRefused` unless the statement is read-only over evalhouse's tables.

    ``sql`` is the engine's normalised text of the same statement, for the message.
    """
    statement = tree
    if statement.kind == "Explain":
        inner = [c for c in statement.children if c.kind != "Set"]
        if len(inner) != 1 or inner[0].kind != "SelectWithUnionQuery":
            raise QueryRefused("EXPLAIN is allowed for SELECT statements only")
        statement = inner[0]
    if statement.kind not in _STATEMENTS:
        raise QueryRefused(
            f"{_first_words(sql) or statement.kind} is not allowed: this SQL is read-only; "
            f"run {_ALLOWED} over evalhouse's tables"
        )
    for node, parent in tree.walk():
        _check_node(node, parent, catalog, allow_set=parent is tree and tree.kind == "Explain")


def check_expression(tree: Node, catalog: Catalog) -> None:
    """Raise :class:`QueryRefused` unless ``SELECT <expr>`` holds exactly one expression."""
    path = ("SelectWithUnionQuery", "ExpressionList", "SelectQuery", "ExpressionList")
    _check_node(tree, None, catalog, allow_set=False)  # FORMAT, INTO OUTFILE by name
    node = tree
    for kind in path:
        if node.kind != kind or len(node.children) != 1:
            raise QueryRefused(
                "give one expression: no clauses (FROM, SETTINGS, FORMAT...), no list of "
                "expressions, no ';'"
            )
        node = node.children[0]
    for inner, parent in node.walk():
        if inner.kind in _SUBQUERY:
            raise QueryRefused("subqueries are not allowed in a filter or key expression")
        if inner.kind == "Function" and inner.name.lower() in _IN_FUNCTIONS:
            arguments = inner.children[0].children if inner.children else []
            if len(arguments) == 2 and arguments[1].kind == "Identifier":
                raise QueryRefused(
                    f"IN {arguments[1].text}: IN takes a list in parentheses, not a table"
                )
        _check_node(inner, parent, catalog, allow_set=False)


def _check_node(node: Node, parent: Node | None, catalog: Catalog, *, allow_set: bool) -> None:
    kind = node.kind
    if kind == "SelectWithUnionQuery" and len(node.children) > 1:
        extra = node.children[1].kind
        clause = {"Literal": "INTO OUTFILE", "Identifier": "FORMAT", "Set": "SETTINGS"}.get(
            extra, extra
        )
        hint = (
            "choose the output format with --format or the 'format' field"
            if (clause == "FORMAT")
            else "results come back in the answer; nothing is written on the server"
        )
        raise QueryRefused(f"{clause} is not allowed here: {hint}")
    if kind == "Set" and not allow_set:
        raise QueryRefused(
            "SETTINGS is not allowed: read-only queries run with the server's limits "
            "(sql_max_execution_seconds, sql_max_memory_bytes...)"
        )
    if kind == "Function":
        _check_function(node, parent, catalog)
    elif kind in {"TableIdentifier", "Identifier"}:
        _check_name(node, catalog, table=kind == "TableIdentifier")


def _check_function(node: Node, parent: Node | None, catalog: Catalog) -> None:
    name = node.name
    lower = name.lower()
    if parent is not None and parent.kind == "TableExpression":
        raise QueryRefused(
            f"table function {name}() is not allowed: query evalhouse's own tables "
            "(otel_traces, experiment_rows, experiments, scores...)"
        )
    if lower in _DENIED or lower.startswith(_DENIED_PREFIXES):
        raise QueryRefused(
            f"function {name}() is not allowed: it reaches files, dictionaries, other tables "
            "or the server itself; this SQL reads evalhouse's tables only"
        )
    if lower in catalog.table_functions and lower not in catalog.functions:
        raise QueryRefused(f"table function {name}() is not allowed: query evalhouse's own tables")


def _check_name(node: Node, catalog: Catalog, *, table: bool) -> None:
    name = node.text
    head, dot, tail = name.partition(".")
    if head in catalog.other_databases:
        raise QueryRefused(
            f"{name!r} is outside evalhouse's database: only its own tables and views can be "
            "read (SHOW TABLES lists them)"
        )
    if table and dot and (head != catalog.database or "." in tail):
        raise QueryRefused(
            f"table {name!r} is not one of evalhouse's tables: name a table of database "
            f"{catalog.database!r} (SHOW TABLES lists them)"
        )
