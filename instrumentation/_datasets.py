"""Datasets: versioned rows of ``id``, ``input``, ``expected`` and ``metadata``, kept by the
evalhouse server in ClickHouse and reached through its HTTP API (never the store).

Every :meth:`Dataset.append` (from a list of dicts, a CSV or a JSONL file) makes a new
version 1, 2, 3...; loading gives the latest version unless one is asked for. A row keeps its
id across versions: appending a row whose id exists replaces it from that version on. Ids are
given (``id``) or a stable hash of the row's input, so re-appending the same input replaces
rather than duplicates.

>>> qa = dataset("qa")                                                  # doctest: +SKIP
>>> qa.append([{"input": "2+2", "expected": "4"}], description="sums")  # doctest: +SKIP
DatasetVersion(name='qa', version=1, rows=1, changed=1, ...)
>>> [row.input for row in qa.rows()]                                    # doctest: +SKIP
['2+2']
"""

from __future__ import annotations

import csv
import json
import os
import re
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._api_client import ApiClient
from evalhouse.instrumentation._json import row_id as input_row_id

if TYPE_CHECKING:
    from evalhouse.instrumentation._results import ExperimentResult

__all__ = [
    "Dataset",
    "DatasetError",
    "DatasetInfo",
    "DatasetRow",
    "DatasetVersion",
    "dataset",
    "list_datasets",
]

NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ID_CHARS = 512
# A push is sent in requests of at most this many rows / bytes (the server takes larger ones
# too; smaller requests keep both sides' memory flat for big datasets).
CHUNK_ROWS = 5_000
CHUNK_BYTES = 8 * 1024 * 1024
PAGE_ROWS = 10_000

_ROW_KEYS = ("id", "input", "expected", "expected_output", "metadata")
_FILE_KINDS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json"}


class DatasetError(EvalhouseError):
    """Rows, a file or a name that cannot become a dataset; says where and what to fix."""


class NormalisedRow(NamedTuple):
    id: str
    input: Any
    expected: Any
    metadata: Any


def check_name(name: Any) -> str:
    """The dataset name if it is valid, else :class:`DatasetError`.

    >>> check_name("support-qa_v2")
    'support-qa_v2'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise DatasetError(f"invalid dataset name {name!r}: use {NAME_RULE}")
    return name


def json_text(value: Any, where: str, field_name: str) -> str:
    """Compact JSON of one value, or a :class:`DatasetError` naming the row and field."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise DatasetError(
            f"{where}: {field_name} is not JSON ({exc}); use strings, numbers, booleans, "
            "None, lists and dicts with string keys"
        ) from exc


def normalise_row(item: Any, where: str) -> NormalisedRow:
    """Check one row (a mapping with ``input`` and optional ``id``, ``expected`` or
    ``expected_output``, ``metadata``) and give it its id.

    >>> normalise_row({"id": 7, "input": "hi", "expected_output": "hello"}, "row 0")
    NormalisedRow(id='7', input='hi', expected='hello', metadata=None)
    """
    if not isinstance(item, Mapping):
        raise DatasetError(
            f"{where} is {type(item).__name__}, not a dict; each row looks like "
            '{"input": ..., "expected": ..., "metadata": ..., "id": ...}'
        )
    unknown = [str(key) for key in item if key not in _ROW_KEYS]
    if unknown:
        raise DatasetError(
            f"{where} has unknown key(s) {', '.join(map(repr, unknown))}; rows take id, input, "
            "expected (or expected_output) and metadata: put other values under metadata"
        )
    if "input" not in item:
        raise DatasetError(f'{where} has no "input"; every row needs one')
    if "expected" in item and "expected_output" in item:
        raise DatasetError(f'{where} has both "expected" and "expected_output"; keep one')
    expected = item.get("expected", item.get("expected_output"))
    given = item.get("id")
    if given is None or given == "":
        row_id = input_row_id(_checked(item["input"], where, "input"))
    elif isinstance(given, str) or (isinstance(given, int) and not isinstance(given, bool)):
        row_id = str(given)
        if len(row_id) > MAX_ID_CHARS:
            raise DatasetError(f"{where}: id is longer than {MAX_ID_CHARS} characters")
    else:
        raise DatasetError(f"{where}: id must be a string or an integer, not {given!r}")
    return NormalisedRow(row_id, item["input"], expected, item.get("metadata"))


