"""The filter language of the explorer (``filter=``), compiled to parameterised SQL.

Space-separated terms, all of which must hold; ``-term`` negates; values may be quoted
(``name:"support agent"``). Terms: ``service:`` ``model:`` ``provider:`` ``session:``
``user:`` ``tag:`` ``name:`` (root span) ``status:error|ok`` ``latency:>2s`` (``<``, ``>=``,
``<=``, ``=``; ``ms``, ``s``, ``m``, ``h``) ``cost:>0.01`` ``tokens:>1000`` ``score.NAME:<0.5``
``attr.KEY:VALUE`` (any span's attribute, read from ``otel_traces`` within the time window,
through its bloom filter on attribute values).
A term that is not one of these is refused, naming it.

Values never enter the SQL text: each becomes a ``{fN:Type}`` parameter.

>>> parse_filter("model:gpt-4o -status:error").sql
"(has(models, {f0:String})) AND NOT (status = {f1:String})"
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evalhouse.errors import InvalidRequest

__all__ = ["ROLLUP_TERMS", "Filter", "Term", "parse_filter"]

# Terms the usage rollup can answer itself (its rows are per service and per model).
ROLLUP_TERMS = frozenset({"service", "model", "provider"})

_EQUAL = {
    "service": "service_name = {p:String}",
    "model": "has(models, {p:String})",
    "provider": "has(providers, {p:String})",
    "session": "session_id = {p:String}",
    "user": "user_id = {p:String}",
    "tag": "has(tags, {p:String})",
    "name": "root_name = {p:String}",
}
_COMPARE = re.compile(r"(>=|<=|>|<|=)?\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*([a-z]*)")
_LATENCY_UNITS = {"": 1.0, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
_KEY = re.compile(r"[A-Za-z0-9_.\-/:@]+")
_EXAMPLE = "e.g. model:gpt-4o -status:error latency:>2s"


@dataclass(frozen=True)
class Term:
    """One parsed term: its key (``model``, ``score``...), the SQL and its parameters."""

    text: str
    key: str
    negated: bool
    sql: str
    value: str


@dataclass
class Filter:
    """All terms (AND), as SQL over ``trace_summaries`` columns and its parameters.

    ``sql`` is ``1`` when there are no terms.
    """

    terms: list[Term] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def sql(self) -> str:
        if not self.terms:
            return "1"
        return " AND ".join(("NOT " if t.negated else "") + f"({t.sql})" for t in self.terms)

    def keys(self) -> set[str]:
        return {term.key for term in self.terms}


def parse_filter(text: str, *, prefix: str = "f") -> Filter:
    """Parse ``text``; :class:`InvalidRequest` naming the first bad term.

    >>> parse_filter('latency:>2s').params
    {'f0': 2000.0}
    """
    try:
        words = shlex.split(text or "")
    except ValueError as exc:
        raise InvalidRequest(f"filter {text!r} cannot be read: {exc} ({_EXAMPLE})") from None
    result = Filter()
    for word in words:
        name = f"{prefix}{len(result.params)}"
        result.terms.append(_term(word, name, result.params))
    return result


def _bad(word: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"bad filter term {word!r}: {why} ({_EXAMPLE})")


def _term(word: str, name: str, params: dict[str, Any]) -> Term:
    negated = word.startswith("-")
    body = word[1:] if negated else word
    key, sep, value = body.partition(":")
    if not sep or not key:
        raise _bad(word, "a term is KEY:VALUE")
    if not value:
        raise _bad(word, "the value is empty")
    key_lower = key.lower()
    if key_lower in _EQUAL:
        sql = _EQUAL[key_lower]
        params[name] = value
        return Term(word, key_lower, negated, sql.replace("{p:", f"{{{name}:"), value)
    if key_lower == "status":
        if value.lower() not in ("error", "ok"):
            raise _bad(word, "status is error or ok")
        params[name] = value.lower()
        return Term(word, "status", negated, f"status = {{{name}:String}}", value)
    numeric: dict[str, tuple[str, Callable[[str, str], float]]] = {
        "latency": ("duration_ms", _milliseconds),
        "cost": ("ifNull(cost_usd, nan)", _plain),
        "tokens": ("total_tokens", _plain),
    }
    if key_lower in numeric:
        column, convert = numeric[key_lower]
        op, number = _comparison(word, value, convert)
        params[name] = number
        return Term(word, key_lower, negated, f"{column} {op} {{{name}:Float64}}", value)
    if key_lower.startswith("score.") and len(key) > len("score."):
        op, number = _comparison(word, value, _plain)
        params[name] = key[len("score.") :]
        params[f"{name}v"] = number
        sql = (
            "trace_id IN (SELECT trace_id FROM scores "
            f"WHERE name = {{{name}:String}} AND error = '' GROUP BY trace_id "
            f"HAVING argMax(value, created_at) {op} {{{name}v:Float64}})"
        )
        return Term(word, "score", negated, sql, value)
    if key_lower.startswith("attr.") and len(key) > len("attr."):
        attribute = key[len("attr.") :]
        if not _KEY.fullmatch(attribute):
            raise _bad(word, "an attribute key is letters, digits and . _ - / : @")
        params[name] = attribute
        params[f"{name}v"] = value
        sql = (
            "trace_id IN (SELECT TraceId FROM otel_traces "
            "WHERE Timestamp >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') - INTERVAL 1 HOUR "
            "AND Timestamp < fromUnixTimestamp64Nano({until:Int64}, 'UTC') "
            # The value condition lets the bloom filter on the map's values skip granules.
            f"AND has(mapValues(SpanAttributes), {{{name}v:String}}) "
            f"AND SpanAttributes[{{{name}:String}}] = {{{name}v:String}})"
        )
        return Term(word, "attr", negated, sql, value)
    known = ", ".join([*_EQUAL, "status", "latency", "cost", "tokens", "score.NAME", "attr.KEY"])
    raise _bad(word, f"unknown key {key!r}; keys are {known}")


def _comparison(word: str, value: str, convert: Callable[[str, str], float]) -> tuple[str, float]:
    match = _COMPARE.fullmatch(value.strip().lower())
    if match is None:
        raise _bad(word, "expected a comparison such as >2s, <0.5 or >=1000")
    op = match.group(1) or "="
    try:
        number = convert(match.group(2), match.group(3))
    except ValueError as exc:
        raise _bad(word, str(exc)) from None
    return op, number


def _milliseconds(number: str, unit: str) -> float:
    if unit not in _LATENCY_UNITS:
        raise ValueError(f"unit {unit!r}: use ms, s, m or h")
    return float(number) * _LATENCY_UNITS[unit]


def _plain(number: str, unit: str) -> float:
    if unit:
        raise ValueError(f"unexpected unit {unit!r}")
    return float(number)
