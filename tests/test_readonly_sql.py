"""Read-only SQL that is read-only in fact: every door refuses writes, files, the network,
other databases and session changes (checked on ClickHouse's own parse tree); the engine
refuses them too when the check is bypassed; every query runs on a session of its own under
time, memory and result limits, is cancelled when its client leaves, and cannot starve the
results API, health or shutdown."""

from __future__ import annotations

import http.server
import json
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, start_serve, wait_for

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.config import load_settings
from evalhouse.errors import QueryError
from evalhouse.store import QueryRefused, ReadonlyLimits, Store, migrate
from evalhouse.surfaces.api import api_app

# Runs for minutes over no table at all: 10^15 rows of a cross join.
RUNAWAY = (
    "SELECT count() FROM (SELECT arrayJoin(range(100000)) AS a) AS x, "
    "(SELECT arrayJoin(range(100000)) AS b) AS y, (SELECT arrayJoin(range(100000)) AS c) AS z"
)


class Listener:
    """A local HTTP server that counts the requests reaching it (nothing may)."""

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"a,b\n1,2\n")

            do_HEAD = do_GET

            def log_message(self, *args: Any) -> None:
                pass

        self.hits = hits
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def attacks(port: int, out: Path) -> dict[str, str]:
    """Statement → what the refusal must name."""
    return {
        f"SELECT 'x' INTO OUTFILE '{out}' TRUNCATE": "INTO OUTFILE is not allowed",
        "SELECT file('/proc/self/environ')": "function file() is not allowed",
        "SELECT `file`('/etc/hostname') AS k": "function file() is not allowed",
        "SELECT FiLe('/etc/hostname')": "function FiLe() is not allowed",
        "WITH file('/etc/hostname') AS f SELECT f": "function file() is not allowed",
        "SELECT arrayMap(x -> file(x), ['/etc/hostname'])": "function file() is not allowed",
        "SELECT * FROM file('/etc/hostname', 'LineAsString')": "table function file()",
        f"DESCRIBE TABLE url('http://127.0.0.1:{port}/x', 'CSV')": "table function url()",
        f"SELECT * FROM url('http://127.0.0.1:{port}/x', 'CSV')": "table function url()",
        f"SELECT * FROM s3('http://127.0.0.1:{port}/bucket/x.csv', 'CSV')": "table function s3()",
        f"SELECT * FROM remote('127.0.0.1:{port}', 'system.one')": "table function remote()",
        f"EXPLAIN SELECT * FROM url('http://127.0.0.1:{port}/x', 'CSV')": "table function url()",
        "SELECT * FROM executable('ls', 'TSV', 'x String')": "table function executable()",
        "SELECT * FROM view(SELECT 1)": "table function view()",
        "SELECT * FROM merge('system', '.*')": "table function merge()",
        "SELECT count() FROM numbers(1e13)": "table function numbers()",
        "SELECT 1 IN numbers(3)": "table function numbers()",
        "SELECT dictGet('d', 'a', toUInt64(1))": "function dictGet() is not allowed",
        "SELECT joinGet('t', 'a', 1)": "function joinGet() is not allowed",
        "SELECT sleepEachRow(1) FROM otel_traces": "function sleepEachRow() is not allowed",
        "SELECT * FROM system.processes": "outside evalhouse's database",
        "SELECT * FROM `system`.`processes`": "outside evalhouse's database",
        "SELECT 1 IN system.one": "outside evalhouse's database",
        "SHOW TABLES FROM system": "outside evalhouse's database",
        "SHOW CREATE TABLE system.processes": "outside evalhouse's database",
        "SHOW PROCESSLIST": "SHOW PROCESSLIST is not allowed",
        "USE system": "USE is not allowed",
        "USE system; SELECT 1": "one statement at a time",
        "SELECT 1; SELECT 2": "one statement at a time",
        "KILL QUERY WHERE query LIKE 'INSERT%'": "KILL QUERY is not allowed",
        "SET max_execution_time = 0": "SET is not allowed",
        "SELECT 1 SETTINGS max_execution_time = 0": "max_execution_time",
        "SYSTEM SHUTDOWN": "SYSTEM SHUTDOWN is not allowed",
        "INSERT INTO otel_traces (SpanName) VALUES ('x')": "INSERT is not allowed",
        "DROP TABLE otel_traces": "DROP is not allowed",
        "CREATE TABLE t (a Int8) ENGINE = Memory": "CREATE is not allowed",
        "SELECT 1 FORMAT JSON": "FORMAT is not allowed",
    }