def _checked(value: Any, where: str, field_name: str) -> Any:
    json_text(value, where, field_name)
    return value


@dataclass(frozen=True)
class Collected:
    """Rows ready to push, each with where it came from (for error messages)."""

    source: str
    rows: list[NormalisedRow]
    wheres: list[str]


def collect_rows(data: Any) -> Collected:
    """Rows from a list/iterable of dicts or a CSV / JSONL / JSON file path, checked.

    Nothing is returned unless every row is good: the first bad one raises
    :class:`DatasetError` naming its file and line (or its index), and duplicate ids too.
    """
    if isinstance(data, str | os.PathLike):
        source, items = _read_file(Path(data))
    elif isinstance(data, Mapping) or not isinstance(data, Iterable):
        raise DatasetError(
            f"cannot make dataset rows from {type(data).__name__}; pass a list of dicts or "
            "the path of a .csv, .jsonl or .json file"
        )
    else:
        source, items = "list", ((f"row {index}", item) for index, item in enumerate(data))
    rows: list[NormalisedRow] = []
    wheres: list[str] = []
    first_seen: dict[str, str] = {}
    for where, item in items:
        row = normalise_row(item, where)
        if row.id in first_seen:
            raise DatasetError(
                f"{where} has the same id {row.id!r} as {first_seen[row.id]} (ids are given or "
                "hashed from input); give each row a distinct id or drop the duplicate"
            )
        first_seen[row.id] = where
        rows.append(row)
        wheres.append(where)
    if not rows:
        raise DatasetError(f"nothing to push: the {source} has no rows")
    return Collected(source, rows, wheres)


def _read_file(path: Path) -> tuple[str, Iterator[tuple[str, Any]]]:
    kind = _FILE_KINDS.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: unknown file type {path.suffix or '(none)'}; use .csv, .jsonl or .json"
        )
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if kind == "csv":
        return "csv", iter(_read_csv(path))
    if kind == "jsonl":
        return "jsonl", iter(_read_jsonl(path))
    return "json", iter(_read_json(path))


