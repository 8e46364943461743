"""Feedback from an app: a user's thumbs-up on the answer a trace produced.

``current_trace_id()`` gives the trace of the span running now, so the app keeps it with the
answer it returns; ``feedback(...)`` later sends the user's verdict to ``POST /api/feedback``
with the API URL and key in force (``EVALHOUSE_API_URL``, ``EVALHOUSE_API_KEY``). Like the rest
of the SDK it never raises into the app: a refused or unreachable API is logged once and the
call returns False.

>>> import evalhouse
>>> trace_id = evalhouse.current_trace_id()                     # doctest: +SKIP
>>> evalhouse.feedback("thumbs", value=1, trace_id=trace_id, comment="spot on")  # doctest: +SKIP
True
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace

from evalhouse.api_client import ApiError
from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._settings import api_client, warn_once

__all__ = ["current_trace_id", "feedback"]

_TIMEOUT_SECONDS = 10.0


def current_trace_id() -> str | None:
    """The hex id of the trace whose span is current here, or None outside any span.

    >>> current_trace_id() is None
    True
    """
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x")


def feedback(
    name: str,
    value: float | bool | None = None,
    *,
    label: str | None = None,
    trace_id: str | None = None,
    span_id: str | None = None,
    session_id: str | None = None,
    comment: str | None = None,
    author: str | None = None,
    metadata: dict[str, Any] | None = None,
    api_url: str | None = None,
    api_key: str | None = None,
) -> bool:
    """Attach a score to a trace (or one of its spans, or a session); True once stored.

    ``trace_id`` defaults to the current trace (:func:`current_trace_id`); ``value`` is a
    number (``True``/``False`` count as 1 and 0), ``label`` a category (give either or
    both). The score is stored with ``source = 'api'`` when an API key is sent, ``'human'``
    otherwise, and one author's later feedback on the same target and name replaces it.
    """
    target = trace_id or (current_trace_id() if not session_id else None)
    if not target and not session_id:
        warn_once(
            "feedback:no-target",
            "evalhouse.feedback(%r) has no trace to attach to: pass trace_id= (keep "
            "evalhouse.current_trace_id() with the answer), or call it inside the traced "
            "request",
            name,
        )
        return False
    body: dict[str, Any] = {"name": name}
    number = float(value) if value is not None else None
    for key, item in (
        ("trace_id", target),
        ("span_id", span_id),
        ("session_id", session_id),
        ("value", number),
        ("label", label),
        ("comment", comment),
        ("author", author),
        ("metadata", metadata),
    ):
        if item is not None:
            body[key] = item
    try:
        client = api_client(api_url, api_key, timeout=_TIMEOUT_SECONDS)
        client.post("/api/feedback", body, retries=2)
    except ApiError as exc:
        warn_once(f"feedback:{exc.status}", "evalhouse.feedback(%r) was refused: %s", name, exc)
        return False
    except EvalhouseError as exc:
        warn_once("feedback:unreachable", "evalhouse.feedback(%r) not sent: %s", name, exc)
        return False
    return True
