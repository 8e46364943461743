"""Experiment rows as files: CSV, JSON, JSONL, Parquet, and a re-pushable dataset (JSONL).

JSON and JSONL keep values as values: ``input``, ``expected``, ``output`` and the metadata are
decoded from their JSON text, ``scores`` and ``score_errors`` stay objects. CSV and Parquet are
flat: those JSON fields stay JSON text, and each score becomes a column ``scores.<name>`` (and
``score_errors.<name>``). ``dataset`` writes one line per row id (its first trial) with
``id``, ``input``, ``expected`` and ``metadata``, the layout ``evalhouse datasets push`` reads.
"""

from __future__ import annotations

import csv
import importlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Annotated, Any

from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import resolve_experiment
from evalhouse.evaluators.results._context import Context
from evalhouse.evaluators.results._params import ExperimentRef, Param, Where
from evalhouse.evaluators.results._sql import clean, iso, json_value, query, rows_sql
from evalhouse.store import Store

__all__ = ["DEFAULT_FIELDS", "FORMATS", "Export", "export_rows"]

FORMATS = ("csv", "json", "jsonl", "parquet", "dataset")
DEFAULT_FIELDS = (
    "experiment_id",
    "experiment_name",
    "dataset_name",
    "row_id",
    "trial",
    "trace_id",
    "input",
    "expected",
    "output",
    "metadata",
    "error",
    "scores",
    "score_errors",
    "started_at",
    "task_duration_ms",
    "llm_duration_ms",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "cost_provenance",
    "judge_cost_usd",
)
_JSON_FIELDS = frozenset({"input", "expected", "output", "metadata", "experiment_metadata"})
_MAPS = frozenset({"scores", "score_errors"})
_MEDIA = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/json",
    "jsonl": "application/x-ndjson",
    "parquet": "application/vnd.apache.parquet",
    "dataset": "application/x-ndjson",
}
_SUFFIX = {"csv": "csv", "json": "json", "jsonl": "jsonl", "parquet": "parquet", "dataset": "jsonl"}
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Export:
    """A rendered export: bytes, media type and a file name."""

    def __init__(self, data: bytes, media_type: str, filename: str) -> None:
        self.data = data
        self.media_type = media_type
        self.filename = filename


def _columns(store: Store) -> list[str]:
    rows = query(
        store,
        "SELECT name FROM system.columns WHERE database = currentDatabase() "
        "AND table = 'experiment_rows' ORDER BY position",
        {},
    )
    return [row["name"] for row in rows] + ["input_key"]


def _fields(store: Store, fields: Sequence[str] | None) -> list[str]:
    if not fields:
        return list(DEFAULT_FIELDS)
    known = set(_columns(store))
    chosen = []
    for field in fields:
        name = field.strip()
        if not _FIELD.fullmatch(name) or name not in known:
            raise InvalidRequest(
                f"unknown field {name!r}; choose among the columns of experiment_rows: "
                f"{', '.join(sorted(known))}"
            )
        if name not in chosen:
            chosen.append(name)
    return chosen


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return list(value)
    return clean(value)


def _record(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row with its JSON texts decoded (for JSON and JSONL)."""
    return {k: json_value(v) if k in _JSON_FIELDS else _plain(v) for k, v in row.items()}


def _flat(
    rows: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> tuple[list[str], list[dict[str, Any]]]:
    """Flat columns: each map field spread into ``<field>.<key>`` columns."""
    spread = {f: sorted({k for row in rows for k in row[f]}) for f in fields if f in _MAPS}
    columns = [
        column
        for field in fields
        for column in ([f"{field}.{k}" for k in spread[field]] if field in spread else [field])
    ]
    out = []
    for row in rows:
        record: dict[str, Any] = {}
        for field in fields:
            if field in spread:
                for key in spread[field]:
                    record[f"{field}.{key}"] = clean(row[field].get(key))
            else:
                record[field] = _plain(row[field])
        out.append(record)
    return columns, out


def _csv(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> bytes:
    columns, records = _flat(rows, fields)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: "" if v is None else v for k, v in record.items()})
    return buffer.getvalue().encode()


def _parquet(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> bytes:
    try:
        pa: Any = importlib.import_module("pyarrow")
        pq: Any = importlib.import_module("pyarrow.parquet")
    except ImportError as exc:  # pragma: no cover - pyarrow comes with chDB
        raise InvalidRequest(
            "Parquet export needs pyarrow: pip install pyarrow (or choose csv / jsonl)"
        ) from exc
    columns, records = _flat(rows, fields)
    if records:
        table = pa.Table.from_pylist(records)
    else:
        table = pa.table({column: pa.array([], pa.string()) for column in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _dataset(rows: Sequence[Mapping[str, Any]]) -> bytes:
    lines, seen = [], set()
    for row in rows:
        if row["row_id"] in seen:
            continue
        seen.add(row["row_id"])
        metadata = json_value(row["metadata"])
        line = {"id": row["row_id"], "input": json_value(row["input"])}
        if row["expected"] not in ("", "null"):
            line["expected"] = json_value(row["expected"])
        if isinstance(metadata, dict) and metadata:
            line["metadata"] = metadata
        lines.append(json.dumps(line, ensure_ascii=False))
    return ("\n".join(lines) + "\n" if lines else "").encode()


def export_rows(
    results: Context,
    experiment: ExperimentRef,
    *,
    fmt: Annotated[str, Param("File format.", choices=FORMATS, name="format")] = "jsonl",
    fields: Annotated[
        Sequence[str] | None, Param("Columns to include (default: the useful ones).")
    ] = None,
    where: Where = None,
) -> Export:
    """Every row of an experiment (``where`` narrows them) in format ``fmt``, ordered by start
    time; ``fields`` picks columns of experiment_rows (default: the useful ones).

    >>> export_rows(Results(store), "summaries-v2", fmt="csv").filename   # doctest: +SKIP
    'summaries-v2-exp-0001.csv'
    """
    if fmt not in FORMATS:
        raise InvalidRequest(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    store = results.store
    run = resolve_experiment(store, experiment)
    chosen = (
        ["row_id", "trial", "input", "expected", "metadata"]
        if fmt == "dataset"
        else _fields(store, fields)
    )
    selected = ", ".join(f"`{name}`" for name in chosen)
    rows = query(
        store,
        f"SELECT {selected} FROM ({rows_sql(store, results.aggregates, where)}) "
        "ORDER BY started_at, row_id, trial, trace_id",
        {"ids": [run.id]},
    )
    if fmt == "csv":
        data = _csv(rows, chosen)
    elif fmt == "parquet":
        data = _parquet(rows, chosen)
    elif fmt == "dataset":
        data = _dataset(sorted(rows, key=lambda r: int(r["trial"])))
    elif fmt == "json":
        data = (
            "[" + ",\n".join(json.dumps(_record(r), ensure_ascii=False) for r in rows) + "]\n"
        ).encode()
    else:
        data = "".join(json.dumps(_record(r), ensure_ascii=False) + "\n" for r in rows).encode()
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{run.name or 'experiment'}-{run.id}")
    return Export(data, _MEDIA[fmt], f"{stem}.{_SUFFIX[fmt]}")
