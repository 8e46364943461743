"""What every explorer query shares: the window, kind, filter, ``where`` and text conditions,
and the page loop that reads a sorted table in bounded batches.

Each condition keeps the query on what the page shows: the window bounds ``start_time`` (the
sort key of ``trace_summaries``), the filter terms hit skip indexes (bloom filters on models,
tags, session, user; sets on status and service), and text search uses the text index of
``search_text`` for its whole words, then checks the exact text on the granules it found.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.explorer._filters import Filter, parse_filter
from evalhouse.explorer._params import Window
from evalhouse.explorer._rows import latest
from evalhouse.store import Store

__all__ = ["Conditions", "collect", "conditions"]

_MAX_WHERE = 4_000
_SLACK = 4
_WORD = re.compile(r"[0-9a-z]+")
WINDOW = (
    "start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC') "
    "AND start_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')"
)


@dataclass
class Conditions:
    """``WHERE`` text over ``trace_summaries`` and its parameters."""

    parts: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    filter: Filter = field(default_factory=Filter)
    narrowed: bool = False  # anything beyond the window and the kind

    @property
    def sql(self) -> str:
        return " AND ".join(self.parts) or "1"


def conditions(
    store: Store, window: Window, *, kind: str, filter: str = "", where: str = "", q: str = ""
) -> Conditions:
    """The conditions of a request; :class:`InvalidRequest` for a bad term or expression."""
    result = Conditions(parts=[WINDOW], params=window.sql_params())
    if kind != "all":
        result.parts.append("kind = {kind:String}")
        result.params["kind"] = kind
    parsed = parse_filter(filter)
    result.filter = parsed
    if parsed.terms:
        result.parts.append(parsed.sql)
        result.params.update(parsed.params)
    if where.strip():
        result.parts.append(f"({check_where(store, where)})")
    if q.strip():
        result.parts.append(_text_condition(q, result.params))
    result.narrowed = bool(parsed.terms or where.strip() or q.strip())
    return result


def check_where(store: Store, where: str) -> str:
    """The engine's normalised text of a ``where`` expression, checked like the results
    filters (one read-only expression, ClickHouse's own parser)."""
    text = where.strip()
    if len(text) > _MAX_WHERE:
        raise InvalidRequest(f"where is {len(text)} characters long (at most {_MAX_WHERE})")
    try:
        return store.check_expression(text)
    except QueryError as exc:
        raise InvalidRequest(
            f"invalid where expression: {exc}; give one ClickHouse boolean over the trace "
            "columns (docs/sql.md, traces), e.g. total_tokens > 1000 AND has(tags, 'beta')"
        ) from exc


def _text_condition(q: str, params: dict[str, Any]) -> str:
    """Case-insensitive ``q`` in the trace's input or output.

    The text index finds the granules holding every whole word of ``q`` (a word at either
    end of ``q`` may be part of a longer word, so only inner words, and end words that stop
    at a space or punctuation, are looked up); the exact text is then checked on those.
    """
    text = q.lower()
    words = _WORD.findall(text)
    if words and text[0].isalnum():
        words = words[1:]
    if words and text[-1].isalnum():
        words = words[:-1]
    params["q"] = q
    exact = "positionCaseInsensitiveUTF8(search_text, {q:String}) > 0"
    if not words:
        return exact
    params["q_words"] = sorted(set(words))
    return f"hasAllTokens(search_text, {{q_words:Array(String)}}) AND {exact}"


Fetch = Callable[[list[Any] | None, int], list[dict[str, Any]]]


def collect(
    fetch: Fetch, order: Sequence[str], key: Sequence[str], position: list[Any] | None, limit: int
) -> tuple[list[dict[str, Any]], list[Any] | None]:
    """A page of ``limit`` rows (latest versions only) from ``fetch(position, n)``, which
    returns the first ``n`` rows after ``position`` in ``order``; and the position after the
    page, or None at the end.

    A batch may cut the versions of its last key in two: that key is read again with the
    next batch, which starts after the last complete key (and is larger, when one key's
    versions filled the whole batch).
    """
    page: list[dict[str, Any]] = []
    # The first batch: the page, a row more (is there a next page?) and a few for older
    # versions of the same traces; each next batch twice the last. Each row asked for costs
    # a granule when the matches are sparse (a rare search term): asking 2 x limit + 16 read
    # 28 granules for a page of 5 at 20M spans, 103.6 ms against 33.0 ms at 2M where the
    # term has 6 matches; asking limit + 5, 60.3 ms (benchmarks/README.md).
    batch = limit + 1 + _SLACK
    while True:
        wanted = max(batch, limit + 1 - len(page))
        batch *= 2
        rows = fetch(position, wanted)
        complete = len(rows) < wanted
        if not complete:
            last = tuple(rows[-1][c] for c in order)
            cut = len(rows)
            while cut > 0 and tuple(rows[cut - 1][c] for c in order) == last:
                cut -= 1
            if not cut:  # one key's versions fill the batch: read them again, all of them
                continue
            rows = rows[:cut]
        page += latest(rows, key)
        if rows:
            position = [rows[-1][c] for c in order]
        if len(page) > limit or complete:
            break
    if len(page) > limit:
        return page[:limit], [page[limit - 1][c] for c in order]
    return page, None
