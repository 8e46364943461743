"""String scorers: exact match, case/whitespace-insensitive match, contains, regex."""

from __future__ import annotations

import re
from typing import Any

from evalhouse.evaluators.scorers._values import (
    InvalidScorerOptions,
    MissingExpected,
    as_text,
    canonical,
    normalise_text,
    require_expected,
)
from evalhouse.scoring import Score

__all__ = ["Contains", "ExactMatch", "NormalizedMatch", "Regex"]


class ExactMatch:
    """1 when the output equals ``expected``; values of other types compare as canonical JSON.

    >>> ExactMatch()(output={"a": 1, "b": 2}, expected={"b": 2, "a": 1}).value
    1.0
    """

    def __init__(self, *, name: str = "exact_match") -> None:
        self.name = name

    def __call__(self, output: Any, expected: Any = None) -> Score:
        expected = require_expected(self.name, expected)
        same = _same_type_equal(output, expected) or as_text(output) == as_text(expected)
        return Score(self.name, 1.0 if same else 0.0)


def _same_type_equal(output: Any, expected: Any) -> bool:
    # bool is an int in Python; True must not match 1.
    return type(output) is type(expected) and bool(output == expected)


class NormalizedMatch:
    """Exact match after Unicode normalisation, case folding and whitespace collapsing.

    >>> NormalizedMatch()(output="  Hello\\n World ", expected="hello world").value
    1.0
    """

    def __init__(
        self,
        *,
        name: str = "normalized_match",
        ignore_case: bool = True,
        ignore_whitespace: bool = True,
    ) -> None:
        self.name = name
        self.ignore_case = ignore_case
        self.ignore_whitespace = ignore_whitespace

    def __call__(self, output: Any, expected: Any = None) -> Score:
        expected = require_expected(self.name, expected)
        same = self._normal(output) == self._normal(expected)
        return Score(self.name, 1.0 if same else 0.0)

    def _normal(self, value: Any) -> str:
        return normalise_text(
            as_text(value), ignore_case=self.ignore_case, ignore_whitespace=self.ignore_whitespace
        )


class Contains:
    """Share of the needles found in the output: ``expected`` (a string or a list), or the
    ``value`` option. A list output contains a needle when one of its items equals it.

    >>> Contains()(output="The capital is Paris.", expected=["Paris", "France"]).value
    0.5
    """

    def __init__(
        self, *, name: str = "contains", value: Any = None, ignore_case: bool = False
    ) -> None:
        self.name = name
        self.needles = None if value is None else _needles(value)
        if self.needles == []:
            raise InvalidScorerOptions(name, "option 'value' is empty; give a string or a list")
        self.ignore_case = ignore_case

    def __call__(self, output: Any, expected: Any = None) -> Score:
        needles = self.needles
        if needles is None:
            hint = ", or configure the scorer with a 'value' option"
            needles = _needles(require_expected(self.name, expected, hint))
        if not needles:
            return Score(self.name, None, "nothing to look for: expected is an empty list")
        missing = [needle for needle in needles if not self._found(needle, output)]
        value = 1.0 - len(missing) / len(needles)
        explanation = None if not missing else "missing: " + ", ".join(map(repr, missing))
        return Score(self.name, value, explanation)

    def _found(self, needle: str, output: Any) -> bool:
        if isinstance(output, list | tuple):
            return any(self._fold(as_text(item)) == self._fold(needle) for item in output)
        return self._fold(needle) in self._fold(as_text(output))

    def _fold(self, text: str) -> str:
        return normalise_text(text, ignore_case=self.ignore_case, ignore_whitespace=False)


def _needles(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [as_text(item) for item in value]
    return [as_text(value)]


class Regex:
    """1 when the ``pattern`` option (or ``expected``, as a pattern) matches the output text.

    Options: ``full_match`` (the whole text must match), ``ignore_case``, ``multiline``.

    >>> Regex(pattern=r"\\d{4}-\\d{2}-\\d{2}")(output="due 2024-05-01", expected=None).value
    1.0
    """

    def __init__(
        self,
        *,
        name: str = "regex",
        pattern: str | None = None,
        full_match: bool = False,
        ignore_case: bool = False,
        multiline: bool = False,
    ) -> None:
        self.name = name
        self.flags = (re.IGNORECASE if ignore_case else 0) | (re.MULTILINE if multiline else 0)
        self.full_match = full_match
        self.pattern = None if pattern is None else self._compile(pattern, from_options=True)

    def _compile(self, pattern: Any, *, from_options: bool) -> re.Pattern[str]:
        if not isinstance(pattern, str):
            where = "option 'pattern'" if from_options else "expected"
            raise InvalidScorerOptions(
                self.name, f"{where} must be a regular expression string, got {canonical(pattern)}"
            )
        try:
            return re.compile(pattern, self.flags)
        except re.error as exc:
            raise InvalidScorerOptions(
                self.name, f"invalid regular expression {pattern!r}: {exc}; fix the pattern"
            ) from exc

    def __call__(self, output: Any, expected: Any = None) -> Score:
        pattern = self.pattern
        if pattern is None:
            if expected is None:
                raise MissingExpected(self.name, ", or configure the scorer with a 'pattern'")
            pattern = self._compile(expected, from_options=False)
        text = as_text(output)
        match = pattern.fullmatch(text) if self.full_match else pattern.search(text)
        explanation = None if match else f"no match for /{pattern.pattern}/"
        return Score(self.name, 1.0 if match else 0.0, explanation)
