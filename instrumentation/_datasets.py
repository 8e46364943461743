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

import json
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from evalhouse.api_client import ApiClient
from evalhouse.dataset_rows import (
    DatasetError,
    NormalisedRow,
    check_name,
    collect_rows,
    json_text,
)
from evalhouse.instrumentation._settings import api_client

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

# A push is sent in requests of at most this many rows / bytes (the server takes larger ones
# too; smaller requests keep both sides' memory flat for big datasets).
CHUNK_ROWS = 5_000
CHUNK_BYTES = 8 * 1024 * 1024
PAGE_ROWS = 10_000


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
        self.client = client or api_client(api_url, api_key)

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
    body = api_client(api_url, api_key).get("/api/datasets")
    return [DatasetInfo.from_json(item) for item in body["datasets"]]
