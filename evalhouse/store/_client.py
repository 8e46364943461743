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

if TYPE_CHECKING:
    from evalhouse.store._schema import Topology

logger = logging.getLogger(__name__)

_SAFE_DSN_PARTS = ("scheme", "hostname", "port", "path")

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
    settings :meth:`Topology.insert_settings` asks for.
    """

    def __init__(
        self, dsn: str, *, database: str | None = None, cluster: str | None = None
    ) -> None:
        self.dsn = dsn
        self.database = database
        self.cluster = cluster
        self._client: Any = None
        # User SQL runs on a client of its own: on chDB ``readonly=1`` stays on the client
        # that ran it, and would then refuse the collector's inserts.
        self._readonly_client: Any = None
        self._lock = threading.RLock()

    def another(self) -> Store:
        """A Store on the same database with a client of its own: calls on one client are
        serialised, so threads that must not wait for each other each take one."""
        return Store(self.dsn, database=self.database, cluster=self.cluster)

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

    def _connect(self) -> Any:
        if self.embedded:
            _tune_embedded_allocator()
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        try:
            if self.database:
                admin = clickhouse_connect.get_client(dsn=self.dsn)
                try:
                    admin.command(
                        f"CREATE DATABASE IF NOT EXISTS {quote_identifier(self.database)}"
                    )
                finally:
                    if not self.embedded:
                        admin.close()
                return clickhouse_connect.get_client(dsn=self.dsn, database=self.database)
            return clickhouse_connect.get_client(dsn=self.dsn)
        except ClickHouseError as exc:
            raise self._translate(exc) from exc
        except (OSError, RuntimeError) as exc:
            text = str(exc)
            if self.embedded and ("lock" in text.lower() or "Code: 36" in text):
                raise DataDirLocked(self.dsn.removeprefix("chdb://")) from exc
            raise StoreUnavailable(
                self.safe_dsn, text.splitlines()[0] if text else repr(exc)
            ) from exc

    def client(self, *, readonly: bool = False) -> Any:
        """The live clickhouse-connect client (connecting on first use)."""
        with self._lock:
            if readonly:
                if self._readonly_client is None:
                    client = self._connect()
                    if self.embedded:
                        # chDB keeps a SET on its client: read-only once, for good (a
                        # per-call setting costs ~9 ms of setting snapshots and restores).
                        client.command("SET readonly = 1")
                    self._readonly_client = client
                return self._readonly_client
            if self._client is None:
                self._client = self._connect()
            return self._client

    def _translate(self, exc: Exception) -> Exception:
        from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

        text = str(exc).strip()
        first = _connection_reason(text) or (text.splitlines()[0] if text else type(exc).__name__)
        if isinstance(exc, OperationalError):
            self._forget_clients()
            return StoreUnavailable(self.safe_dsn, first)
        if self.embedded and ("Cannot lock file" in text or "EmbeddedServer" in text):
            return DataDirLocked(self.dsn.removeprefix("chdb://"))
        if isinstance(exc, DatabaseError):
            code = _error_code(text)
            return QueryError(_short_message(text), code)
        self._forget_clients()
        return StoreUnavailable(self.safe_dsn, first)

    def _forget_clients(self) -> None:
        with self._lock:
            self._client = None
            self._readonly_client = None

    def _call(self, method: str, *args: Any, readonly: bool = False, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import Error as ClickHouseError

        client = self.client(readonly=readonly)
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

    def readonly_query(self, sql: str, fmt: str = "TabSeparatedWithNames") -> bytes:
        """Run user SQL with ClickHouse's ``readonly=1``: SELECT/SHOW/DESCRIBE only."""
        # A server gets the setting with each query; the embedded client has it set already.
        settings = None if self.embedded else {"readonly": 1}
        result: bytes = self._call("raw_query", sql, fmt=fmt, settings=settings, readonly=True)
        return result

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
        with self._lock:
            clients = (self._client, self._readonly_client)
            self._client = self._readonly_client = None
        for client in clients:
            if client is not None:
                client.close()


def quote_identifier(name: str) -> str:
    """Back-quote an identifier (database, table, column) for DDL."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


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
    message = message.split("Stack trace")[0].strip()
    return " ".join(message.split())[:500]