def _read_csv(path: Path) -> list[tuple[str, Any]]:
    """CSV with a header: ``input`` (required), ``id``, ``expected`` (or ``expected_output``),
    ``metadata`` (a JSON object); any other column becomes a metadata key. Cells are text."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise DatasetError(f"{path}: the file is empty; the first line must be a header")
        columns = [name.strip() for name in header]
        if "input" not in columns:
            raise DatasetError(
                f"{path}: no 'input' column (columns: {', '.join(columns) or 'none'}); "
                "name one column 'input' in the header (optional: id, expected, metadata)"
            )
        doubled = sorted({name for name in columns if columns.count(name) > 1})
        if doubled:
            raise DatasetError(f"{path}: column(s) {', '.join(doubled)} appear twice in the header")
        out = []
        while True:
            line = reader.line_num + 1
            try:
                cells = next(reader, None)
            except csv.Error as exc:
                raise DatasetError(f"{path} line {line}: {exc}") from exc
            if cells is None:
                break
            if not any(cell.strip() for cell in cells):
                continue
            where = f"{path} line {line}"
            if len(cells) > len(columns):
                raise DatasetError(
                    f"{where} has {len(cells)} fields but the header has {len(columns)}; "
                    "quote cells that contain commas"
                )
            values = dict(zip(columns, cells, strict=False))
            out.append((where, _csv_row(values, where)))
        return out


def _csv_row(values: dict[str, str], where: str) -> dict[str, Any]:
    row: dict[str, Any] = {"input": values.pop("input")}
    for key in ("id", "expected", "expected_output"):
        cell = values.pop(key, "")
        if cell != "":
            row[key] = cell
    metadata: Any = None
    cell = values.pop("metadata", "").strip()
    if cell:
        try:
            metadata = json.loads(cell)
        except ValueError as exc:
            raise DatasetError(
                f"{where}: metadata is not valid JSON ({exc}); write a JSON object such as "
                '{"topic": "billing"} (with doubled quotes inside CSV), or leave it empty'
            ) from exc
    extra = {key: cell for key, cell in values.items() if key}
    if extra:
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise DatasetError(
                f"{where}: metadata must be a JSON object when the file has extra columns "
                f"({', '.join(extra)}), which become metadata keys"
            )
        metadata = {**extra, **metadata}
    if metadata is not None:
        row["metadata"] = metadata
    return row


def _read_jsonl(path: Path) -> list[tuple[str, Any]]:
    out = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} line {number}"
            try:
                item = json.loads(line)
            except ValueError as exc:
                raise DatasetError(
                    f"{where} is not valid JSON ({exc}); each line must be one JSON object "
                    'like {"input": ..., "expected": ...}'
                ) from exc
            out.append((where, item))
    return out


def _read_json(path: Path) -> list[tuple[str, Any]]:
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        raise DatasetError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(items, list):
        raise DatasetError(f"{path}: a .json dataset file must hold a list of row objects")
    return [(f"{path} item {index}", item) for index, item in enumerate(items)]


def _timestamp(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


@dataclass(frozen=True)
class DatasetRow(Mapping[str, Any]):
    """One row; reads as an object (``row.input``) or as a dict (``row["input"]``)."""

    id: str
    input: Any
    expected: Any = None
    metadata: Any = None

    _KEYS: ClassVar[tuple[str, ...]] = ("id", "input", "expected", "metadata")

    @property
    def expected_output(self) -> Any:
        """``expected``, under the name Langfuse-style code uses."""
        return self.expected

    def __getitem__(self, key: str) -> Any:
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._KEYS)

    def __len__(self) -> int:
        return len(self._KEYS)


@dataclass(frozen=True)
class DatasetVersion:
    """One version of a dataset: ``rows`` as of it, ``changed`` rows written by it."""

    name: str
    version: int
    rows: int
    changed: int
    description: str = ""
    source: str = ""
    created_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DatasetVersion:
        return cls(
            str(body["name"]),
            int(body["version"]),
            int(body["rows"]),
            int(body["changed"]),
            str(body.get("description") or ""),
            str(body.get("source") or ""),
            _timestamp(body.get("created_at")),
        )


@dataclass(frozen=True)
class DatasetInfo:
    """A stored dataset as :func:`list_datasets` reports it."""

    name: str
    version: int
    rows: int
    versions: int
    description: str = ""
    created_at: datetime | None = field(default=None, compare=False)
    updated_at: datetime | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> DatasetInfo:
        return cls(
            str(body["name"]),
            int(body["version"]),
            int(body["rows"]),
            int(body["versions"]),
            str(body.get("description") or ""),
            _timestamp(body.get("created_at")),
            _timestamp(body.get("updated_at")),
        )


class Dataset:
    """A stored dataset by name: ``version=None`` follows the latest version.

    >>> qa = Dataset("qa", api_url="http://127.0.0.1:8700")    # doctest: +SKIP
    >>> qa.append("qa.jsonl").version                           # doctest: +SKIP
    2
    >>> qa.at(1).rows()[0].input                                # doctest: +SKIP
    'What is the refund window?'
    """

    def __init__(
        self,
        name: str,
        *,
        version: int | None = None,
        api_url: str | None = None,
        api_key: str | None = None,
        client: ApiClient | None = None,
    ) -> None:
        self.name = check_name(name)
        if version is not None and (
            isinstance(version, bool) or not isinstance(version, int) or version < 1
        ):
            raise DatasetError(f"dataset version must be an integer >= 1, not {version!r}")
        self.version = version
        self.client = client or ApiClient(api_url, api_key=api_key)

    def __repr__(self) -> str:
        return f"Dataset({self.name!r}, version={self.version!r})"

    @property
    def _path(self) -> str:
        return f"/api/datasets/{urllib.parse.quote(self.name)}"

    def at(self, version: int) -> Dataset:
        """The same dataset pinned to ``version``."""
        return Dataset(self.name, version=version, client=self.client)

    def pin(self) -> Dataset:
        """This dataset pinned to a version: itself when pinned, else the latest version now.

        The runner pins a dataset before reading it, so the rows and the version label on
        the spans agree even when a push lands meanwhile.
        """
        if self.version is not None:
            return self
        page = self.client.get(self._path, {"offset": 0, "limit": 1})
        return self.at(int(page["version"]))

    def rows(self) -> list[DatasetRow]:
        """The rows of this version (the latest one when unpinned), in insertion order.

        >>> [(row.id, row.expected) for row in qa.at(1).rows()]     # doctest: +SKIP
        [('refund', '30 days')]
        """
        return self._load()[1]

    def __iter__(self) -> Iterator[DatasetRow]:
        return iter(self.rows())

    def _load(self) -> tuple[int, list[DatasetRow]]:
        version, offset = self.version, 0
        rows: list[DatasetRow] = []
        while True:
            page = self.client.get(
                self._path, {"version": version, "offset": offset, "limit": PAGE_ROWS}
            )
            # Later pages are read from the version the first page found, even if a push
            # lands meanwhile.
            version = int(page["version"])
            batch = page["rows"]
            rows.extend(
                DatasetRow(r["id"], r["input"], r["expected"], r["metadata"]) for r in batch
            )
            offset += len(batch)
            if not batch or offset >= int(page["total"]):
                return version, rows

    def versions(self) -> list[DatasetVersion]:
        """Every version, oldest first.

        >>> [(v.version, v.rows) for v in qa.versions()]            # doctest: +SKIP
        [(1, 120), (2, 124)]
        """
        body = self.client.get(f"{self._path}/versions")
        return [DatasetVersion.from_json(item) for item in body["versions"]]

    def append(self, data: Any, *, description: str | None = None) -> DatasetVersion:
        """Add rows as a new version, from a list of dicts or a .csv / .jsonl / .json path.

        A row whose id is already in the dataset replaces it. Every row is checked before
        anything is sent, and the server makes the version visible only once all rows are
        stored: a bad row or a failed push leaves the dataset as it was.

        >>> qa.append("qa.csv", description="from support tickets")  # doctest: +SKIP
        DatasetVersion(name='qa', version=2, rows=124, changed=4, ...)
        """
        collected = collect_rows(data)
        encoded = [
            _wire_row(row, where)
            for row, where in zip(collected.rows, collected.wheres, strict=True)
        ]
        return self._push(encoded, collected.source, description)

    def delete(self, ids: Iterable[str], *, description: str | None = None) -> DatasetVersion:
        """Remove rows by id as a new version (older versions keep them).

        >>> qa.delete(["r17"]).rows                                  # doctest: +SKIP
        123
        """
        wanted = [str(row_id) for row_id in ids]
        if not wanted:
            raise DatasetError("nothing to delete: pass at least one row id")
        encoded = [json.dumps({"id": row_id, "deleted": True}) for row_id in dict.fromkeys(wanted)]
        return self._push(encoded, "delete", description)

    def append_experiment(
        self, experiment: str, *, description: str | None = None
    ) -> DatasetVersion:
        """Add a stored experiment's rows (input, expected, metadata; trial 0) as a new
        version. ``experiment`` is an experiment id, or a name (its latest run).

        >>> dataset("qa-hard").append_experiment("answers-v2")        # doctest: +SKIP
        DatasetVersion(name='qa-hard', version=1, ..., source='experiment:6f1c...')
        """
        body = self.client.post(
            f"{self._path}/from-experiment",
            {"experiment": experiment, "description": description},
        )
        return DatasetVersion.from_json(body)

    def _push(self, encoded: list[str], source: str, description: str | None) -> DatasetVersion:
        push_id = uuid.uuid4().hex
        meta = {"push_id": push_id, "source": source, "description": description}
        chunks = list(_chunks(encoded))
        if len(chunks) == 1:
            body = _rows_body(chunks[0], meta)
            answer = self.client.request("POST", self._path, body=body, retries=2)
            return DatasetVersion.from_json(answer)
        # Chunks are staged under the push id and committed in one step; a retried chunk or
        # commit is recognised by the server, so retrying is safe.
        pushes = f"{self._path}/pushes/{push_id}"
        offset = 0
        for chunk in chunks:
            body = _rows_body(chunk, {"offset": offset})
            self.client.request("POST", f"{pushes}/rows", body=body, retries=2)
            offset += len(chunk)
        answer = self.client.post(f"{pushes}/commit", {**meta, "rows": offset}, retries=2)
        return DatasetVersion.from_json(answer)

    def run_experiment(self, name: str, task: Any, **kwargs: Any) -> ExperimentResult:
        """Run an experiment over this version's rows: ``evalhouse.run_experiment(name,
        rows, task, dataset=<this version>, **kwargs)``, so the rows carry this dataset's
        name, version and row ids. The run talks to this dataset's API unless ``api_url``
        is given.

        >>> qa.run_experiment("answers-v2", answer, scorers=[exact]).format()  # doctest: +SKIP
        """
        from evalhouse.instrumentation._runner import run_experiment

        version, rows = self._load()
        kwargs.setdefault("api_url", self.client.base_url)
        kwargs.setdefault("api_key", self.client.api_key)
        return run_experiment(
            name, [dict(row) for row in rows], task, dataset=self.at(version), **kwargs
        )


def _wire_row(row: NormalisedRow, where: str) -> str:
    return (
        f'{{"id":{json.dumps(row.id)},"input":{json_text(row.input, where, "input")},'
        f'"expected":{json_text(row.expected, where, "expected")},'
        f'"metadata":{json_text(row.metadata, where, "metadata")}}}'
    )


def _chunks(encoded: list[str]) -> Iterator[list[str]]:
    chunk: list[str] = []
    size = 0
    for text in encoded:
        if chunk and (len(chunk) >= CHUNK_ROWS or size + len(text) > CHUNK_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(text)
        size += len(text)
    if chunk:
        yield chunk


def _rows_body(chunk: list[str], meta: Mapping[str, Any]) -> bytes:
    head = json.dumps(dict(meta))[:-1]
    separator = ", " if meta else ""
    return f'{head}{separator}"rows":[{",".join(chunk)}]}}'.encode()


def dataset(
    name: str,
    *,
    version: int | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
) -> Dataset:
    """A stored dataset by name (nothing is fetched until rows are read or pushed).

    >>> qa = dataset("qa")                                             # doctest: +SKIP
    >>> qa.append([{"input": "hi", "expected": "hello"}]).version     # doctest: +SKIP
    1
    """
    return Dataset(name, version=version, api_url=api_url, api_key=api_key)


def list_datasets(*, api_url: str | None = None, api_key: str | None = None) -> list[DatasetInfo]:
    """Every stored dataset: name, latest version, rows, versions, description, times.

    >>> [info.name for info in list_datasets()]                      # doctest: +SKIP
    ['qa']
    """
    body = ApiClient(api_url, api_key=api_key).get("/api/datasets")
    return [DatasetInfo.from_json(item) for item in body["datasets"]]
