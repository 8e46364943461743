"""``evalhouse migrate`` and ``evalhouse sql``."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.errors import EvalhouseError
from evalhouse.store import Store
from evalhouse.surfaces._cli_common import (
    Commands,
    open_store,
    served_or_store,
    settings_from,
    store_flags,
)


def register(commands: Commands) -> None:
    migrate = commands.add_parser("migrate", help="create or upgrade the ClickHouse schema")
    store_flags(migrate)
    migrate.add_argument("--cluster", help="ClickHouse cluster: Replicated tables, ON CLUSTER")
    migrate.add_argument(
        "--print",
        action="store_true",
        help="print every statement of a fresh migration instead of running it (for review)",
    )
    migrate.set_defaults(run=_migrate)

    sql = commands.add_parser("sql", help="run a read-only SQL query")
    store_flags(sql)
    sql.add_argument("--format", default="Pretty", help="Pretty (default), CSV, JSONEachRow, ...")
    sql.add_argument("query", help='the SQL query, e.g. "SELECT count() FROM otel_traces"')
    sql.set_defaults(run=_sql)


def _migrate(args: argparse.Namespace) -> int:
    from evalhouse.store import Topology, migrate, statements

    settings = settings_from(args)
    if args.print:
        for statement in statements(Topology(settings.cluster)):
            print(f"{statement};\n")
        return 0
    store = open_store(settings)
    try:
        applied = migrate(store, cluster=settings.cluster)
    finally:
        store.close()
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))} on {store.safe_dsn}")
    else:
        print(f"schema is up to date on {store.safe_dsn}")
    return 0


def _interruptible(store: Store, query: str, fmt: str) -> bytes:
    """Run the query on a thread, so Ctrl-C cancels it in the engine instead of waiting
    for the engine call to return (signals reach Python only between calls)."""
    tag = store.new_query_tag()
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["output"] = store.readonly_query(query, fmt, tag=tag)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=run, name="evalhouse-sql", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except KeyboardInterrupt:
        store.cancel(tag)
        worker.join()
        raise
    if "error" in outcome:
        raise outcome["error"]
    output: bytes = outcome["output"]
    return output


def _sql(args: argparse.Namespace) -> int:
    from evalhouse.surfaces.api import SQL_FORMATS

    if args.format not in SQL_FORMATS:
        raise EvalhouseError(
            f"unknown format {args.format!r}; choose one of {', '.join(SQL_FORMATS)}"
        )
    with served_or_store(settings_from(args)) as target:
        if isinstance(target, ApiClient):
            payload = {"query": args.query, "format": args.format}
            # Read-only, so safe to repeat when the server is busy.
            output = target.request_bytes("POST", "/api/sql", json_body=payload, retries=2)
        else:
            output = _interruptible(target, args.query, args.format)
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return 0
