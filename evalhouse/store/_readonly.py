"""Read-only sessions: a small pool of clients that only read, each query under limits.

Every read-only query (user SQL, the results API) borrows a session of its own, so nothing a
caller does persists for the next one and one slow query never blocks the others, and runs
with the limits of :class:`ReadonlyLimits` (time, memory, result size). Each query carries a
tag in a leading comment; :meth:`ReadonlySessions.cancel` kills it by that tag (a client that
went away, a server shutting down).

On the embedded engine the sessions also drop to a role that may only read the store's
database and holds no SOURCES grant (``file()``, ``url()``, ``s3()``, ``remote()``...): the
engine reads ``users.xml`` written by :func:`engine_options` when it starts. Two limits of the
embedded engine (clickhouse-local mode) are worth knowing: it ignores ``user_files_path`` for
absolute paths and has no ``remote_url_allow_hosts``, and neither the ``file()`` function nor
``INTO OUTFILE`` is covered by grants there, and a user may always KILL queries of its own
user (every session of the embedded engine is the same user); those are refused by the
parser check (``evalhouse/store/_guard.py``) before anything runs.
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalhouse.errors import EvalhouseError, QueryError, StoreUnavailable

__all__ = [
    "READER_ROLE",
    "ReadonlyLimits",
    "ReadonlySessions",
    "Session",
    "SessionsBusy",
    "engine_path",
]

logger = logging.getLogger(__name__)

READER_ROLE = "evalhouse_reader"
_WRITER_ROLE = "evalhouse_writer"
_TAG = "/* evalhouse-ro:{} */ "


@dataclass(frozen=True)
class ReadonlyLimits:
    """Limits of every read-only query (settings ``sql_*`` in ``evalhouse/config.py``)."""

    max_execution_seconds: float = 30.0
    max_memory_bytes: int = 2 * 1024**3
    max_result_rows: int = 1_000_000
    max_result_bytes: int = 1024**3
    sessions: int = 4
    wait_seconds: float = 10.0

    def settings(self) -> dict[str, Any]:
        """The ClickHouse settings that enforce these limits."""
        return {
            "max_execution_time": self.max_execution_seconds,
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
        }


class SessionsBusy(StoreUnavailable):
    """Every read-only session is taken: retry shortly (HTTP 503 with Retry-After)."""

    def __init__(self, dsn: str, sessions: int, waited: float) -> None:
        reason = f"all {sessions} read-only sessions stayed busy for {waited:g} s"
        EvalhouseError.__init__(
            self, f"{reason}: long queries are running; retry shortly, or raise sql_sessions"
        )
        self.dsn = dsn
        self.reason = reason


def engine_path(data_path: Path) -> str:
    """The chDB location of ``data_path`` with start-up options that give the embedded engine
    a read-only role (passed verbatim: chDB reads ``file:`` locations without decoding).

    The default user gets two roles: ``evalhouse_writer`` (everything, as before) and
    ``evalhouse_reader`` (SELECT and SHOW, nothing else: no SOURCES, so no file, URL, S3 or
    remote reads; no dictGet, KILL, SYSTEM or introspection). Both are active by default;
    read-only sessions ``SET ROLE evalhouse_reader``. Every database of the embedded engine is
    evalhouse's (one process owns the directory); other databases (``system``...) are refused
    by the parser check.
    """
    folder = data_path / "evalhouse-engine"
    empty = folder / "no-user-files"
    empty.mkdir(parents=True, exist_ok=True)
    users = folder / "users.xml"
    config = folder / "config.xml"
    _write_if_changed(users, _USERS_XML)
    _write_if_changed(
        config,
        "<clickhouse>\n"
        f"  <users_config>{users}</users_config>\n"
        f"  <user_files_path>{empty}/</user_files_path>\n"
        f"  <user_scripts_path>{empty}/</user_scripts_path>\n"
        "</clickhouse>\n",
    )
    return f"file:{os.path.realpath(data_path)}?config-file={config}"


_USERS_XML = f"""<clickhouse>
  <profiles><default></default></profiles>
  <quotas><default></default></quotas>
  <roles>
    <{_WRITER_ROLE}><grants><query>GRANT ALL ON *.*</query></grants></{_WRITER_ROLE}>
    <{READER_ROLE}><grants><query>GRANT SELECT, SHOW ON *.*</query></grants></{READER_ROLE}>
  </roles>
  <users>
    <default>
      <password></password>
      <networks><ip>::/0</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
      <grants><query>GRANT {_WRITER_ROLE}, {READER_ROLE}</query></grants>
    </default>
  </users>
