"""Dataset rows as the SDK sends them and the server stores them: one set of checks.

Names, ids and JSON fields are checked the same way on both sides, so a bad row fails in
the app before anything is sent, and the server refuses the same rows from any client.
Rows come from lists of dicts, CSV, JSONL or JSON files; errors name the file and line.

>>> normalise_row({"input": "2+2", "expected": "4"}, "row 1").expected
'"4"'
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from evalhouse.encoding import row_id as input_row_id
from evalhouse.errors import EvalhouseError

__all__ = [
    "MAX_ID_CHARS",
    "NAME_RULE",
    "Collected",
    "DatasetError",
    "NormalisedRow",
    "check_name",
    "collect_rows",
    "json_text",
    "normalise_row",
]

NAME_RULE = "1-128 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
MAX_ID_CHARS = 512

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
