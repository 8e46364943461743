"""JSON for the wire contract: never raises, whatever the app hands us.

The wire contract carries inputs, outputs and metadata as JSON-encoded strings. Values JSON
cannot encode (dataclasses, pydantic models, sets, bytes, anything else) are converted, never
refused: tracing must not break the traced code.

>>> encode({"q": "capital of France?"})
'{"q": "capital of France?"}'
>>> row_id({"b": 1, "a": [1, 2]}) == row_id({"a": [1, 2], "b": 1})
True
"""

from __future__ import annotations

__all__ = ["canonical", "encode", "row_id"]

import base64
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any


def _fallback(value: Any) -> Any:
    dump = getattr(value, "model_dump", None)  # pydantic v2 models
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a broken model still gets a readable value below
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def encode(value: Any) -> str:
    """``value`` as a JSON string (non-ASCII kept as is)."""
    try:
        return json.dumps(value, default=_fallback, ensure_ascii=False)
    except (ValueError, TypeError, RecursionError):  # cycles, NaN keys...
        return json.dumps(str(value), ensure_ascii=False)


def canonical(value: Any) -> str:
    """A stable encoding: sorted keys, no spaces; equal values give equal strings."""
    try:
        return json.dumps(
            value, default=_fallback, ensure_ascii=False, sort_keys=True, separators=(",", ":")
        )
    except (ValueError, TypeError, RecursionError):
        return json.dumps(str(value), ensure_ascii=False)


def row_id(input: Any) -> str:
    """The row id of an input that has none: a hash of its canonical JSON (so trials of one
    input, and reruns of one dataset, share it)."""
    return hashlib.sha256(canonical(input).encode()).hexdigest()[:32]