</clickhouse>
"""


def _write_if_changed(path: Path, text: str) -> None:
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(path)


@dataclass
class Session:
    """One pooled client while a caller holds it.

    ``failed_while_running``: on the embedded engine a query that fails after it started
    producing output (a limit, a runtime error) leaves that output on the connection, and the
    next query on it would read it as its own; such a session is closed, not reused. A query
    refused before it ran (a syntax error, the parser check) leaves nothing behind.
    """

    client: Any
    failed_while_running: bool = False


class ReadonlySessions:
    """A pool of read-only clients; ``connect`` makes one, ``prepare`` locks it down."""

    def __init__(
        self,
        connect: Callable[[], Any],
        prepare: Callable[[Any], None],
        limits: ReadonlyLimits,
        dsn: str,
        *,
        embedded: bool,
    ) -> None:
        self._connect = connect
        self._embedded = embedded
        self._prepare = prepare
        self.limits = limits
        self._dsn = dsn
        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(limits.sessions)
        self._lock = threading.Lock()
        self._all: list[Any] = []
        self._running: set[str] = set()
        self._closed = False

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session of this pool for the duration of the block."""
        if not self._slots.acquire(timeout=self.limits.wait_seconds):
            raise SessionsBusy(self._dsn, self.limits.sessions, self.limits.wait_seconds)
        session: Session | None = None
        broken = False
        try:
            try:
                session = Session(self._idle.get_nowait())
            except queue.Empty:
                client = self._connect()
                try:
                    self._prepare(client)
                except Exception:
                    client.close()
                    raise
                with self._lock:
                    self._all.append(client)
                session = Session(client)
            yield session
        except QueryError:
            # A refusal leaves the session fine, except on the embedded engine after a query
            # that failed while running (see Session.failed_while_running).
            broken = self._embedded and session is not None and session.failed_while_running
            raise
        except BaseException:
            broken = True
            raise
        finally:
            if session is not None:
                if broken or self._closed:
                    self._discard(session.client)
                else:
                    self._idle.put(session.client)
            self._slots.release()

    def _discard(self, client: Any) -> None:
        with self._lock:
            if client in self._all:
                self._all.remove(client)
        try:
            client.close()
        except Exception:  # a client that failed mid-query may not close cleanly
            logger.debug("closing a read-only session failed", exc_info=True)

    @staticmethod
    def new_tag() -> str:
        return secrets.token_hex(8)

    @staticmethod
    def tagged(sql: str, tag: str) -> str:
        """``sql`` with the leading comment :meth:`cancel` finds it by."""
        return _TAG.format(tag) + sql

    def started(self, tag: str) -> None:
        with self._lock:
            self._running.add(tag)

    def finished(self, tag: str) -> None:
        with self._lock:
            self._running.discard(tag)

    def is_running(self, tag: str) -> bool:
        with self._lock:
            return tag in self._running

    def running(self) -> list[str]:
        with self._lock:
            return list(self._running)

    @staticmethod
    def kill_statement(tags: list[str]) -> str:
        """KILL for the queries carrying these tags (hex only, so safe to inline)."""
        prefixes = ", ".join(f"'{_TAG.format(tag)}'" for tag in tags if tag.isalnum())
        return f"KILL QUERY WHERE arrayExists(p -> startsWith(query, p), [{prefixes}]) ASYNC"

    def close(self) -> None:
        self._closed = True
        with self._lock:
            clients, self._all = self._all, []
        while True:
            try:
                self._idle.get_nowait()
            except queue.Empty:
                break
        for client in clients:
            try:
                client.close()
            except Exception:
                logger.debug("closing a read-only session failed", exc_info=True)
