"""How scorers see row values of any JSON type, and the errors they raise on bad input."""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from evalhouse.errors import EvalhouseError

__all__ = [
    "InvalidScorerOptions",
    "MissingExpected",
    "as_number",
    "as_text",
    "canonical",
    "closeness",
    "normalise_text",
    "parse_json",
    "require_expected",
]


class InvalidScorerOptions(EvalhouseError):
    """A scorer was configured with options it cannot use."""

    def __init__(self, scorer: str, message: str) -> None:
        super().__init__(f"scorer {scorer}: {message}")
        self.scorer = scorer


class MissingExpected(EvalhouseError):
    """A scorer that compares against ``expected`` was run on a row without one."""

    def __init__(self, scorer: str, hint: str = "") -> None:
        super().__init__(
            f"scorer {scorer} needs an expected value and the row has none; "
            f"give the dataset row an 'expected' (evalhouse.expected on the eval span){hint}"
        )
        self.scorer = scorer


def require_expected(scorer: str, expected: Any, hint: str = "") -> Any:
    """Return ``expected``, or raise :class:`MissingExpected` naming the scorer when it is None."""
    if expected is None:
        raise MissingExpected(scorer, hint)
    return expected


def canonical(value: Any) -> str:
    """One stable text per JSON value: dict keys sorted, non-ASCII kept, odd types as str."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def as_text(value: Any) -> str:
    """The text a string scorer compares: strings as they are, None empty, the rest as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return canonical(value)


def normalise_text(text: str, *, ignore_case: bool = True, ignore_whitespace: bool = True) -> str:
    """NFKC-normalised text, case-folded and with whitespace runs collapsed on request."""
    text = unicodedata.normalize("NFKC", text)
    if ignore_case:
        text = text.casefold()
    if ignore_whitespace:
        text = " ".join(text.split())
    return text


_NOT_JSON = object()


def parse_json(value: Any) -> Any:
    """A string that holds JSON, decoded; any other value as it is.

    Returns the module-level sentinel ``NOT_JSON`` when a string is not JSON.
    """
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return _NOT_JSON


NOT_JSON: Any = _NOT_JSON


def as_number(value: Any) -> float | None:
    """A number from an int, float or numeric string (``"1,234.5"``, ``" 3 "``); else None."""
    if isinstance(value, bool):
        return None  # True is not 1 for a scorer: the task answered a bool, not a number
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(",", "").replace("_", "")
        try:
            number = float(text)
        except ValueError:
            return None
        return None if math.isnan(number) else number
    return None


def closeness(a: float, b: float) -> float:
    """1 - |a - b| / max(|a|, |b|), clipped to [0, 1]; equal numbers (even 0, inf) give 1."""
    if a == b:
        return 1.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return 0.0
    return max(0.0, 1.0 - abs(a - b) / max(abs(a), abs(b)))
