"""Dataset rows as the tables keep them: JSON texts, checked once on the way in.

Rows arrive in the SDK's wire shape (``{"id", "input", "expected", "metadata"}``, or a
deletion ``{"id": ..., "deleted": true}``) or from a file or list collected by
:func:`evalhouse.dataset_rows.collect_rows`; both go through the same checks as on the SDK
side, so the server refuses exactly the rows an app would have refused before sending.

>>> wire_rows([{"id": "r1", "input": "2+2", "expected": "4"}])[0]
StoredRow(id='r1', input='"2+2"', expected='"4"', metadata='null', deleted=False)
"""

from __future__ import annotations

from typing import Any, NamedTuple

from evalhouse.dataset_rows import Collected, DatasetError, NormalisedRow, json_text, normalise_row

__all__ = ["MAX_REQUEST_ROWS", "StoredRow", "stored_row", "stored_rows", "wire_rows"]

# Rows one request may carry; a larger push is sent in chunks (``/pushes/{push_id}/rows``).
MAX_REQUEST_ROWS = 50_000


class StoredRow(NamedTuple):
    """A row as the tables keep it: JSON texts."""

    id: str
    input: str
    expected: str
    metadata: str
    deleted: bool = False


def stored_row(row: NormalisedRow, where: str) -> StoredRow:
    """A checked row as JSON texts; ``where`` names it in errors ("row 3", "a.csv line 4")."""
    return StoredRow(
        row.id,
        json_text(row.input, where, "input"),
        json_text(row.expected, where, "expected"),
        json_text(row.metadata, where, "metadata"),
    )


def stored_rows(collected: Collected) -> list[StoredRow]:
    """The rows of a collected list or file, as JSON texts."""
    return [
        stored_row(row, where) for row, where in zip(collected.rows, collected.wheres, strict=True)
    ]


def wire_rows(items: Any, offset: int = 0) -> list[StoredRow]:
    """Rows of a request body, checked; tombstones are ``{"id": ..., "deleted": true}``.

    ``offset`` is the index of the first row in the whole push, so errors name the row a
    user sent, not its place in the chunk.
    """
    if not isinstance(items, list):
        raise DatasetError('"rows" must be a list of row objects')
    if len(items) > MAX_REQUEST_ROWS:
        raise DatasetError(
            f"{len(items)} rows in one request; send at most {MAX_REQUEST_ROWS} per request "
            "(split a large push with /pushes/{push_id}/rows)"
        )
    out = []
    for index, item in enumerate(items):
        where = f"row {offset + index}"
        if isinstance(item, dict) and item.get("deleted") is True:
            row_id = item.get("id")
            if not isinstance(row_id, str) or not row_id or set(item) - {"id", "deleted"}:
                raise DatasetError(f'{where}: a deletion is {{"id": "<row id>", "deleted": true}}')
            out.append(StoredRow(row_id, "null", "null", "null", True))
        else:
            out.append(stored_row(normalise_row(item, where), where))
    return out
