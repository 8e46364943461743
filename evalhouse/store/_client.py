"""The one door to ClickHouse: every query, command and insert goes through :class:`Store`.

The DSN picks the engine: ``chdb:///dir`` runs the ClickHouse engine in this process,
``http(s)://...`` talks to a server. Only the clickhouse-connect client API is used, so the
two behave the same. The client connects lazily and reconnects after a failure, so a
collector can start (and spool) while its ClickHouse server is down.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalhouse.errors import DataDirLocked, QueryError, StoreUnavailable
from evalhouse.store._guard import (
    Catalog,
    QueryRefused,
    check_expression,
    check_statement,
    parse_tree,
)
from evalhouse.store._readonly import (
    READER_ROLE,
    ReadonlyLimits,
    ReadonlySessions,
    Session,
    engine_path,
)

if TYPE_CHECKING:
    from evalhouse.store._schema import Topology

logger = logging.getLogger(__name__)

# The embedded engine allocates through its own jemalloc, which keeps freed pages for 5 s and
# hands them back only while it allocates again: an idle process held 1.2 GiB after one big
# query. 500 ms cut the ingest benchmark's peak RSS by ~60 MiB at the same throughput; 0 ms
# cost 40% of it. jemalloc reads this variable when chDB loads; a value the user set wins.
_ALLOCATOR_ENV = "JE_MALLOC_CONF"
_EMBEDDED_ALLOCATOR = "dirty_decay_ms:500"


def _tune_embedded_allocator() -> None:
    current = os.environ.get(_ALLOCATOR_ENV, "")
    if "dirty_decay_ms" not in current:
        os.environ[_ALLOCATOR_ENV] = ",".join(filter(None, (_EMBEDDED_ALLOCATOR, current)))


def redact_dsn(dsn: str) -> str:
    """The DSN without credentials, for messages and logs."""
    parts = urllib.parse.urlsplit(dsn)
    if parts.password is None and parts.username is None:
        return dsn
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


class Store:
    """A ClickHouse database reached through clickhouse-connect.

    >>> store = Store("chdb:///tmp/evalhouse-doctest")   # doctest: +SKIP
    >>> store.query("SELECT 1")                          # doctest: +SKIP
    [(1,)]

    ``cluster`` names the ClickHouse cluster the schema lives on: writes then carry the
    settings :meth:`Topology.insert_settings` asks for. Read-only queries (user SQL, the
    results API) run on a pool of sessions of their own under ``readonly`` limits, on
    ``readonly_dsn`` when given (a server user with a read-only profile, docs/deploy.md).
    """

    def __init__(
        self,
        dsn: str,
        *,
        database: str | None = None,
        cluster: str | None = None,
        readonly: ReadonlyLimits | None = None,
        readonly_dsn: str | None = None,
    ) -> None:
        self.dsn = dsn
        self.database = database
        self.cluster = cluster
        self.readonly_limits = readonly or ReadonlyLimits()
        self.readonly_dsn = readonly_dsn
        self._client: Any = None
        self._lock = threading.RLock()
        self._sessions = ReadonlySessions(
            self._connect_readonly,
            self._lock_down,
            self.readonly_limits,
            self.safe_dsn,
            embedded=self.embedded,
        )
        self._catalog: Catalog | None = None

    def another(self) -> Store:
        """A Store on the same database with a client of its own: calls on one client are
        serialised, so threads that must not wait for each other each take one."""
        return Store(
            self.dsn,
            database=self.database,
            cluster=self.cluster,
            readonly=self.readonly_limits,
            readonly_dsn=self.readonly_dsn,
        )

    @property
    def embedded(self) -> bool:
        return self.dsn.startswith("chdb:")

    @property
    def embedded_path(self) -> Path | None:
        """The chDB data directory, for the embedded store."""
        if not self.embedded:
            return None
        return Path(urllib.parse.urlsplit(self.dsn).path)

    @property
    def topology(self) -> Topology:
        # Imported here: the schema module imports this one.
        from evalhouse.store._schema import Topology

        return Topology(self.cluster)

    def write_settings(self, settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """``settings`` plus what every write needs on this store's topology."""
        base = self.topology.insert_settings() if self.cluster else {}
        merged = {**base, **(settings or {})}
        return merged or None

    @property
    def safe_dsn(self) -> str:
        return redact_dsn(self.dsn)

    def _connect(self, dsn: str | None = None, **options: Any) -> Any:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        dsn = dsn or self.dsn
        if self.embedded:
            _tune_embedded_allocator()
            path = self.embedded_path
            assert path is not None
            # Every client passes the same start-up options; the engine reads them once.
            options["path"] = engine_path(path)
        try:
            if self.database:
                admin = clickhouse_connect.get_client(dsn=dsn, **options)
                try:
                    admin.command(
                        f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}"
                    )
                finally:
                    if not self.embedded:
                        admin.close()
                return clickhouse_connect.get_client(dsn=dsn, database=self.database, **options)
            return clickhouse_connect.get_client(dsn=dsn, **options)
        except ClickHouseError as exc:
            raise self._translate(exc) from exc
        except (OSError, RuntimeError) as exc:
            text = str(exc)
            if self.embedded and ("lock" in text.lower() or "Code: 36" in text):
                raise DataDirLocked(self.dsn.removeprefix("chdb://")) from exc
            raise StoreUnavailable(
                self.safe_dsn, text.splitlines()[0] if text else repr(exc)
            ) from exc

    def client(self) -> Any:
        """The live clickhouse-connect client (connecting on first use)."""
        with self._lock:
            if self._client is None:
                self._client = self._connect()
            return self._client

    # ---- read-only sessions -----------------------------------------------------------------
    def _connect_readonly(self) -> Any:
        if self.embedded:
            return self._connect()
        # No session id: each query is a session of its own on the server.
        return self._connect(self.readonly_dsn, autogenerate_session_id=False)

    def _lock_down(self, client: Any) -> None:
        """Make a fresh embedded session read-only for good: the reader role, the limits,
        then ``readonly=1`` (which forbids changing any of them afterwards). chDB keeps a SET
        on its client; a per-call setting there costs ~9 ms of snapshots and restores."""
        if not self.embedded:
            return
        client.command(f"SET ROLE {READER_ROLE}")
        for name, value in self.readonly_limits.settings().items():
            client.command(f"SET {name} = {{value:String}}", parameters={"value": str(value)})
        client.command("SET readonly = 1")

    def _readonly_settings(self) -> dict[str, Any] | None:
        """Per-query settings on a server: the limits, and ``readonly=2`` unless a read-only
        DSN's profile sets it (2 forbids writes and lets these limits through)."""
        if self.embedded:
            return None
        settings = self.readonly_limits.settings()
        if self.readonly_dsn is None:
            settings["readonly"] = 2
        return settings

    def _run_readonly(
        self, session: Session, method: str, sql: str, tag: str, **kwargs: Any
    ) -> Any:
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        self._sessions.started(tag)
        try:
            return getattr(session.client, method)(
                ReadonlySessions.tagged(sql, tag), settings=self._readonly_settings(), **kwargs
            )
        except ClickHouseError as exc:
            session.failed_while_running = True
            raise self._translate(exc, readonly=True) from exc
        finally:
            self._sessions.finished(tag)

    def _parse(self, client: Any, sql: str) -> tuple[str, Catalog, Any]:
        """The engine's normalised text of ``sql`` (one statement), its tree and the catalog."""
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        try:
            canonical = client.query(
                "SELECT formatQuerySingleLine({q:String}) AS q", parameters={"q": sql}
            ).result_rows[0][0]
            # A command, not a query: a query gets a FORMAT clause appended, which would
            # belong to the statement being explained. The answer is TabSeparated, so a
            # name holding a line break arrives escaped and cannot forge a line of the tree.
            tree = str(client.command(f"EXPLAIN AST {canonical}"))
            if self._catalog is None:
                database = client.query("SELECT currentDatabase()").result_rows[0][0]
                self._catalog = self._read_catalog(database)
        except ClickHouseError as exc:
            error = self._translate(exc, readonly=True)
            if "Multi-statements are not allowed" in str(error):
                raise QueryRefused(
                    "one statement at a time: ';' ends a statement (Multi-statements are not "
                    "allowed); send each statement in a request of its own"
                ) from exc
            raise error from exc
        return canonical, self._catalog, parse_tree(tree)

    def _read_catalog(self, database: str) -> Catalog:
        """Names the checks need, read once on the main client (read-only sessions run under
        result-size limits that a list of every function could exceed)."""

        def names(sql: str) -> frozenset[str]:
            return frozenset(row[0] for row in self.query(sql))

        return Catalog(
            database=database,
            other_databases=names("SELECT name FROM system.databases") - {database},
            table_functions=names("SELECT lower(name) FROM system.table_functions"),
            functions=names("SELECT lower(name) FROM system.functions"),
        )

    def readonly_query(
        self, sql: str, fmt: str = "TabSeparatedWithNames", *, tag: str | None = None
    ) -> bytes:
        """Run a user's statement read-only, in ``fmt``: checked with ClickHouse's parser
        (``evalhouse/store/_guard.py``), on a session of its own, under the limits.

        ``tag`` names the run for :meth:`cancel`. Raises :class:`QueryError` (a subclass,
        ``QueryRefused``, for what read-only SQL may not do) or :class:`StoreUnavailable`.
        """
        tag = tag or ReadonlySessions.new_tag()
        with self._sessions.session() as session:
            canonical, catalog, tree = self._parse(session.client, sql)
            check_statement(tree, catalog, canonical)
            result: bytes = self._run_readonly(session, "raw_query", canonical, tag, fmt=fmt)
        return self._capped(result)

    def _capped(self, output: bytes) -> bytes:
        """The engine checks result limits per block read from a table; a result made in
        one block from no table (``arrayJoin(range(...))``) passes, so check what came back."""
        limit = self.readonly_limits.max_result_bytes
        if len(output) > limit:
            raise QueryError(
                f"the result is {len(output)} bytes, more than sql_max_result_bytes ({limit}); "
                "select fewer rows or columns (LIMIT) or aggregate"
            )
        return output

    def check_expression(self, expression: str) -> str:
        """The engine's normalised text of one SQL expression a user wrote (a filter, a
        key); raises ``QueryRefused`` unless it is exactly one expression, read-only."""
        with self._sessions.session() as session:
            canonical, catalog, tree = self._parse(session.client, f"SELECT {expression}")
        check_expression(tree, catalog)
        return canonical.removeprefix("SELECT ")

    def select(
        self, sql: str, parameters: dict[str, Any] | None = None, *, tag: str | None = None
    ) -> list[dict[str, Any]]:
        """Rows (as dicts) of evalhouse's own read-only query, on a read-only session under
        the limits; user expressions in it must have passed :meth:`check_expression`."""
        with self._sessions.session() as session:
            result = self._run_readonly(
                session, "query", sql, tag or ReadonlySessions.new_tag(), parameters=parameters
            )
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def select_raw(
        self, sql: str, parameters: dict[str, Any] | None, fmt: str, *, tag: str | None = None
    ) -> bytes:
        """Like :meth:`select`, ClickHouse's own output in format ``fmt``."""
        with self._sessions.session() as session:
            data: bytes = self._run_readonly(
                session,
                "raw_query",
                sql,
                tag or ReadonlySessions.new_tag(),
                parameters=parameters,
                fmt=fmt,
            )
        return self._capped(data)

    @staticmethod
    def new_query_tag() -> str:
        """A tag for :meth:`readonly_query` / :meth:`select`, to :meth:`cancel` it by."""
        return ReadonlySessions.new_tag()

    def cancel(self, *tags: str) -> None:
        """Stop the read-only queries running under these tags (default: all of them)."""
        running = (
            [t for t in tags if self._sessions.is_running(t)]
            if tags
            else (self._sessions.running())
        )
        if not running:
            return
        try:
            self._call("command", ReadonlySessions.kill_statement(running))
        except (QueryError, StoreUnavailable) as exc:
            logger.warning("could not cancel %d read-only queries: %s", len(running), exc)

    def _translate(self, exc: Exception, *, readonly: bool = False) -> Exception:
        """An evalhouse error for a clickhouse-connect one. ``readonly``: it came from a
        read-only session (which the pool handles), not from the main client."""
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        def forget() -> None:
            if not readonly:
                self._forget_clients()

        text = str(exc).strip()
        first = _connection_reason(text) or (text.splitlines()[0] if text else type(exc).__name__)
        if isinstance(exc, OperationalError):
            forget()
            return StoreUnavailable(self.safe_dsn, first)
        if self.embedded and ("Cannot lock file" in text or "EmbeddedServer" in text):
            return DataDirLocked(self.dsn.removeprefix("chdb://"))
        if isinstance(exc, DatabaseError):
            if self.embedded:
                # A query that failed while running leaves its partial output on the chDB
                # connection, which the next query would read as its own: start afresh.
                forget()
            code = _error_code(text)
            return QueryError(_short_message(text), code)
        forget()
        return StoreUnavailable(self.safe_dsn, first)

    def _forget_clients(self) -> None:
        with self._lock:
            self._client = None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        client = self.client()
        try:
            return getattr(client, method)(*args, **kwargs)
        except ClickHouseError as exc:
            raise self._translate(exc) from exc

    def query(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> list[tuple[Any, ...]]:
        """Rows of a SELECT; values bound server-side from ``parameters`` ({name:Type})."""
        result = self._call("query", sql, parameters=parameters, settings=settings)
        return list(result.result_rows)

    def query_dicts(
        self, sql: str, parameters: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        result = self._call("query", sql, parameters=parameters)
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def command(
        self,
        sql: str,
        parameters: dict[str, Any] | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Any:
        # Commands include INSERT ... SELECT (datasets), which must write like inserts do.
        return self._call(
            "command", sql, parameters=parameters, settings=self.write_settings(settings)
        )

    def insert_raw(
        self,
        table: str,
        columns: Sequence[str],
        data: bytes,
        fmt: str,
        settings: dict[str, Any] | None = None,
    ) -> None:
        settings = self.write_settings(settings)
        self._call("raw_insert", table, list(columns), data, settings=settings, fmt=fmt)

    def insert_rows(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: dict[str, Any] | None = None,
    ) -> None:
        settings = self.write_settings(settings)
        self._call("insert", table, rows, column_names=list(columns), settings=settings)

    def ping(self) -> bool:
        try:
            self.query("SELECT 1")
        except StoreUnavailable:
            return False
        return True

    def close(self) -> None:
        """Cancel running read-only queries, then close every client."""
        self.cancel()
        self._sessions.close()
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()


def quote_identifier(name: str) -> str:
    """Back-quote an identifier (database, table, column) for DDL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def in_ids(column: str, parameter: str) -> str:
    """``column IN`` the strings of the query parameter ``parameter`` (an ``Array(String)``),
    for lists that can be long. Written as ``column IN {ids:Array(String)}`` the list becomes
    literals of the query: 6 us an id up to 25,000 ids, then 5.3-5.6 s at 27,000-30,000 (a
    cliff, measured on the embedded engine); through ``arrayJoin`` it stays at 6 us an id
    (181 ms at 27,000), and costs about 1 ms more than the literals for short lists.

    >>> in_ids("trace_id", "ids")
    'trace_id IN (SELECT arrayJoin({ids:Array(String)}))'
    """
    return f"{column} IN (SELECT arrayJoin({{{parameter}:Array(String)}}))"


def _connection_reason(text: str) -> str | None:
    """'[Errno 111] Connection refused' out of a urllib3 error chain, if there is one."""
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1).strip().lower() if match else None


def _error_code(text: str) -> int | None:
    marker = "Code: "
    at = text.find(marker)
    if at < 0:
        return None
    digits = ""
    for char in text[at + len(marker) :]:
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else None


def _short_message(text: str) -> str:
    """ClickHouse's message without the stack trace and version noise."""
    at = text.find("DB::Exception:")
    message = text[at + len("DB::Exception:") :] if at >= 0 else text
    for cut in ("Stack trace", " In scope ", " In query ", "(version "):
        message = message.split(cut)[0]
    return " ".join(message.split())[:500]
