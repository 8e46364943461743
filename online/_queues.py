"""Review queues: production traces put in front of people, one at a time, to score by hand.

A queue is filled once, when it is made, with the traces its ``filter`` / ``where`` choose in
``since`` .. ``until`` (newest first, at most ``limit``), keeping a deterministic ``sample``.
Its ``score_configs`` say what a reviewer gives each trace: a ``numeric`` score (``min`` ..
``max``), one of ``categories`` (``categorical``), or yes / no (``boolean``).

``next`` claims an item for a reviewer for ``lock_seconds``: a claim is a one-row insert
deduplicated by its token (queue, trace, claim number), so of two reviewers asking at once one
wins and the other gets the next item; a reviewer asking again gets back the item they hold. A
claim that ran out frees the item for anyone. The reviewer's answer is stored as scores
(``source = 'human'``, ``author`` the reviewer, the comment as explanation) and the item is
done; a skipped item is set aside for everyone.

>>> queues = Queues(store)                                            # doctest: +SKIP
>>> queues.create({"name": "support-week-3", "filter": "tag:support", "since": "7d",
...                "score_configs": [{"name": "helpful", "type": "boolean"}]})["items"]
... # doctest: +SKIP
40
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from evalhouse.errors import Conflict, InvalidRequest, NotFound
from evalhouse.evaluators import normalise_trace_id
from evalhouse.explorer import Window
from evalhouse.online._body import Fields
from evalhouse.online._feedback import store_scores
from evalhouse.online._from_traces import MAX_TRACES, select_traces
from evalhouse.store import REVIEW_CLAIMS, REVIEW_ITEMS, REVIEW_QUEUES, ScoreRecord, Store

__all__ = ["QUEUE_USAGE", "REVIEW_USAGE", "Queues", "ScoreConfig"]

QUEUE_USAGE = (
    '{"name": "support-week-3", "filter": "tag:support", "since": "7d", "sample": 0.2, '
    '"score_configs": [{"name": "helpful", "type": "boolean"}, {"name": "tone", "type": '
    '"categorical", "categories": ["rude", "neutral", "kind"]}, {"name": "accuracy", "type": '
    '"numeric", "min": 0, "max": 5}]}'
)
REVIEW_USAGE = '{"reviewer": "ana", "scores": {"helpful": true, "tone": "kind"}, "comment": "..."}'
_TYPES = ("numeric", "categorical", "boolean")
_NAME_CHARS = 100


@dataclass(frozen=True)
class ScoreConfig:
    """One score a reviewer gives each item."""

    name: str
    type: str
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, value: Any, where: str) -> ScoreConfig:
        if not isinstance(value, dict):
            raise InvalidRequest(f'{where} must be an object like {{"name", "type"}}')
        fields = Fields(value, where)
        fields.only("name", "type", "min", "max", "categories")
        kind = fields.text("type", required=True)
        if kind not in _TYPES:
            raise InvalidRequest(f"{where}: type {kind!r} is not one of {', '.join(_TYPES)}")
        low, high = fields.number("min"), fields.number("max")
        categories = tuple(fields.strings("categories"))
        if kind == "numeric":
            low, high = (0.0 if low is None else low), (1.0 if high is None else high)
            if low >= high:
                raise InvalidRequest(f"{where}: min {low:g} must be below max {high:g}")
        if kind == "categorical" and len(categories) < 2:
            raise InvalidRequest(f"{where}: a categorical score needs at least two categories")
        return cls(
            fields.text("name", required=True, limit=_NAME_CHARS), kind, low, high, categories
        )

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.type == "numeric":
            out.update(min=self.min, max=self.max)
        if self.type == "categorical":
            out["categories"] = list(self.categories)
        return out

    def score(self, answer: Any) -> tuple[float | None, str]:
        """(value, label) of a reviewer's answer; :class:`InvalidRequest` if it does not fit."""
        if self.type == "boolean":
            if not isinstance(answer, bool):
                raise InvalidRequest(f"score {self.name!r} is yes or no: send true or false")
            return float(answer), "yes" if answer else "no"
        if self.type == "categorical":
            if answer not in self.categories:
                raise InvalidRequest(
                    f"score {self.name!r} is one of {', '.join(self.categories)}; "
                    f"got {json.dumps(answer)}"
                )
            return None, str(answer)
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            raise InvalidRequest(
                f"score {self.name!r} is a number from {self.min:g} to {self.max:g}"
            )
        assert self.min is not None and self.max is not None
        if not self.min <= answer <= self.max:
            raise InvalidRequest(
                f"score {self.name!r} = {answer} is outside {self.min:g} .. {self.max:g}"
            )
        return float(answer), ""


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(value: datetime | int) -> str:
    at = value if isinstance(value, datetime) else datetime.fromtimestamp(value / 1000, UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class Queues:
    """The review queues of one store; answers are the API's JSON bodies."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- queues -------------------------------------------------------------------------------

    def create(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Make a queue and fill it with the traces its filter chooses."""
        fields = Fields(payload, "queue")
        fields.only(
            "name",
            "filter",
            "where",
            "since",
            "until",
            "sample",
            "limit",
            "score_configs",
            "description",
            "lock_seconds",
        )
        name = fields.text("name", required=True, limit=_NAME_CHARS)
        configs = payload.get("score_configs")
        if not isinstance(configs, list) or not configs:
            raise InvalidRequest(f"queue: 'score_configs' must be a non-empty list; {QUEUE_USAGE}")
        parsed = [ScoreConfig.from_json(c, f"score_configs[{i}]") for i, c in enumerate(configs)]
        if len({c.name for c in parsed}) != len(parsed):
            raise InvalidRequest("queue: two score_configs share a name")
        if self._queue(name) is not None:
            raise Conflict(f"a review queue named {name!r} exists; pick another name")
        sample = fields.number("sample", low=0, high=1)
        limit = fields.number("limit", low=1, high=MAX_TRACES)
        lock = fields.number("lock_seconds", low=10, high=86_400)
        since, until = fields.text("since"), fields.text("until")
        window = Window.from_params({"since": since, "until": until}, default_since="7d")
        traces = select_traces(
            self.store,
            filter=fields.text("filter"),
            where=fields.text("where"),
            since=since,
            until=until,
            limit=100 if limit is None else int(limit),
            sample=(name, sample) if sample is not None and sample < 1 else None,
        )
        if not traces:
            raise InvalidRequest(
                f"no trace for queue {name!r}: the filter matched none in the window; widen it"
            )
        now = _now_ms()
        self.store.insert_rows(
            REVIEW_QUEUES,
            [
                (
                    name,
                    fields.text("filter"),
                    fields.text("where"),
                    window.since,
                    window.until,
                    1.0 if sample is None else sample,
                    json.dumps([c.json() for c in parsed]),
                    fields.text("description"),
                    300 if lock is None else int(lock),
                    len(traces),
                    now,
                    now,
                )
            ],
            [
                "name",
                "filter",
                "where_sql",
                "since",
                "until",
                "sample",
                "score_configs",
                "description",
                "lock_seconds",
                "items",
                "created_at",
                "updated_at",
            ],
        )
        stamp = time.time_ns()
        self.store.insert_rows(
            REVIEW_ITEMS,
            [(name, trace_id, i, "open", "", stamp) for i, trace_id in enumerate(traces)],
            ["queue", "trace_id", "position", "state", "reviewer", "updated_ns"],
        )
        return self.get(name)

    def _queue(self, name: str) -> dict[str, Any] | None:
        rows = self.store.query_dicts(
            f"SELECT * FROM {REVIEW_QUEUES} FINAL WHERE name = {{name:String}}", {"name": name}
        )
        return rows[0] if rows else None

    def _require(self, name: str) -> dict[str, Any]:
        queue = self._queue(name)
        if queue is None:
            raise NotFound(
                f"no review queue named {name!r}; list them with GET /api/queues (make one with "
                "POST /api/queues)"
            )
        return queue

    def _json(self, queue: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": queue["name"],
            "description": queue["description"],
            "filter": queue["filter"],
            "where": queue["where_sql"],
            "since": _iso(queue["since"]),
            "until": _iso(queue["until"]),
            "sample": queue["sample"],
            "score_configs": json.loads(queue["score_configs"]),
            "lock_seconds": queue["lock_seconds"],
            "items": queue["items"],
            "created_at": _iso(queue["created_at"]),
        }

    def list(self) -> dict[str, Any]:
        """Every queue with its progress."""
        queues = self.store.query_dicts(f"SELECT * FROM {REVIEW_QUEUES} FINAL ORDER BY name")
        return {"queues": [{**self._json(q), "progress": self._progress(q)} for q in queues]}

    def get(self, name: str) -> dict[str, Any]:
        """A queue and its progress: items done, skipped, being reviewed, left."""
        queue = self._require(name)
        return {**self._json(queue), "progress": self._progress(queue)}

    def _progress(self, queue: dict[str, Any]) -> dict[str, int]:
        rows = self.store.query(
            f"SELECT state, count() FROM {REVIEW_ITEMS} FINAL WHERE queue = {{q:String}} "
            "GROUP BY state",
            {"q": queue["name"]},
        )
        counts = {state: int(n) for state, n in rows}
        open_items = self._open(queue["name"])
        in_review = sum(1 for trace_id in self._held(queue["name"]) if trace_id in open_items)
        return {
            "total": sum(counts.values()),
            "done": counts.get("done", 0),
            "skipped": counts.get("skipped", 0),
            "in_review": in_review,
            "open": counts.get("open", 0) - in_review,
        }

    # --- claiming -----------------------------------------------------------------------------

    def _open(self, name: str) -> dict[str, int]:
        rows = self.store.query(
            f"SELECT trace_id, position FROM {REVIEW_ITEMS} FINAL "
            "WHERE queue = {q:String} AND state = 'open' ORDER BY position",
            {"q": name},
        )
        return {trace_id: int(position) for trace_id, position in rows}

    def _held(self, name: str) -> dict[str, tuple[str, int]]:
        """Unexpired claims: trace id -> (reviewer, expiry ms) of each item's latest claim."""
        rows = self.store.query(
            f"""SELECT trace_id, argMin(reviewer, (claimed_at, reviewer)),
    toUnixTimestamp64Milli(argMin(expires_at, (claimed_at, reviewer)))
FROM {REVIEW_CLAIMS}
WHERE queue = {{q:String}} AND (trace_id, claim) IN (
    SELECT trace_id, max(claim) FROM {REVIEW_CLAIMS} WHERE queue = {{q:String}} GROUP BY trace_id)
GROUP BY trace_id""",
            {"q": name},
        )
        now = _now_ms()
        return {t: (who, int(until)) for t, who, until in rows if int(until) > now}

    def next(self, name: str, reviewer: str) -> dict[str, Any]:
        """Claim the next item for ``reviewer`` (the one they hold, if any); ``item`` is None
        when nothing is left to review."""
        reviewer = _reviewer(reviewer)
        queue = self._require(name)
        open_items = self._open(name)
        held = self._held(name)
        mine = [t for t, (who, _) in held.items() if who == reviewer and t in open_items]
        if mine:
            trace_id = min(mine, key=open_items.__getitem__)
            return self._item(queue, trace_id, open_items[trace_id], held[trace_id][1])
        for trace_id, position in open_items.items():
            if trace_id in held:
                continue
            until = self._claim(queue, trace_id, reviewer)
            if until is not None:
                return self._item(queue, trace_id, position, until)
        return {"queue": name, "item": None, "progress": self._progress(queue)}

    def _claim(self, queue: dict[str, Any], trace_id: str, reviewer: str) -> int | None:
        """Claim an item; the claim's expiry (ms) when this reviewer won it, else None."""
        name = queue["name"]
        number = self.store.query(
            f"SELECT count() FROM {REVIEW_CLAIMS} WHERE queue = {{q:String}} "
            "AND trace_id = {t:String}",
            {"q": name, "t": trace_id},
        )[0][0]
        expires = _now_ms() + int(queue["lock_seconds"]) * 1000
        self.store.insert_rows(
            REVIEW_CLAIMS,
            [(name, trace_id, number, reviewer, expires)],
            ["queue", "trace_id", "claim", "reviewer", "expires_at"],
            settings={
                "insert_deduplication_token": f"review-claim:{name}:{trace_id}:{number}",
                "async_insert": 0,
            },
        )
        winner = self.store.query(
            f"SELECT argMin(reviewer, (claimed_at, reviewer)), "
            f"toUnixTimestamp64Milli(argMin(expires_at, (claimed_at, reviewer))) "
            f"FROM {REVIEW_CLAIMS} WHERE queue = {{q:String}} AND trace_id = {{t:String}} "
            "AND claim = {n:UInt32}",
            {"q": name, "t": trace_id, "n": number},
        )[0]
        return int(winner[1]) if winner[0] == reviewer else None

    def _item(
        self, queue: dict[str, Any], trace_id: str, position: int, until_ms: int
    ) -> dict[str, Any]:
        return {
            "queue": queue["name"],
            "item": {
                "trace_id": trace_id,
                "position": position,
                "locked_until": _iso(until_ms),
            },
            "score_configs": json.loads(queue["score_configs"]),
            "progress": self._progress(queue),
        }

    # --- answers ------------------------------------------------------------------------------

    def review(self, name: str, trace_id: str, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Store a reviewer's scores (or their skip) for an item of the queue."""
        queue = self._require(name)
        normal = normalise_trace_id(trace_id)
        fields = Fields(payload, "review")
        fields.only("reviewer", "scores", "comment", "skip")
        reviewer = _reviewer(fields.text("reviewer", required=True, limit=_NAME_CHARS))
        position = self._open(name).get(normal or "")
        if normal is None or position is None:
            raise NotFound(
                f"trace {trace_id} is not an open item of queue {name!r} (done, skipped, or "
                "never in it); ask GET /api/queues/{name}/next for the next one"
            )
        holder = self._held(name).get(normal)
        if holder is not None and holder[0] != reviewer:
            raise Conflict(
                f"{holder[0]} is reviewing trace {normal} until {_iso(holder[1])}; ask "
                f"GET /api/queues/{name}/next for another item"
            )
        skip = fields.boolean("skip", False)
        records: list[ScoreRecord] = []
        if not skip:
            configs = [
                ScoreConfig.from_json(c, "score_configs")
                for c in json.loads(queue["score_configs"])
            ]
            answers = fields.mapping("scores")
            unknown = sorted(set(answers) - {c.name for c in configs})
            if unknown:
                raise InvalidRequest(
                    f"review: unknown score(s) {', '.join(unknown)}; this queue asks for "
                    f"{', '.join(c.name for c in configs)}"
                )
            if not answers:
                raise InvalidRequest(f"review: give at least one score, or skip; {REVIEW_USAGE}")
            now = _now_ms()
            for config in configs:
                if config.name not in answers:
                    continue
                value, label = config.score(answers[config.name])
                records.append(
                    ScoreRecord(
                        name=config.name,
                        source="human",
                        created_at=now,
                        value=value,
                        label=label,
                        explanation=fields.text("comment"),
                        trace_id=normal,
                        author=reviewer,
                        metadata=json.dumps({"queue": name}),
                    )
                )
        store_scores(self.store, records)
        state = "skipped" if skip else "done"
        self.store.insert_rows(
            REVIEW_ITEMS,
            [(name, normal, position, state, reviewer, time.time_ns())],
            ["queue", "trace_id", "position", "state", "reviewer", "updated_ns"],
        )
        return {
            "queue": name,
            "trace_id": normal,
            "state": state,
            "scores": [{"name": r.name, "value": r.value, "label": r.label} for r in records],
            "progress": self._progress(queue),
        }


def _reviewer(text: str) -> str:
    reviewer = text.strip()
    if not reviewer or len(reviewer) > _NAME_CHARS:
        raise InvalidRequest(
            f"name the reviewer (reviewer=..., at most {_NAME_CHARS} characters): claims and "
            "scores are theirs"
        )
    return reviewer
