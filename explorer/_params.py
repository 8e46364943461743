"""The parameters of the explorer's calls, declared once: each request type reads itself from
the query string (``from_params``), for the HTTP routes and the CLI alike.

Times are ISO-8601 (UTC when no zone is given) or relative to now: ``15m``, ``1h``, ``7d``.

>>> parse_time("1h", now=datetime(2026, 1, 1, 12, tzinfo=UTC))
datetime.datetime(2026, 1, 1, 11, 0, tzinfo=datetime.timezone.utc)
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from evalhouse.errors import InvalidRequest

__all__ = [
    "KINDS",
    "SORTS",
    "SessionRequest",
    "SessionsRequest",
    "TracesRequest",
    "UsageRequest",
    "Window",
    "decode_cursor",
    "encode_cursor",
    "parse_duration",
    "parse_time",
]

KINDS = ("production", "experiment", "all")
SORTS = ("start_time", "duration_ms", "cost_usd", "total_tokens", "error_count")
GROUPS = ("model", "provider", "service", "user", "none")
MAX_LIMIT = 1000
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")


def parse_duration(text: str, name: str) -> timedelta:
    """``15m``, ``1h``, ``7d`` as a duration; :class:`InvalidRequest` naming ``name`` if not.

    >>> parse_duration("90s", "interval")
    datetime.timedelta(seconds=90)
    """
    match = _RELATIVE.fullmatch(text.strip().lower())
    if match is None:
        raise InvalidRequest(
            f"{name}={text!r} is not a duration: use a number and a unit, e.g. 15m, 1h, 7d"
        )
    return timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])


def parse_time(text: str, *, now: datetime, name: str = "since") -> datetime:
    """A time given as ISO-8601 or as a duration before ``now``."""
    text = text.strip()
    if _RELATIVE.fullmatch(text.lower()):
        return now - parse_duration(text, name)
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(
            f"{name}={text!r} is neither an ISO-8601 time (2026-01-31T12:00:00Z) nor a "
            "relative one (15m, 1h, 7d)"
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


@dataclass(frozen=True)
class Window:
    """The bounded time window every call reads: ``since <= start_time < until``."""

    since: datetime
    until: datetime

    @classmethod
    def from_params(cls, params: Mapping[str, str], default_since: str = "24h") -> Window:
        now = datetime.now(UTC)
        until = parse_time(params["until"], now=now, name="until") if params.get("until") else None
        since = parse_time(params.get("since") or default_since, now=now, name="since")
        until = until or now + timedelta(minutes=5)  # clocks of apps run a little ahead
        if since >= until:
            raise InvalidRequest(f"since ({since.isoformat()}) must be before until")
        return cls(since, until)

    def sql_params(self) -> dict[str, Any]:
        return {"since": _ns(self.since), "until": _ns(self.until)}


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000


def _choice(params: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = (params.get(name) or default).strip().lower()
    if value not in choices:
        raise InvalidRequest(f"{name}={value!r} is not one of {', '.join(choices)}")
    return value


def _limit(params: Mapping[str, str], default: int = 50) -> int:
    text = params.get("limit") or str(default)
    try:
        value = int(text)
    except ValueError:
        raise InvalidRequest(f"limit={text!r} is not a whole number") from None
    if not 1 <= value <= MAX_LIMIT:
        raise InvalidRequest(f"limit={value} is out of range: 1 to {MAX_LIMIT}")
    return value


def encode_cursor(kind: str, position: list[Any]) -> str:
    """An opaque cursor: where the next page starts, for one kind of listing."""
    text = json.dumps({"k": kind, "p": position}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, kind: str) -> list[Any] | None:
    """The position a cursor of :func:`encode_cursor` holds; a cursor of another listing (or
    sort) is refused."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if value["k"] == kind and isinstance(value["p"], list):
            return list(value["p"])
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidRequest(
        "cursor is not one this listing gave out (it belongs to another sort, order or page "
        "kind): start again without it and follow next_cursor"
    )


@dataclass(frozen=True)
class TracesRequest:
    """``GET /api/traces``: which traces, in which order, which page."""

    window: Window
    filter: str = ""
    where: str = ""
    q: str = ""
    kind: str = "production"
    sort: str = "start_time"
    order: str = "desc"
    limit: int = 50
    cursor: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> TracesRequest:
        return cls(
            window=Window.from_params(params),
            filter=params.get("filter", ""),
            where=params.get("where", ""),
            q=params.get("q", ""),
            kind=_choice(params, "kind", KINDS, "production"),
            sort=_choice(params, "sort", SORTS, "start_time"),
            order=_choice(params, "order", ("asc", "desc"), "desc"),
            limit=_limit(params),
            cursor=params.get("cursor") or None,
        )


@dataclass(frozen=True)
class SessionsRequest:
    """``GET /api/sessions``: sessions with a trace in the window, latest activity first."""

    window: Window
    filter: str = ""
    where: str = ""
    kind: str = "production"
    limit: int = 50
    cursor: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> SessionsRequest:
        return cls(
            window=Window.from_params(params),
            filter=params.get("filter", ""),
            where=params.get("where", ""),
            kind=_choice(params, "kind", KINDS, "production"),
            limit=_limit(params),
            cursor=params.get("cursor") or None,
        )


@dataclass(frozen=True)
class SessionRequest:
    """``GET /api/sessions/{id}``: one session and a page of its traces, oldest first."""

    session_id: str
    window: Window
    limit: int = 100
    cursor: str | None = None

    @classmethod
    def from_params(cls, session_id: str, params: Mapping[str, str]) -> SessionRequest:
        if not session_id.strip():
            raise InvalidRequest("the session id is empty")
        return cls(
            session_id=session_id,
            # A session opened from a link may be older than a day: a month back by default.
            window=Window.from_params(params, default_since="30d"),
            limit=_limit(params, 100),
            cursor=params.get("cursor") or None,
        )


_INTERVALS = ("1m", "5m", "15m", "30m", "1h", "3h", "6h", "12h", "1d")


@dataclass(frozen=True)
class UsageRequest:
    """``GET /api/usage``: buckets of ``interval_s`` seconds, one row per bucket and group."""

    window: Window
    interval_s: int
    group_by: str = "none"
    filter: str = ""
    where: str = ""
    kind: str = "production"
    top: int = 20  # with group_by=user: the users with the most tokens in the window

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> UsageRequest:
        window = Window.from_params(params)
        text = params.get("interval")
        if text:
            interval = int(parse_duration(text, "interval").total_seconds())
            if interval < 60 or interval > 86_400:
                raise InvalidRequest(f"interval={text!r} is out of range: 1m to 1d")
        else:
            interval = _default_interval(window)
        return cls(
            window=window,
            interval_s=interval,
            group_by=_choice(params, "group_by", GROUPS, "none"),
            filter=params.get("filter", ""),
            where=params.get("where", ""),
            kind=_choice(params, "kind", KINDS, "production"),
            top=_limit({"limit": params.get("top", "")}, 20),
        )


def _default_interval(window: Window) -> int:
    """About 24 to 150 buckets across the window."""
    span = (window.until - window.since).total_seconds()
    for text in _INTERVALS:
        seconds = int(parse_duration(text, "interval").total_seconds())
        if span / seconds <= 150:
            return seconds
    return 86_400
