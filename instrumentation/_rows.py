"""The rows an experiment runs over, from whatever the user passes as ``data``.

Accepted: an iterable of dicts (``input``; ``expected`` or ``expected_output``; ``metadata``;
optional ``id``), an iterable of objects with those attributes (dataset items), or a stored
dataset object (duck-typed: ``name``, ``version``, iterating gives rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from evalhouse.encoding import row_id
from evalhouse.errors import EvalhouseError

_MISSING = object()


@dataclass(frozen=True)
class Row:
    """One dataset row, normalised. ``item`` is what the user passed, for ``task(item=...)``."""

    id: str
    input: Any
    expected: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    item: Any = None


@dataclass(frozen=True)
class DatasetRef:
    name: str | None
    version: str | None


def _field(item: Any, *names: str) -> Any:
    for name in names:
        if isinstance(item, Mapping):
            if name in item:
                return item[name]
        else:
            value = getattr(item, name, _MISSING)
            if value is not _MISSING:
                return value
    return _MISSING


def _is_dataset(value: Any) -> bool:
    return (
        not isinstance(value, str | bytes | Mapping | list | tuple)
        and isinstance(getattr(value, "name", None), str)
        and hasattr(value, "version")
        and hasattr(value, "__iter__")
    )


def resolve_dataset(data: Any, dataset: Any) -> tuple[Any, DatasetRef]:
    """Pick the rows' source and the dataset label (name, version) for the spans."""
    if data is None and _is_dataset(dataset):
        data = dataset
    if data is None:
        hint = " (a dataset name alone is a label: load it with evalhouse.dataset(name))"
        raise EvalhouseError(
            "run_experiment needs data: a list of dicts with 'input' (and 'expected', "
            "'metadata', 'id'), or a dataset object" + (hint if isinstance(dataset, str) else "")
        )
    source = dataset if dataset is not None else (data if _is_dataset(data) else None)
    pin = getattr(source, "pin", None)
    if callable(pin):
        pinned = pin()
        data = pinned if data is source else data
        source = pinned
    if isinstance(source, str):
        return data, DatasetRef(source, None)
    if source is not None:
        version = getattr(source, "version", None)
        return data, DatasetRef(source.name, None if version is None else str(version))
    return data, DatasetRef(None, None)


def load_rows(data: Any) -> list[Row]:
    """Every row, checked before anything runs, so a bad row costs nothing else."""
    if isinstance(data, str | bytes | Mapping) or not isinstance(data, Iterable):
        raise EvalhouseError(
            f"data must be a list (or other iterable) of rows, got {type(data).__name__}; "
            'e.g. [{"input": "2+2", "expected": "4"}]'
        )
    rows = []
    for number, item in enumerate(data):
        value = _field(item, "input")
        if value is _MISSING:
            raise EvalhouseError(
                f"row {number} has no 'input': each row needs 'input' and may have 'expected' "
                f"(or 'expected_output'), 'metadata' and 'id'; got {item!r:.200}"
            )
        expected = _field(item, "expected", "expected_output")
        metadata = _field(item, "metadata")
        if metadata is _MISSING or metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise EvalhouseError(
                f"row {number}: 'metadata' must be a dict, got {type(metadata).__name__}"
            )
        explicit_id = _field(item, "id")
        rows.append(
            Row(
                id=row_id(value) if explicit_id in (_MISSING, None, "") else str(explicit_id),
                input=value,
                expected=None if expected is _MISSING else expected,
                metadata=dict(metadata),
                item=item,
            )
        )
    return rows
