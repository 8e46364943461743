"""The ``evalhouse`` command. Every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evalhouse import __version__
from evalhouse.config import Settings, load_settings
from evalhouse.errors import EvalhouseError

__all__ = ["main"]


def _store_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--data-dir", type=Path, help="embedded store directory (default .evalhouse)"
    )
    group.add_argument(
        "--clickhouse", metavar="DSN", help="ClickHouse DSN, e.g. http://user:pass@host:8123/db"
    )


def _listener_flags(parser: argparse.ArgumentParser, *, ui: bool) -> None:
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--grpc-port", type=int, help="OTLP/gRPC port (default 4317)")
    parser.add_argument("--http-port", type=int, help="OTLP/HTTP port (default 4318)")
    if ui:
        parser.add_argument("--ui-port", type=int, help="API and UI port (default 8700)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evalhouse",
        description="OpenTelemetry-native trace collector and evaluator for LLM applications.",
    )
    parser.add_argument("--version", action="version", version=f"evalhouse {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="all-in-one: collector and API on the embedded store")
    serve.add_argument("--data-dir", type=Path, help="where data lives (default .evalhouse)")
    _listener_flags(serve, ui=True)

    collector = commands.add_parser(
        "collector", help="OTLP collector only (server mode, ClickHouse from --clickhouse)"
    )
    _store_flags(collector)
    collector.add_argument("--spool-dir", type=Path, help="write-ahead log directory parent")
    _listener_flags(collector, ui=False)

    migrate = commands.add_parser("migrate", help="create or upgrade the ClickHouse schema")
    _store_flags(migrate)
    migrate.add_argument("--cluster", help="ClickHouse cluster: Replicated tables, ON CLUSTER")

    sql = commands.add_parser("sql", help="run a read-only SQL query")
    _store_flags(sql)
    sql.add_argument("--format", default="Pretty", help="Pretty (default), CSV, JSONEachRow, ...")
    sql.add_argument("query", help='the SQL query, e.g. "SELECT count() FROM otel_traces"')
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(
        data_dir=getattr(args, "data_dir", None) or getattr(args, "spool_dir", None),
        clickhouse_url=getattr(args, "clickhouse", None),
        host=getattr(args, "host", None),
        grpc_port=getattr(args, "grpc_port", None),
        http_port=getattr(args, "http_port", None),
        ui_port=getattr(args, "ui_port", None),
        cluster=getattr(args, "cluster", None),
    )


def _serve(args: argparse.Namespace, *, with_api: bool) -> int:
    # evalhouse reports listener failures itself, in one line; keep gRPC core quiet.
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    from evalhouse.surfaces.serve import run_collector

    settings = _settings(args)
    if with_api and not settings.embedded:
        raise EvalhouseError(
            "evalhouse serve runs on the embedded store; for a ClickHouse server run "
            "'evalhouse collector --clickhouse DSN' (and the evaluator, API) as separate services"
        )
    run_collector(settings, with_api=with_api, announce=lambda line: print(line, flush=True))
    return 0


def _migrate(args: argparse.Namespace) -> int:
    from evalhouse.store import Store, migrate

    settings = _settings(args)
    store = Store(settings.dsn)
    try:
        applied = migrate(store, cluster=settings.cluster)
    finally:
        store.close()
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))} on {store.safe_dsn}")
    else:
        print(f"schema is up to date on {store.safe_dsn}")
    return 0


def _sql_via_server(api: str, query: str, fmt: str, api_key: str | None) -> bytes:
    request = urllib.request.Request(
        f"{api}/api/sql",
        data=json.dumps({"query": query, "format": fmt}).encode(),
        headers={"Content-Type": "application/json"},
    )
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", str(exc))
        except ValueError:
            message = str(exc)
        raise EvalhouseError(message) from exc
    except urllib.error.URLError as exc:
        raise EvalhouseError(f"cannot reach the running server at {api}: {exc.reason}") from exc


def _sql(args: argparse.Namespace) -> int:
    from evalhouse.store import Store
    from evalhouse.surfaces.api import SQL_FORMATS
    from evalhouse.surfaces.serve import running_server

    if args.format not in SQL_FORMATS:
        raise EvalhouseError(
            f"unknown format {args.format!r}; choose one of {', '.join(SQL_FORMATS)}"
        )
    settings = _settings(args)
    server = running_server(settings.data_dir) if settings.embedded else None
    if server is not None:
        keys = settings.api_key_values()
        output = _sql_via_server(server["api"], args.query, args.format, next(iter(keys), None))
    else:
        if settings.embedded and not (settings.data_dir / "clickhouse").exists():
            raise EvalhouseError(
                f"no evalhouse data in {settings.data_dir}; start 'evalhouse serve' there first "
                "or pass --data-dir / --clickhouse"
            )
        store = Store(settings.dsn)
        try:
            output = store.readonly_query(args.query, args.format)
        finally:
            store.close()
    sys.stdout.buffer.write(output)
    sys.stdout.flush()
    return 0


def _quiet_drivers(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not record.name.startswith(
        ("urllib3", "clickhouse_connect")
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.command in ("serve", "collector") else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # evalhouse reports store failures itself; the drivers' retry chatter is noise here
    # (a filter, because clickhouse-connect resets urllib3's level when it is imported).
    for handler in logging.getLogger().handlers:
        handler.addFilter(_quiet_drivers)
    handlers: dict[str, Any] = {
        "serve": lambda a: _serve(a, with_api=True),
        "collector": lambda a: _serve(a, with_api=False),
        "migrate": _migrate,
        "sql": _sql,
    }
    try:
        code: int = handlers[args.command](args)
        return code
    except EvalhouseError as exc:
        print(f"evalhouse {args.command}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"evalhouse {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
