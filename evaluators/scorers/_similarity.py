"""Graded similarity scorers: Levenshtein, numeric closeness, list/set overlap."""

from __future__ import annotations

import math
import re
from typing import Any

from rapidfuzz.distance import Levenshtein as _Levenshtein

from evalhouse.evaluators.scorers._values import (
    NOT_JSON,
    InvalidScorerOptions,
    as_number,
    as_text,
    canonical,
    closeness,
    normalise_text,
    parse_json,
    require_expected,
)
from evalhouse.scoring import Score

__all__ = ["Levenshtein", "ListOverlap", "NumericCloseness"]


class Levenshtein:
    """Normalised Levenshtein similarity (1 - distance / longer length) of the two texts.

    >>> Levenshtein()(output="kitten", expected="sitten").value
    0.8333333333333334
    """

    def __init__(self, *, name: str = "levenshtein", ignore_case: bool = False) -> None:
        self.name = name
        self.ignore_case = ignore_case

    def __call__(self, output: Any, expected: Any = None) -> Score:
        expected = require_expected(self.name, expected)
        a, b = as_text(output), as_text(expected)
        if self.ignore_case:
            a, b = a.casefold(), b.casefold()
        return Score(self.name, float(_Levenshtein.normalized_similarity(a, b)))


class NumericCloseness:
    """How close the output number is to ``expected``.

    With ``rel_tol`` and/or ``abs_tol`` the score is 1 within tolerance and 0 outside (as
    :func:`math.isclose`); without them it is graded: 1 - |a - b| / max(|a|, |b|).
    Numeric strings (``"1,234.5"``) count as numbers; anything else scores 0.

    >>> NumericCloseness(abs_tol=0.5)(output="3.2", expected=3).value
    1.0
    """

    def __init__(
        self,
        *,
        name: str = "numeric_closeness",
        rel_tol: float | None = None,
        abs_tol: float | None = None,
    ) -> None:
        for option, value in (("rel_tol", rel_tol), ("abs_tol", abs_tol)):
            if value is not None and (as_number(value) is None or float(value) < 0):
                raise InvalidScorerOptions(
                    name, f"option {option} must be a number >= 0, got {value!r}"
                )
        self.name = name
        self.rel_tol = rel_tol
        self.abs_tol = abs_tol

    def __call__(self, output: Any, expected: Any = None) -> Score:
        target = as_number(require_expected(self.name, expected))
        if target is None:
            raise InvalidScorerOptions(
                self.name, f"expected must be a number, got {canonical(expected)[:100]}"
            )
        number = as_number(output)
        if number is None:
            return Score(self.name, 0.0, f"output {canonical(output)[:100]} is not a number")
        if self.rel_tol is None and self.abs_tol is None:
            return Score(self.name, closeness(number, target))
        close = math.isclose(
            number, target, rel_tol=float(self.rel_tol or 0.0), abs_tol=float(self.abs_tol or 0.0)
        )
        explanation = None if close else f"{number:g} is off by {abs(number - target):g}"
        return Score(self.name, 1.0 if close else 0.0, explanation)


_MODES = ("jaccard", "recall", "precision", "f1")
_SEPARATORS = re.compile(r"[\n,;]")


class ListOverlap:
    """Overlap of the output's items with ``expected``'s, compared as sets.

    ``mode``: ``jaccard`` (default, |A∩B| / |A∪B|), ``recall`` (share of expected items
    found), ``precision`` (share of output items expected) or ``f1``. Lists, JSON arrays in
    text, or text separated by commas, semicolons or newlines are all read as lists.

    >>> ListOverlap(mode="recall")(output=["a", "b"], expected=["a", "b", "c", "d"]).value
    0.5
    """

    def __init__(
        self, *, name: str = "list_overlap", mode: str = "jaccard", ignore_case: bool = False
    ) -> None:
        if mode not in _MODES:
            raise InvalidScorerOptions(name, f"mode must be one of {', '.join(_MODES)}: {mode!r}")
        self.name = name
        self.mode = mode
        self.ignore_case = ignore_case

    def __call__(self, output: Any, expected: Any = None) -> Score:
        wanted = self._items(require_expected(self.name, expected))
        got = self._items(output)
        common = got & wanted
        if not got and not wanted:
            value = 1.0
        elif self.mode == "jaccard":
            value = len(common) / len(got | wanted)
        else:
            recall = len(common) / len(wanted) if wanted else 1.0
            precision = len(common) / len(got) if got else 0.0
            if self.mode == "recall":
                value = recall
            elif self.mode == "precision":
                value = precision
            else:
                total = recall + precision
                value = 0.0 if total == 0 else 2 * recall * precision / total
        notes = []
        if wanted - got:
            notes.append("missing: " + ", ".join(sorted(wanted - got)[:10]))
        if got - wanted:
            notes.append("unexpected: " + ", ".join(sorted(got - wanted)[:10]))
        return Score(self.name, value, "; ".join(notes) or None)

    def _items(self, value: Any) -> set[str]:
        if value is None:
            return set()
        decoded = parse_json(value)
        if isinstance(decoded, list | tuple | set | frozenset):
            items = [as_text(item) for item in decoded]
        elif decoded is NOT_JSON or isinstance(decoded, str):
            items = _SEPARATORS.split(value if decoded is NOT_JSON else decoded)
        else:
            items = [as_text(decoded)]
        folded = (
            normalise_text(item, ignore_case=self.ignore_case, ignore_whitespace=True)
            for item in items
        )
        return {item for item in folded if item}
