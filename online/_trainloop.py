"""A rule as a TrainLoop suite (``evalhouse rules export NAME --format trainloop``).

TrainLoop collects real calls by tag and runs suites of metrics over them; a rule selected by
a tag (``filter = "tag:support"``) is that suite. The file has the layout the experiment
export writes (:func:`evalhouse.evaluators.results.trainloop_document`): the rule is the
suite, each score name a metric, each target an event (``event_id`` = the span id for a span
rule, the trace id for a trace rule, the session id for a session rule) with the input and
output the scorer saw and its verdict.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from evalhouse.errors import InvalidRequest, NotFound
from evalhouse.evaluators import read_rules
from evalhouse.evaluators.results import trainloop_document
from evalhouse.explorer import Window
from evalhouse.store import RULE_TARGETS, Store

__all__ = ["trainloop_suite"]

_PASS_THRESHOLD = 0.5
_SCORES = """
SELECT trace_id, target_span_id, session_id, name,
    argMax(value, created_at) AS value, argMax(error, created_at) AS error,
    argMax(explanation, created_at) AS explanation, max(created_at) AS at,
    argMax(rule_version, created_at) AS version
FROM scores FINAL
WHERE source = 'rule' AND rule = {rule:String}
  AND created_at >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')
  AND created_at < fromUnixTimestamp64Nano({until:Int64}, 'UTC')
GROUP BY trace_id, target_span_id, session_id, name
ORDER BY at, trace_id, target_span_id, session_id, name"""
_PREVIEWS = f"""
SELECT trace_id, span_id, session_id, argMax(input_preview, updated_ns) AS input,
    argMax(output_preview, updated_ns) AS output
FROM {RULE_TARGETS}
WHERE rule = {{rule:String}} AND trace_id IN {{ids:Array(String)}}
  AND session_id IN {{sessions:Array(String)}}
GROUP BY trace_id, span_id, session_id"""


def trainloop_suite(store: Store, name: str, params: Mapping[str, str]) -> dict[str, Any]:
    """The rule's scores in the window (``since``, default 7d) as a TrainLoop results file;
    ``pass_threshold`` (default 0.5) decides ``passed``.

    >>> trainloop_suite(store, "support-quality", {"since": "1d"})["summary"]["pass_rate"]
    ... # doctest: +SKIP
    0.8
    """
    found = read_rules(store, name)
    if not found:
        raise NotFound(f"no rule named {name!r}; list them with 'evalhouse rules list'")
    rule = found[0]
    window = Window.from_params(params, default_since="7d")
    threshold = _threshold(params.get("pass_threshold"))
    since = int(window.since.timestamp() * 1e9)
    until = int(window.until.timestamp() * 1e9)
    scores = store.query_dicts(_SCORES, {"rule": name, "since": since, "until": until})
    events: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in scores:
        key = (row["trace_id"], row["target_span_id"], row["session_id"])
        event = events.setdefault(
            key,
            {
                "trace_id": row["target_span_id"] or row["trace_id"] or row["session_id"],
                "row_id": row["target_span_id"] or row["trace_id"] or row["session_id"],
                "input": "null",
                "output": "null",
                "metadata": json.dumps(
                    {
                        "rule": name,
                        "rule_version": row["version"],
                        "trace_id": row["trace_id"],
                        "span_id": row["target_span_id"],
                        "session_id": row["session_id"],
                    }
                ),
                "scores": {},
                "score_errors": {},
                "explanations": {},
                "_at": row["at"],
            },
        )
        if row["error"]:
            event["score_errors"][row["name"]] = row["error"]
        elif row["value"] is not None:
            event["scores"][row["name"]] = float(row["value"])
            event["explanations"][row["name"]] = row["explanation"]
    if events:
        previews = store.query(
            _PREVIEWS,
            {
                "rule": name,
                "ids": sorted({k[0] for k in events}),
                "sessions": sorted({k[2] for k in events}),
            },
        )
        for trace_id, span_id, session_id, text_in, text_out in previews:
            target = events.get((trace_id, span_id, session_id))
            if target is not None:
                target["input"] = json.dumps(_value(text_in))
                target["output"] = json.dumps(_value(text_out))
    rows = list(events.values())
    times = [row.pop("_at") for row in rows]
    duration = (max(times) - min(times)).total_seconds() if times else 0.0
    return trainloop_document(
        name,
        rows,
        timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        duration=duration,
        tags=[part for part in rule.filter.split() if part.startswith("tag:")],
        configuration={
            "rule": name,
            "version": rule.version,
            "scope": rule.scope,
            "filter": rule.filter,
            "sample": rule.sample,
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            "pass_threshold": threshold,
        },
        pass_threshold=threshold,
    )


def _value(text: str) -> Any:
    """A preview as it was given to the scorer: JSON when it is JSON, else text."""
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _threshold(text: str | None) -> float:
    if text is None or text == "":
        return _PASS_THRESHOLD
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"pass_threshold={text!r} is not a number") from None
    if not 0 <= value <= 1:
        raise InvalidRequest(f"pass_threshold={value} must be between 0 and 1")
    return value
