"""``evalhouse traces list|show``, ``evalhouse sessions list|show`` and ``evalhouse usage``.

While ``evalhouse serve`` owns the data directory the commands ask its HTTP API; otherwise
they open the store and call the same explorer functions with the same parameters
(``_cli_common.served_or_store``). ``--json`` prints the API's JSON; without it, a table.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.surfaces._cli_common import Commands, served_or_store, settings_from, store_flags

__all__ = ["register"]


def register(commands: Commands) -> None:
    traces = commands.add_parser("traces", help="production traces: list and show")
    actions = traces.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="traces, newest first (production by default)")
    _common(listing)
    _window(listing)
    listing.add_argument("--filter", help="e.g. 'model:gpt-4o -status:error latency:>2s'")
    listing.add_argument("--where", help="SQL boolean over the trace columns")
    listing.add_argument("--q", help="text searched in inputs and outputs")
    listing.add_argument("--kind", choices=("production", "experiment", "all"))
    listing.add_argument(
        "--sort", choices=("start_time", "duration_ms", "cost_usd", "total_tokens", "error_count")
    )
    listing.add_argument("--order", choices=("asc", "desc"))
    listing.add_argument("--limit", type=int, default=50, help="at most this many (1000)")
    listing.add_argument("--cursor", help="next_cursor of a previous page")
    listing.set_defaults(run=_traces_list)
    show = actions.add_parser("show", help="one trace: its row, spans and chats")
    _common(show)
    show.add_argument("trace_id")
    show.set_defaults(run=_trace_show)

    sessions = commands.add_parser("sessions", help="sessions (conversations): list and show")
    actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="sessions, latest activity first")
    _common(listing)
    _window(listing)
    listing.add_argument("--filter", help="filter on the sessions' traces")
    listing.add_argument("--where", help="SQL boolean over the trace columns")
    listing.add_argument("--kind", choices=("production", "experiment", "all"))
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--cursor", help="next_cursor of a previous page")
    listing.set_defaults(run=_sessions_list)
    show = actions.add_parser("show", help="one session and its traces in time order")
    _common(show)
    _window(show)
    show.add_argument("session_id")
    show.add_argument("--limit", type=int, default=100, help="traces per page")
    show.add_argument("--cursor", help="next_cursor of a previous page")
    show.set_defaults(run=_session_show)

    usage = commands.add_parser("usage", help="cost, tokens, calls, latency and errors over time")
    _common(usage)
    _window(usage)
    usage.add_argument("--interval", help="bucket: 1m ... 1d (default from the window)")
    usage.add_argument("--group-by", choices=("model", "provider", "service", "user", "none"))
    usage.add_argument("--filter", help="e.g. 'service:checkout'")
    usage.add_argument("--where", help="SQL boolean over the trace columns")
    usage.add_argument("--kind", choices=("production", "experiment", "all"))
    usage.add_argument("--top", type=int, help="with --group-by user: this many users (20)")
    usage.set_defaults(run=_usage)


def _common(parser: argparse.ArgumentParser) -> None:
    store_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO time or relative: 15m, 1h, 7d (default 24h)")
    parser.add_argument("--until", help="ISO time or relative (default now)")


def _params(args: argparse.Namespace, *names: str) -> dict[str, str]:
    params = {}
    for name in names:
        value = getattr(args, name, None)
        if value is not None and value != "":
            params[name] = str(value)
    return params


def _fetch(
    args: argparse.Namespace, path: str, params: dict[str, str], local: Callable[..., Any]
) -> Any:
    """The answer of ``path`` from the running server, or of ``local(store, params)``."""
    with served_or_store(settings_from(args)) as target:
        if isinstance(target, ApiClient):
            return target.get(path, params)
        return local(target, params)


def _traces_list(args: argparse.Namespace) -> int:
    from evalhouse.explorer import TracesRequest, list_traces

    params = _params(
        args, "since", "until", "filter", "where", "q", "kind", "sort", "order", "limit", "cursor"
    )
    body = _fetch(
        args, "/api/traces", params, lambda s, p: list_traces(s, TracesRequest.from_params(p))
    )
    if args.json:
        return _print_json(body)
    _table(
        body["traces"],
        [
            ("start_time", 26),
            ("trace_id", 32),
            ("root_name", 20),
            ("service_name", 14),
            ("status", 6),
            ("duration_ms", 10),
            ("total_tokens", 8),
            ("cost_usd", 10),
            ("input_preview", 40),
        ],
    )
    if body["next_cursor"]:
        print(f"more: --cursor {body['next_cursor']}")
    return 0


def _trace_show(args: argparse.Namespace) -> int:
    from evalhouse.evaluators import normalise_trace_id
    from evalhouse.explorer import trace_detail

    trace_id = normalise_trace_id(args.trace_id) or args.trace_id
    path = "/api/traces/" + urllib.parse.quote(trace_id, safe="")
    body = _fetch(args, path, {}, lambda s, p: trace_detail(s, trace_id))
    if args.json:
        return _print_json(body)
    row = body.get("trace")
    if row:
        for key in (
            "trace_id",
            "start_time",
            "duration_ms",
            "root_name",
            "service_name",
            "session_id",
            "user_id",
            "status",
            "models",
            "total_tokens",
            "cost_usd",
            "cost_provenance",
            "input_preview",
            "output_preview",
        ):
            print(f"{key:16s} {row[key]}")
    spans = body.get("spans", [])
    by_parent: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        by_parent.setdefault(span["parent_span_id"], []).append(span)
    ids = {span["span_id"] for span in spans}
    tops = [s for s in spans if s["parent_span_id"] not in ids]

    def walk(span: dict[str, Any], depth: int) -> None:
        flag = " ERROR" if span["status_code"] == "STATUS_CODE_ERROR" else ""
        print(f"{'  ' * depth}- {span['name']} ({span['duration_ms']:.1f} ms){flag}")
        for child in by_parent.get(span["span_id"], []):
            walk(child, depth + 1)

    print("spans:")
    for top in tops:
        walk(top, 1)
    for call in body.get("model_calls", []):
        print(f"chat of {call['name']} ({call['model']}):")
        for message in call["chat"]:
            print(f"  {message['role'] or '?'}: {message['content'][:200]}")
    return 0


def _sessions_list(args: argparse.Namespace) -> int:
    from evalhouse.explorer import SessionsRequest, list_sessions

    params = _params(args, "since", "until", "filter", "where", "kind", "limit", "cursor")
    body = _fetch(
        args, "/api/sessions", params, lambda s, p: list_sessions(s, SessionsRequest.from_params(p))
    )
    if args.json:
        return _print_json(body)
    _table(
        body["sessions"],
        [
            ("session_id", 24),
            ("start_time", 26),
            ("end_time", 26),
            ("traces", 6),
            ("user_id", 16),
            ("total_tokens", 8),
            ("cost_usd", 10),
            ("error_count", 5),
        ],
    )
    if body["next_cursor"]:
        print(f"more: --cursor {body['next_cursor']}")
    return 0


def _session_show(args: argparse.Namespace) -> int:
    from evalhouse.explorer import SessionRequest, session_detail

    params = _params(args, "since", "until", "limit", "cursor")
    path = "/api/sessions/" + urllib.parse.quote(args.session_id, safe="")
    body = _fetch(
        args,
        path,
        params,
        lambda s, p: session_detail(s, SessionRequest.from_params(args.session_id, p)),
    )
    if args.json:
        return _print_json(body)
    session = body["session"]
    print(
        f"session {session['session_id']}: {session['traces']} traces, user "
        f"{session['user_id'] or '-'}, {session['total_tokens']} tokens, "
        f"cost {_cell(session['cost_usd'])}, {session['error_count']} errors"
    )
    _table(
        body["traces"],
        [
            ("start_time", 26),
            ("trace_id", 32),
            ("status", 6),
            ("duration_ms", 10),
            ("total_tokens", 8),
            ("input_preview", 50),
        ],
    )
    if body["next_cursor"]:
        print(f"more: --cursor {body['next_cursor']}")
    return 0


def _usage(args: argparse.Namespace) -> int:
    from evalhouse.explorer import UsageRequest, usage

    params = _params(args, "since", "until", "interval", "filter", "where", "kind", "top")
    if args.group_by:
        params["group_by"] = args.group_by
    body = _fetch(args, "/api/usage", params, lambda s, p: usage(s, UsageRequest.from_params(p)))
    if args.json:
        return _print_json(body)
    _table(
        body["buckets"],
        [
            ("t", 20),
            ("group", 18),
            ("traces", 7),
            ("llm_calls", 7),
            ("total_tokens", 10),
            ("cost_usd", 10),
            ("latency_ms_p50", 8),
            ("latency_ms_p95", 8),
            ("latency_ms_p99", 8),
            ("error_rate", 6),
        ],
    )
    return 0


def _print_json(body: Any) -> int:
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return " ".join(str(value).split())


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, int]]) -> None:
    if not rows:
        print("(none)")
        return
    print("  ".join(name[:width].ljust(width) for name, width in columns).rstrip())
    for row in rows:
        cells = [_cell(row.get(name))[:width].ljust(width) for name, width in columns]
        print("  ".join(cells).rstrip())
