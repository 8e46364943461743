"""Fixtures that start real things: a chDB store, the collector on free ports, `evalhouse serve`.

chDB runs one engine per process and one data path at a time, so in-process tests share one
engine and each test gets its own database; tests of ``serve`` run it as a subprocess with its
own data directory.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalhouse.collector import Collector
from evalhouse.config import Settings, load_settings
from evalhouse.errors import QueryError
from evalhouse.store import Store, migrate

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s (last value {value!r})")
        time.sleep(interval)


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


_VIEWS = ("View", "MaterializedView")


def clone_database(dsn: str, template: str, target: str) -> Store:
    """A copy of database ``template``'s schema and migration ledger as ``target``.

    Migrating a fresh database replays every migration (dozens of ALTERs on otel_traces,
    ~1.4 s); recreating the migrated tables from their final definitions takes a fraction of
    that, and is the same schema: each object's own ``CREATE`` statement, as ClickHouse
    reports it, with the database name swapped.
    """
    store = Store(dsn, database=target)
    rows = store.query(
        "SELECT name, engine, create_table_query FROM system.tables "
        "WHERE database = {d:String} ORDER BY name",
        {"d": template},
    )
    tables = [sql for _, engine, sql in rows if engine not in _VIEWS]
    views = [sql for _, engine, sql in rows if engine in _VIEWS]
    for sql in tables:
        store.command(sql.replace(f"{template}.", f"{target}."))
    while views:  # a view can read another view: create each once what it reads exists
        waiting = []
        for sql in views:
            try:
                store.command(sql.replace(f"{template}.", f"{target}."))
            except QueryError:
                waiting.append(sql)
        if len(waiting) == len(views):
            raise RuntimeError(f"cannot recreate views of {template}: {waiting[0][:200]}")
        views = waiting
    store.command(
        f"INSERT INTO {target}.evalhouse_migrations SELECT * FROM {template}.evalhouse_migrations"
    )
    return store


@pytest.fixture(scope="session")
def template_database(chdb_dsn: str) -> str:
    """One migrated database per session, copied for each test that needs a store."""
    name = f"template_{uuid.uuid4().hex[:12]}"
    migrate(Store(chdb_dsn, database=name))
    return name


@pytest.fixture
def store(chdb_dsn: str, template_database: str) -> Store:
    """A migrated store in a database of its own (a copy of the session's template)."""
    return clone_database(chdb_dsn, template_database, f"test_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def bare_store(chdb_dsn: str) -> Store:
    """An empty database (no migrations applied)."""
    return Store(chdb_dsn, database=f"test_{uuid.uuid4().hex[:12]}")


def collector_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "grpc_port": 0,
        "http_port": 0,
        "wal_fsync": False,
        "metrics_log_interval": 3600,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def start_collector(store: Store, tmp_path: Path) -> Iterator[Callable[..., tuple[Collector, Any]]]:
    """Start an in-process collector on free ports writing into ``store``."""
    started: list[Collector] = []

    def start(*, sink: Any = None, **overrides: Any) -> tuple[Collector, Any]:
        settings = collector_settings(tmp_path / f"collector{len(started)}", **overrides)
        collector = Collector(settings, store, sink=sink)
        addresses = collector.start()
        started.append(collector)
        return collector, addresses

    yield start
    for collector in started:
        collector.stop()


def count(store: Store, sql: str = "SELECT count() FROM otel_traces") -> int:
    value: int = store.query(sql)[0][0]
    return value


@dataclass
class ServeProcess:
    process: subprocess.Popen[str]
    data_dir: Path
    grpc_port: int
    http_port: int
    ui_port: int
    log: Path

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--data-dir", str(self.data_dir), check=check)

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def run_cli(
    *args: str, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "evalhouse.surfaces.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        pytest.fail(f"evalhouse {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def start_serve(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServeProcess:
    """Start ``evalhouse serve`` on free ports; once more on others when a port picked free
    was taken before serve bound it (another test worker's process got there first)."""
    for attempt in range(3):
        try:
            return _start_serve(data_dir, *extra, env=env)
        except _PortTaken:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


class _PortTaken(Exception):
    pass


def _start_serve(data_dir: Path, *extra: str, env: dict[str, str] | None = None) -> ServeProcess:
    grpc_port, http_port, ui_port = free_port(), free_port(), free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / f"{data_dir.name}-serve.log"
    offset = log.stat().st_size if log.exists() else 0
    with log.open("a") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "evalhouse.surfaces.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--grpc-port",
                str(grpc_port),
                "--http-port",
                str(http_port),
                "--ui-port",
                str(ui_port),
                *extra,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
        )
    serve = ServeProcess(process, data_dir, grpc_port, http_port, ui_port, log)

    def ready() -> bool:
        if process.poll() is not None:
            told = log.read_text()[offset:]
            if "Address already in use" in told:
                raise _PortTaken(told)
            pytest.fail(f"evalhouse serve exited early:\n{log.read_text()}")
        return "Ctrl-C to stop." in log.read_text()[offset:]

    wait_for(ready, timeout=90)
    return serve


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServeProcess]]:
    """Start ``evalhouse serve`` as a subprocess; stopped (SIGINT) at the end of the test."""
    processes: list[ServeProcess] = []

    def start(
        data_dir: Path | None = None, *extra: str, env: dict[str, str] | None = None
    ) -> ServeProcess:
        process = start_serve(data_dir or tmp_path / "data", *extra, env=env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()
