"""``evalhouse datasets list|show|versions|push``.

While ``evalhouse serve`` holds the embedded data directory, the commands go through its HTTP
API with the one API client (``evalhouse.api_client``; pushes through the SDK's ``Dataset`` on
that client, which sends a large file in chunks); otherwise they open the store themselves
(the switch is ``_cli_common.served_or_store``). Both ways give the same answers: the API
routes and this command share :class:`evalhouse.datasets.Datasets`.
"""

from __future__ import annotations

import argparse
import json
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from evalhouse.api_client import ApiClient
from evalhouse.errors import EvalhouseError
from evalhouse.surfaces._cli_common import Commands, served_or_store, settings_from, store_flags

# Imported when a datasets command runs, not when the CLI starts: the SDK package loads the
# OpenTelemetry SDK, and the store side needs the server extra.
if TYPE_CHECKING:
    from evalhouse.datasets import Datasets
    from evalhouse.instrumentation import DatasetVersion

_PAGE = 10_000
_CELL = 40


def register(commands: Commands) -> None:
    datasets = commands.add_parser("datasets", help="list, show and push datasets")
    actions = datasets.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="every dataset: latest version, rows, description")
    store_flags(listing)
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="the rows of a dataset version")
    store_flags(show)
    show.add_argument("name", help="dataset name")
    show.add_argument("--version", type=int, help="version to show (default: the latest)")
    show.add_argument(
        "--format",
        choices=("table", "jsonl"),
        default="table",
        help="table (default, cells shortened) or jsonl (every row in full, re-pushable)",
    )
    show.add_argument("--limit", type=int, help="show at most this many rows")
    show.set_defaults(run=_show)

    versions = actions.add_parser("versions", help="the version history of a dataset")
    store_flags(versions)
    versions.add_argument("name", help="dataset name")
    versions.set_defaults(run=_versions)

    push = actions.add_parser(
        "push",
        help="add the rows of a CSV or JSONL file as a new version",
        description="Add rows as a new dataset version. JSONL: one object per line with "
        "input and optional id, expected (or expected_output), metadata. CSV: a header with "
        "an input column and optional id, expected, metadata (a JSON object) columns; cells "
        "are text, other columns become metadata keys. Rows without id get a hash of input; "
        "a row whose id exists replaces it. A bad row stores nothing.",
    )
    store_flags(push)
    push.add_argument("name", help="dataset name (created on first push)")
    push.add_argument("file", type=Path, help="a .csv, .jsonl or .json file")
    push.add_argument("--description", help="what this version is")
    push.set_defaults(run=_push)

    traces = actions.add_parser(
        "from-traces",
        help="a new version made of production traces (input, and output as expected)",
        description="Add production traces as rows of a new version: each trace's input as "
        "input and its output as expected (metadata: source_trace_id). Choose them with the "
        "explorer's filter language and a window, or name them with --trace.",
    )
    store_flags(traces)
    traces.add_argument("name", help="dataset name (created on first use)")
    traces.add_argument("--filter", help="e.g. 'tag:support -status:error'")
    traces.add_argument("--where", help="SQL boolean over the trace columns")
    traces.add_argument("--since", help="ISO time or relative: 1h, 7d (default 7d)")
    traces.add_argument("--until", help="ISO time or relative (default now)")
    traces.add_argument("--limit", type=int, help="at most this many traces (default 100)")
    traces.add_argument("--trace", action="append", help="a trace id (repeat for several)")
    traces.add_argument(
        "--map",
        action="append",
        metavar="FIELD=SOURCE",
        help="input/expected/metadata from an attribute, or root, messages, none",
    )
    traces.add_argument("--description", help="what this version is")
    traces.set_defaults(run=_from_traces)


class _Backend(Protocol):
    """The API's JSON bodies, from the running server or straight from the store."""

    def summaries(self) -> dict[str, Any]: ...

    def versions(self, name: str) -> dict[str, Any]: ...

    def page(self, name: str, version: int | None, offset: int, limit: int) -> dict[str, Any]: ...

    def push(self, name: str, file: Path, description: str | None) -> DatasetVersion: ...


class _ApiBackend:
    def __init__(self, client: ApiClient) -> None:
        self.client = client

    def summaries(self) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get("/api/datasets")
        return body

    def versions(self, name: str) -> dict[str, Any]:
        body: dict[str, Any] = self.client.get(f"{_path(name)}/versions")
        return body

    def page(self, name: str, version: int | None, offset: int, limit: int) -> dict[str, Any]:
        params = {"version": version, "offset": offset, "limit": limit}
        body: dict[str, Any] = self.client.get(_path(name), params)
        return body

    def push(self, name: str, file: Path, description: str | None) -> DatasetVersion:
        from evalhouse.instrumentation import Dataset

        return Dataset(name, client=self.client).append(file, description=description)


def _path(name: str) -> str:
    return f"/api/datasets/{urllib.parse.quote(name)}"


