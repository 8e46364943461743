"""The production explorer: pages of traces, sessions and usage, each reading what it shows
plus a bounded time window (``benchmarks/explorer.py``).

It reads what the evaluator daemon's summarizer writes once a trace is quiet
(``trace_summaries``, ``trace_rank``, ``usage_rollup``: ``evalhouse/store/_explorer_schema.py``)
and, for one trace, the spans themselves through :func:`evalhouse.evaluators.read_trace`. The
HTTP API (``/api/traces``, ``/api/sessions``, ``/api/usage``) and ``evalhouse traces|sessions|
usage`` are thin layers over these functions; each takes one request type that reads itself
from the query string.

>>> from evalhouse.explorer import TracesRequest, list_traces
>>> list_traces(store, TracesRequest.from_params({"since": "1h", "filter": "status:error"}))
... # doctest: +SKIP
{'traces': [...], 'next_cursor': None}
"""

from __future__ import annotations

from evalhouse.explorer._filters import Filter, parse_filter
from evalhouse.explorer._params import (
    SessionRequest,
    SessionsRequest,
    TracesRequest,
    UsageRequest,
    Window,
)
from evalhouse.explorer._sessions import list_sessions, session_detail
from evalhouse.explorer._traces import list_traces, trace_detail
from evalhouse.explorer._usage import usage

__all__ = [
    "Filter",
    "SessionRequest",
    "SessionsRequest",
    "TracesRequest",
    "UsageRequest",
    "Window",
    "list_sessions",
    "list_traces",
    "parse_filter",
    "session_detail",
    "trace_detail",
    "usage",
]
