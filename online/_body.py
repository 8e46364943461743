"""Reading the JSON bodies of the online API: one field at a time, each refusal naming the
field and what it should be (:class:`InvalidRequest`, a 400).

>>> Fields({"name": "helpful"}, "feedback").text("name", required=True)
'helpful'
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from evalhouse.errors import InvalidRequest

__all__ = ["Fields", "decode_body"]

_MAX_TEXT = 10_000


def decode_body(raw: bytes, usage: str) -> dict[str, Any]:
    """A JSON object from a request body; :class:`InvalidRequest` showing ``usage`` if not."""
    try:
        value = json.loads(raw or b"null")
    except ValueError:
        raise InvalidRequest(f"the body is not JSON; send {usage}") from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"the body must be a JSON object: {usage}")
    return value


class Fields:
    """The fields of one JSON object, read and checked by type; ``what`` names it in errors."""

    def __init__(self, payload: Mapping[str, Any], what: str) -> None:
        self.payload = payload
        self.what = what

    def only(self, *names: str) -> None:
        """Refuse fields other than ``names`` (a typo must not pass silently)."""
        unknown = sorted(set(self.payload) - set(names))
        if unknown:
            raise InvalidRequest(
                f"{self.what}: unknown field(s) {', '.join(unknown)}; known: {', '.join(names)}"
            )

    def _bad(self, name: str, want: str) -> InvalidRequest:
        got = self.payload.get(name)
        shown = json.dumps(got, default=str)[:80]
        return InvalidRequest(f"{self.what}: {name!r} must be {want}, got {shown}")

    def text(
        self, name: str, *, required: bool = False, default: str = "", limit: int = _MAX_TEXT
    ) -> str:
        value = self.payload.get(name)
        if value is None:
            if required:
                raise InvalidRequest(f"{self.what}: {name!r} is required")
            return default
        if not isinstance(value, str) or (required and not value.strip()):
            raise self._bad(name, "a non-empty string" if required else "a string")
        if len(value) > limit:
            raise InvalidRequest(
                f"{self.what}: {name!r} is {len(value)} characters long; at most {limit}"
            )
        return value.strip() if required else value

    def number(
        self, name: str, *, low: float | None = None, high: float | None = None
    ) -> float | None:
        value = self.payload.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._bad(name, "a number")
        number = float(value)
        if not math.isfinite(number):
            raise self._bad(name, "a finite number")
        if (low is not None and number < low) or (high is not None and number > high):
            raise self._bad(name, f"a number from {low:g} to {high:g}")
        return number

    def boolean(self, name: str, default: bool) -> bool:
        value = self.payload.get(name, default)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value

    def strings(self, name: str) -> list[str]:
        value = self.payload.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise self._bad(name, "a list of non-empty strings")
        return list(value)

    def mapping(self, name: str) -> dict[str, Any]:
        value = self.payload.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._bad(name, "a JSON object")
        return dict(value)