class _StoreBackend:
    def __init__(self, datasets: Datasets) -> None:
        self.datasets = datasets

    def summaries(self) -> dict[str, Any]:
        return self.datasets.summaries()

    def versions(self, name: str) -> dict[str, Any]:
        return self.datasets.versions(name)

    def page(self, name: str, version: int | None, offset: int, limit: int) -> dict[str, Any]:
        header, stored = self.datasets.load(name, version, offset, limit)
        rows = [
            {
                "id": r.id,
                "input": json.loads(r.input),
                "expected": json.loads(r.expected),
                "metadata": json.loads(r.metadata),
            }
            for r in stored
        ]
        return {**header, "rows": rows}

    def push(self, name: str, file: Path, description: str | None) -> DatasetVersion:
        from evalhouse.instrumentation import DatasetVersion

        return DatasetVersion.from_json(self.datasets.append(name, file, description=description))


@contextmanager
def _backend(args: argparse.Namespace, *, writes: bool = False) -> Iterator[_Backend]:
    from evalhouse.dataset_rows import check_name
    from evalhouse.datasets import Datasets

    if getattr(args, "name", None) is not None:
        check_name(args.name)  # before it goes into a URL or a query
    # A first push creates the embedded store; reads of a store that does not exist refuse.
    with served_or_store(settings_from(args), create=writes) as target:
        if isinstance(target, ApiClient):
            yield _ApiBackend(target)
        else:
            yield _StoreBackend(Datasets(target))


def _list(args: argparse.Namespace) -> int:
    from evalhouse.instrumentation import DatasetInfo

    with _backend(args) as backend:
        infos = [DatasetInfo.from_json(item) for item in backend.summaries()["datasets"]]
    if not infos:
        print("no datasets yet; add one with 'evalhouse datasets push NAME FILE'")
        return 0
    _table(
        ["NAME", "VERSION", "ROWS", "VERSIONS", "UPDATED", "DESCRIPTION"],
        [
            [i.name, i.version, i.rows, i.versions, _when(i.updated_at), i.description]
            for i in infos
        ],
    )
    return 0


def _versions(args: argparse.Namespace) -> int:
    from evalhouse.instrumentation import DatasetVersion

    with _backend(args) as backend:
        body = backend.versions(args.name)
    versions = [DatasetVersion.from_json(item) for item in body["versions"]]
    _table(
        ["VERSION", "ROWS", "CHANGED", "CREATED", "SOURCE", "DESCRIPTION"],
        [
            [v.version, v.rows, v.changed, _when(v.created_at), v.source, v.description]
            for v in versions
        ],
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    from evalhouse.instrumentation import DatasetRow, DatasetVersion

    if args.limit is not None and args.limit < 1:
        raise EvalhouseError("--limit must be at least 1")
    with _backend(args) as backend:
        header, rows = _read(backend, args.name, args.version, args.limit)
    if args.format == "jsonl":
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return 0
    total = int(header["total"])
    # The page header's "rows" is the page; the version's row count is "total".
    info = DatasetVersion.from_json({**header, "rows": total})
    about = f" ({info.description})" if info.description else ""
    print(f"dataset {info.name} version {info.version}: {total} rows{about}")
    shown = [DatasetRow(r["id"], r["input"], r["expected"], r["metadata"]) for r in rows]
    _table(
        ["ID", "INPUT", "EXPECTED", "METADATA"],
        [[row.id, _cell(row.input), _cell(row.expected), _cell(row.metadata)] for row in shown],
    )
    if len(rows) < total:
        print(f"... {total - len(rows)} more rows (--limit, or --format jsonl for all)")
    return 0


def _read(
    backend: _Backend, name: str, version: int | None, limit: int | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    rows: list[dict[str, Any]] = []
    while True:
        want = _PAGE if limit is None else min(_PAGE, limit - len(rows))
        page = backend.page(name, version, len(rows), want)
        version = int(page["version"])  # later pages from the same version
        rows.extend(page["rows"])
        done = not page["rows"] or len(rows) >= int(page["total"])
        if done or (limit is not None and len(rows) >= limit):
            return page, rows


def _push(args: argparse.Namespace) -> int:
    with _backend(args, writes=True) as backend:
        pushed = backend.push(args.name, args.file, args.description)
    print(
        f"dataset {pushed.name} version {pushed.version}: {pushed.changed} rows pushed, "
        f"{pushed.rows} rows in all"
    )
    return 0


def _from_traces(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {}
    for key in ("filter", "where", "since", "until", "limit", "description"):
        value = getattr(args, key)
        if value is not None:
            body[key] = value
    if args.trace:
        body["trace_ids"] = args.trace
    if args.map:
        body["mapping"] = dict(item.partition("=")[::2] for item in args.map)
    settings = settings_from(args)
    with served_or_store(settings, create=True) as target:
        if isinstance(target, ApiClient):
            made = target.post(f"{_path(args.name)}/from-traces", body)
        else:
            from evalhouse.online import dataset_from_traces

            made = dataset_from_traces(target, args.name, body)
    print(
        f"dataset {made['name']} version {made['version']}: {made['changed']} traces added, "
        f"{made['rows']} rows in all"
    )
    for skipped in made["skipped"]:
        print(f"  left out {skipped['trace_id']}: {skipped['reason']}")
    return 0


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else ""


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= _CELL else text[: _CELL - 1] + "…"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in [list(headers), *cells]) for i in range(len(headers))]
    for line in [list(headers), *cells]:
        print(
            "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        )
