"""Feedback: a person's or a program's score of a trace, a span or a session
(``POST /api/feedback``, the SDK's ``evalhouse.feedback``), stored in ``scores``.

A feedback is a score with ``source = 'human'`` (no API key: the UI, a person) or ``'api'``
(a program that sent an API key), its ``author`` and the ``comment`` as its explanation. One
author's feedback on a target and name replaces their earlier one (the ``scores`` key), so a
user who changes a thumbs-down into a thumbs-up leaves one score. The trace need not be
stored yet: an app sends feedback right after its answer, before its spans are exported.

>>> fb = Feedback.from_json({"trace_id": "AB" * 16, "name": "thumbs", "value": 1})
>>> fb.trace_id, fb.value
('abababababababababababababababab', 1.0)
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import normalise_trace_id
from evalhouse.online._body import Fields
from evalhouse.store import SCORE_COLUMNS, ScoreRecord, Store

__all__ = ["Feedback", "list_scores", "record_feedback", "store_scores"]

FEEDBACK_USAGE = (
    '{"trace_id": "<hex>", "span_id": "<hex>" (optional), "session_id": "..." (optional), '
    '"name": "helpful", "value": 1 or "label": "good", "comment": "..." (optional), '
    '"author": "..." (optional)}'
)
_SPAN_ID = re.compile(r"[0-9a-fA-F]{16}")
_NAME_CHARS = 200


@dataclass(frozen=True)
class Feedback:
    """One feedback, checked: a target, a name, a value or a label."""

    name: str
    trace_id: str = ""
    span_id: str = ""
    session_id: str = ""
    value: float | None = None
    label: str = ""
    comment: str = ""
    author: str = ""
    metadata: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Feedback:
        """The feedback a request body holds; :class:`InvalidRequest` naming what is wrong."""
        fields = Fields(payload, "feedback")
        fields.only(
            "trace_id",
            "span_id",
            "session_id",
            "name",
            "value",
            "label",
            "comment",
            "author",
            "metadata",
        )
        trace_text = fields.text("trace_id", limit=64).strip()
        trace_id = normalise_trace_id(trace_text) if trace_text else ""
        if trace_id is None:
            raise InvalidRequest(f"feedback: trace_id {trace_text!r} is not a hex trace id")
        span_id = fields.text("span_id", limit=16).strip().lower()
        if span_id and not _SPAN_ID.fullmatch(span_id):
            raise InvalidRequest(f"feedback: span_id {span_id!r} is not a 16-digit hex span id")
        if span_id and not trace_id:
            raise InvalidRequest("feedback: a span_id needs the trace_id of its trace")
        session_id = fields.text("session_id", limit=_NAME_CHARS).strip()
        if not trace_id and not session_id:
            raise InvalidRequest(
                f"feedback names no target: send a trace_id or a session_id; {FEEDBACK_USAGE}"
            )
        value = fields.number("value")
        label = fields.text("label", limit=_NAME_CHARS)
        if value is None and not label:
            raise InvalidRequest(f"feedback needs a value or a label; {FEEDBACK_USAGE}")
        return cls(
            name=fields.text("name", required=True, limit=_NAME_CHARS),
            trace_id=trace_id,
            span_id=span_id,
            session_id=session_id,
            value=value,
            label=label,
            comment=fields.text("comment"),
            author=fields.text("author", limit=_NAME_CHARS),
            metadata=fields.mapping("metadata") or None,
        )

    def record(self, source: str, created_ms: int) -> ScoreRecord:
        return ScoreRecord(
            name=self.name,
            source=source,
            created_at=created_ms,
            value=self.value,
            label=self.label,
            explanation=self.comment,
            trace_id=self.trace_id,
            target_span_id=self.span_id,
            session_id=self.session_id,
            author=self.author,
            metadata=json.dumps(dict(self.metadata), sort_keys=True) if self.metadata else "",
        )


def store_scores(store: Store, records: list[ScoreRecord]) -> None:
    """Insert ``scores`` rows (any source)."""
    if records:
        store.insert_rows("scores", [r.values() for r in records], SCORE_COLUMNS)


def record_feedback(store: Store, feedback: Feedback, *, source: str) -> dict[str, Any]:
    """Store ``feedback`` as a score from ``source`` (``human`` or ``api``); the stored score.

    >>> record_feedback(store, Feedback(name="thumbs", trace_id="ab" * 16, value=1.0),
    ...                 source="api")["source"]                     # doctest: +SKIP
    'api'
    """
    if source not in ("human", "api"):
        raise InvalidRequest(f"feedback source {source!r}: it is human or api")
    now_ms = time.time_ns() // 1_000_000
    record = feedback.record(source, now_ms)
    store_scores(store, [record])
    return _score_json(record)


def _score_json(record: ScoreRecord) -> dict[str, Any]:
    return {
        "trace_id": record.trace_id,
        "span_id": record.target_span_id,
        "session_id": record.session_id,
        "name": record.name,
        "value": record.value,
        "label": record.label,
        "comment": record.explanation,
        "author": record.author,
        "source": record.source,
        "created_at": _iso_ms(record.created_at),
    }


def _iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


_SCORES_OF = """
SELECT trace_id, target_span_id, session_id, name,
       argMax(value, created_at) AS value, argMax(label, created_at) AS label,
       argMax(error, created_at) AS error, argMax(explanation, created_at) AS explanation,
       source, scorer, rule, rule_version, author, experiment_id,
       max(created_at) AS at,
       argMax(judge_cost_usd, created_at) AS judge_cost_usd
FROM scores
WHERE {where}
GROUP BY trace_id, target_span_id, session_id, name, source, scorer, rule, rule_version,
         author, experiment_id
ORDER BY at, name
LIMIT 10000"""


def list_scores(store: Store, *, trace_id: str = "", session_id: str = "") -> dict[str, Any]:
    """Every score of a trace (its spans' included) or of a session, each naming its target
    and source: what the trace page's badges and a score history show.

    >>> list_scores(store, trace_id="ab" * 16)["scores"][0]["source"]   # doctest: +SKIP
    'human'
    """
    if trace_id:
        normal = normalise_trace_id(trace_id)
        if normal is None:
            raise InvalidRequest(f"trace_id {trace_id!r} is not a hex trace id")
        where, params = "trace_id = {t:String}", {"t": normal}
    elif session_id:
        where, params = "session_id = {s:String}", {"s": session_id}
    else:
        raise InvalidRequest("name a trace_id or a session_id whose scores to list")
    rows = store.query_dicts(_SCORES_OF.format(where=where), params)
    scores = []
    for row in rows:
        row["span_id"] = row.pop("target_span_id")
        row["created_at"] = row.pop("at").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        scores.append(row)
    return {"scores": scores}