ALLOWED = [
    "SELECT count() FROM otel_traces",
    "WITH t AS (SELECT 1 AS a) SELECT a FROM t",
    "SELECT ServiceName FROM otel_traces WHERE SpanName IN (SELECT SpanName FROM otel_traces)",
    "DESCRIBE otel_traces",
    "EXPLAIN SELECT count() FROM otel_traces",
    "SHOW TABLES",
    "SHOW CREATE TABLE otel_traces",
    "EXISTS TABLE otel_traces",
    "SELECT getSetting('readonly') AS readonly",
]


def limited(store: Store, **limits: Any) -> Store:
    """The same database behind read-only sessions with other limits."""
    return Store(store.dsn, database=store.database, readonly=ReadonlyLimits(**limits))


def _lower(headers: Any) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


class Api:
    def __init__(self, store: Store, **settings: Any) -> None:
        self.store = store
        app = api_app(store, ApiKeys(frozenset()), load_settings(**settings))
        self.server = AsgiServer.start(app, "127.0.0.1", 0, "API")
        self.base = f"http://127.0.0.1:{self.server.port}"

    def request(
        self, path: str, body: Any | None = None, timeout: float = 60
    ) -> tuple[int, dict[str, str], bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, _lower(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, _lower(exc.headers), exc.read()

    def sql(self, query: str, fmt: str = "JSONEachRow") -> tuple[int, bytes]:
        status, _, body = self.request("/api/sql", {"query": query, "format": fmt})
        return status, body

    def close(self) -> None:
        self.server.stop()


@pytest.fixture(scope="module")
def store(chdb_dsn: str) -> Store:
    """One migrated database for the module: these tests only read (and try to write)."""
    shared = Store(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")
    migrate(shared)
    return shared


@pytest.fixture
def api(store: Store) -> Iterator[Api]:
    server = Api(store)
    yield server
    server.close()


def running_readonly(store: Store) -> int:
    rows = store.query(
        "SELECT count() FROM system.processes WHERE query LIKE '/* evalhouse-ro:%' "
        "AND query NOT LIKE '%system.processes%'"
    )
    count: int = rows[0][0]
    return count


def test_the_api_refuses_every_attack_naming_it_and_nothing_leaks(
    api: Api, listener: Listener, tmp_path: Path
) -> None:
    out = tmp_path / "written-by-sql"
    for query, refusal in attacks(listener.port, out).items():
        status, body = api.sql(query)
        assert status == 400, (query, body)
        message = json.loads(body)["error"]
        assert refusal in message, (query, message)
    assert not out.exists()
    assert listener.hits == []


def test_the_store_door_refuses_the_same_and_runs_what_is_read_only(
    store: Store, listener: Listener, tmp_path: Path
) -> None:
    out = tmp_path / "written-by-sql"
    for query, refusal in attacks(listener.port, out).items():
        with pytest.raises(QueryError) as raised:
            store.readonly_query(query)
        assert refusal in str(raised.value), (query, str(raised.value))
    for query in ALLOWED:
        assert store.readonly_query(query, "JSONEachRow") is not None, query
    assert json.loads(store.readonly_query(ALLOWED[-1], "JSONEachRow")) == {"readonly": 1}
    assert not out.exists()
    assert listener.hits == []


def test_the_engine_refuses_files_network_and_writes_when_the_check_is_bypassed(
    store: Store, listener: Listener
) -> None:
    # Store.select runs evalhouse's own SQL without the parser check: the read-only role and
    # readonly=1 are the second wall, for a gap in the first.
    url = f"http://127.0.0.1:{listener.port}/x.csv"
    for sql in (
        "SELECT * FROM file('/etc/hostname', 'LineAsString')",
        f"SELECT * FROM url('{url}', 'CSV', 'a String, b String')",
        f"DESCRIBE TABLE url('{url}', 'CSV')",
        f"SELECT * FROM s3('{url}', 'CSV', 'a String, b String')",
        "INSERT INTO otel_traces (SpanName) VALUES ('x')",
        "SYSTEM FLUSH LOGS",
    ):
        with pytest.raises(QueryError) as raised:
            store.select(sql)
        message = str(raised.value)
        assert "ACCESS_DENIED" in message or "READONLY" in message, (sql, message)
    assert listener.hits == []
    assert store.select("SELECT currentRoles() AS roles") == [{"roles": ["evalhouse_reader"]}]
    assert store.query("SELECT count() FROM otel_traces") == [(0,)]


def test_queries_stop_at_their_time_memory_and_result_limits(store: Store) -> None:
    small = limited(
        store,
        max_execution_seconds=1,
        max_memory_bytes=64 * 1024**2,
        max_result_rows=1000,
        max_result_bytes=100_000,
    )
    try:
        started = time.monotonic()
        with pytest.raises(QueryError, match="Timeout exceeded"):
            small.readonly_query(RUNAWAY)
        assert time.monotonic() - started < 5
        with pytest.raises(QueryError, match="memory limit"):
            small.readonly_query(
                "SELECT uniqExact(x) FROM (SELECT arrayJoin(range(20000000)) AS x)"
            )
        with pytest.raises(QueryError, match="Limit for result exceeded"):
            small.readonly_query("SELECT n FROM (SELECT arrayJoin(range(5000)) AS n) WHERE n > 0")
        with pytest.raises(QueryError, match="more than sql_max_result_bytes"):
            small.readonly_query("SELECT arrayJoin(range(900)) AS n, repeat('x', 200) AS pad")
        # A session that hit a limit is not reused with the failed query's leftovers.
        assert small.readonly_query("SELECT 42 AS q", "CSV") == b"42\n"
        assert small.readonly_query("SELECT arrayJoin(range(3)) AS n", "CSV") == b"0\n1\n2\n"
    finally:
        small.close()


def test_limits_come_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        data_dir=tmp_path,
        sql_max_execution_seconds=7,
        sql_max_memory_bytes=123456789,
        sql_sessions=3,
    )
    limits = settings.readonly_limits()
    assert (limits.max_execution_seconds, limits.max_memory_bytes, limits.sessions) == (
        7,
        123456789,
        3,
    )
    assert limits.settings()["max_execution_time"] == 7


def _half_read_request(port: int, query: str) -> socket.socket:
    """Send a whole /api/sql request and read nothing back."""
    body = json.dumps({"query": query}).encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        b"POST /api/sql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return sock


def test_a_query_is_cancelled_when_its_client_goes_away(api: Api) -> None:
    sock = _half_read_request(api.server.port, RUNAWAY)
    wait_for(lambda: running_readonly(api.store) == 1, timeout=10)
    sock.close()
    started = time.monotonic()
    wait_for(lambda: running_readonly(api.store) == 0, timeout=10)
    assert time.monotonic() - started < 10  # cancelled, not stopped by the 30 s limit
    status, body = api.sql("SELECT 1 AS one")
    assert (status, json.loads(body)) == (200, {"one": 1})


def test_a_slow_query_blocks_neither_results_nor_health_and_a_full_pool_says_retry(
    store: Store,
) -> None:
    pooled = limited(store, sessions=2, wait_seconds=0.5)
    server = Api(pooled)
    sockets = []
    try:
        sockets.append(_half_read_request(server.server.port, RUNAWAY))
        wait_for(lambda: running_readonly(store) == 1, timeout=10)
        for path in ("/api/health", "/api/experiments"):
            started = time.monotonic()
            status, _, _ = server.request(path, timeout=5)
            assert status == 200, path
            assert time.monotonic() - started < 2, path
        sockets.append(_half_read_request(server.server.port, RUNAWAY))
        wait_for(lambda: running_readonly(store) == 2, timeout=10)
        status, headers, body = server.request("/api/sql", {"query": "SELECT 1"}, timeout=10)
        assert status == 503, body
        assert headers.get("retry-after") == "2", (headers, body)
        assert "read-only sessions" in json.loads(body)["error"]
        assert (server.request("/api/health", timeout=5))[0] == 200
    finally:
        for sock in sockets:
            sock.close()
        wait_for(lambda: running_readonly(store) == 0, timeout=10)
        server.close()
        pooled.close()


def test_session_state_never_reaches_another_caller(api: Api) -> None:
    assert api.sql("USE system")[0] == 400
    assert api.sql("SET readonly = 0")[0] == 400
    for _ in range(6):  # more than the sessions of the pool: each one is still locked down
        status, body = api.sql("SELECT currentDatabase() AS db, getSetting('readonly') AS ro")
        assert status == 200
        row = json.loads(body)
        assert row == {"db": api.store.database, "ro": 1}
    assert api.request("/api/experiments")[0] == 200


def test_the_cli_refuses_directly_and_through_serve(tmp_path: Path) -> None:
    data = tmp_path / "data"
    run_cli("migrate", "--data-dir", str(data))  # chDB: one data path per process
    direct = run_cli("sql", "--data-dir", str(data), "SELECT `file`('/etc/hostname')", check=False)
    assert direct.returncode != 0
    assert "function file() is not allowed" in direct.stderr
    assert len(direct.stderr.strip().splitlines()) == 1
    ok = run_cli(
        "sql", "--data-dir", str(data), "--format", "CSV", "SELECT count() FROM otel_traces"
    )
    assert ok.stdout == "0\n"
    server = start_serve(data)
    try:
        served = server.cli(
            "sql", "SELECT 'x' INTO OUTFILE '/tmp/evalhouse-x' TRUNCATE", check=False
        )
        assert served.returncode != 0
        assert "INTO OUTFILE is not allowed" in served.stderr
        assert not Path("/tmp/evalhouse-x").exists()
    finally:
        assert server.stop() == 0


def test_sigterm_stops_serve_within_10_s_while_a_runaway_query_runs(tmp_path: Path) -> None:
    server = start_serve(tmp_path / "data")
    sock = _half_read_request(server.ui_port, RUNAWAY)
    try:
        api = f"http://127.0.0.1:{server.ui_port}"

        def runaway_running() -> bool:
            query = {
                "query": "SELECT count() AS n FROM otel_traces WHERE 0",
                "format": "JSONEachRow",
            }
            request = urllib.request.Request(
                f"{api}/api/sql", json.dumps(query).encode(), {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status == 200

        wait_for(runaway_running, timeout=10)
        time.sleep(1)  # the runaway query is in the engine by now
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.process.wait(timeout=15)
        assert time.monotonic() - started < 10
        assert server.process.returncode == 0
    finally:
        sock.close()
        server.stop()


def test_a_filter_cannot_escape_an_experiment_or_read_a_file(store: Store) -> None:
    from evalhouse.evaluators.results import InvalidRequest
    from evalhouse.evaluators.results._filters import check_expression

    with pytest.raises(InvalidRequest, match="function file"):
        check_expression(store, "`file`('/etc/hostname') != ''", "key")
    with pytest.raises(InvalidRequest, match="Unmatched parentheses"):
        check_expression(store, "1) OR (1", "where")
    with pytest.raises(QueryRefused):
        store.check_expression("1 FROM otel_traces")
