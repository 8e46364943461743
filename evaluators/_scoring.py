"""Running scorers on rows: resolution, per-scorer concurrency and timeout, and the results.

Each scorer id has its own concurrency limit, so a slow or failing judge only ever waits for
itself. A scorer that raises, times out, cannot be resolved or returns something that is not
a score gives one ``scores`` row with its error message; nothing is dropped. Every run is also
traced as a ``scorer`` span under the row's ``eval`` root span (scope ``evalhouse.evaluator``),
with a child model-call span when the scorer reports its own token usage (the LLM judge
does), so judge tokens and cost show up in the row's judge metrics.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from evalhouse import __version__, contract
from evalhouse.evaluators._scorer_refs import ScorerRef
from evalhouse.scoring import Score, run_scorer, scorer_name
from evalhouse.store import EVALUATOR_SCOPE, ScoreRecord

__all__ = ["SPAN_COLUMNS", "Outcome", "ScorerPool", "ScoringItem"]

logger = logging.getLogger(__name__)

SPAN_COLUMNS = (
    "Timestamp",
    "TraceId",
    "SpanId",
    "ParentSpanId",
    "TraceState",
    "SpanName",
    "SpanKind",
    "ServiceName",
    "ResourceAttributes",
    "ScopeName",
    "ScopeVersion",
    "SpanAttributes",
    "Duration",
    "StatusCode",
    "StatusMessage",
    "Events.Timestamp",
    "Events.Name",
    "Events.Attributes",
    "Links.TraceId",
    "Links.SpanId",
    "Links.TraceState",
    "Links.Attributes",
)
_SERVICE = "evalhouse-evaluator"


@dataclass(frozen=True, slots=True)
class ScoringItem:
    """One (row, scorer) to run; row values as stored (JSON text)."""

    trace_id: str
    shard: int
    experiment_id: str
    row_id: str
    trial: int
    root_span_id: str
    input: str
    expected: str
    output: str
    metadata: str
    scorer_id: str


@dataclass(frozen=True, slots=True)
class Outcome:
    item: ScoringItem
    name: str
    scores: tuple[Score, ...]
    error: str
    started_ns: int
    ended_ns: int

    def score_rows(self, span_id: str) -> list[tuple[Any, ...]]:
        """Rows for the ``scores`` table (source ``experiment``; ``span_id`` is the scorer
        span that traces the run)."""
        item = self.item
        created = self.ended_ns // 1_000_000

        def row(
            name: str, value: float | None, error: str, explanation: str, meta: str
        ) -> tuple[Any, ...]:
            return ScoreRecord(
                experiment_id=item.experiment_id,
                trace_id=item.trace_id,
                row_id=item.row_id,
                trial=item.trial,
                name=name,
                value=value,
                error=error,
                explanation=explanation,
                source="experiment",
                created_at=created,
                scorer=item.scorer_id,
                metadata=meta,
                scorer_span_id=span_id,
            ).values()

        if self.error:
            return [row(self.name, None, self.error, "", "")]
        if not self.scores:
            return [row(self.name, None, "", "the scorer returned no score", "")]
        return [
            row(
                score.name,
                score.value,
                "",
                score.explanation or "",
                _json(score.metadata) if score.metadata else "",
            )
            for score in self.scores
        ]

    def span_rows(self, span_id: str) -> list[tuple[Any, ...]]:
        """The scorer span (and the judge's model call, if it reported usage)."""
        item = self.item
        attributes = {
            contract.SPAN_PURPOSE: "scorer",
            contract.SCORE_NAME: self.scores[0].name if len(self.scores) == 1 else self.name,
            "evalhouse.scorer": item.scorer_id,
        }
        single = self.scores[0] if len(self.scores) == 1 else None
        if single is not None and single.value is not None:
            attributes[contract.SCORE_VALUE] = repr(single.value)
        if single is not None and single.explanation:
            attributes[contract.SCORE_EXPLANATION] = single.explanation
        if single is not None and single.metadata:
            attributes[contract.SCORE_METADATA] = _json(single.metadata)
        if self.error:
            attributes[contract.SCORE_ERROR] = self.error
        events = [
            {
                contract.EVALUATION_NAME: score.name,
                **(
                    {contract.EVALUATION_SCORE: repr(score.value)}
                    if score.value is not None
                    else {}
                ),
                **(
                    {contract.EVALUATION_EXPLANATION: score.explanation}
                    if score.explanation
                    else {}
                ),
            }
            for score in self.scores
        ]
        duration = max(0, self.ended_ns - self.started_ns)
        spans = [
            _span_row(
                trace_id=item.trace_id,
                span_id=span_id,
                parent_id=item.root_span_id,
                name=f"score {self.name}",
                start_ns=self.started_ns,
                duration_ns=duration,
                attributes=attributes,
                error=self.error,
                events=[(self.ended_ns, contract.EVALUATION_EVENT, event) for event in events],
            )
        ]
        for score in self.scores:
            call = _model_call(score.metadata)
            if call is not None:
                spans.append(
                    _span_row(
                        trace_id=item.trace_id,
                        span_id=os.urandom(8).hex(),
                        parent_id=span_id,
                        name=f"chat {call.get('gen_ai.request.model', '')}".strip(),
                        start_ns=self.started_ns,
                        duration_ns=duration,
                        attributes=call,
                        error="",
                        events=[],
                    )
                )
        return spans


def _json(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


def _model_call(metadata: Mapping[str, Any] | None) -> dict[str, str] | None:
    """GenAI attributes for a judge call reported in a score's metadata (model, usage)."""
    if not metadata or not isinstance(metadata.get("usage"), Mapping):
        return None
    usage = metadata["usage"]
    keys = {
        "input_tokens": "gen_ai.usage.input_tokens",
        "output_tokens": "gen_ai.usage.output_tokens",
        "cache_read_tokens": "gen_ai.usage.cache_read.input_tokens",
        "cache_write_tokens": "gen_ai.usage.cache_creation.input_tokens",
        "reasoning_tokens": "gen_ai.usage.reasoning.output_tokens",
    }
    attributes = {"gen_ai.operation.name": "chat"}
    for source, target in keys.items():
        value = usage.get(source)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            attributes[target] = str(value)
    model = metadata.get("model")
    if isinstance(model, str) and model:
        attributes["gen_ai.request.model"] = model
        attributes["gen_ai.response.model"] = model
    provider = metadata.get("provider")
    if isinstance(provider, str) and provider:
        attributes["gen_ai.provider.name"] = provider
    return attributes if len(attributes) > 1 else None


def _span_row(
    *,
    trace_id: str,
    span_id: str,
    parent_id: str,
    name: str,
    start_ns: int,
    duration_ns: int,
    attributes: Mapping[str, str],
    error: str,
    events: list[tuple[int, str, Mapping[str, str]]],
) -> tuple[Any, ...]:
    return (
        start_ns,
        trace_id,
        span_id,
        parent_id,
        "",
        name,
        "SPAN_KIND_INTERNAL",
        _SERVICE,
        {"service.name": _SERVICE},
        EVALUATOR_SCOPE,
        __version__,
        dict(attributes),
        duration_ns,
        "STATUS_CODE_ERROR" if error else "STATUS_CODE_OK",
        error,
        [at for at, _, _ in events],
        [event_name for _, event_name, _ in events],
        [dict(attrs) for _, _, attrs in events],
        [],
        [],
        [],
        [],
    )


def _decode(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


Resolver = Callable[[str, Mapping[str, Any] | None], Any]


class ScorerPool:
    """Resolves scorers once and runs them with per-scorer limits and a timeout.

    >>> pool = ScorerPool(timeout=30, concurrency=8)      # doctest: +SKIP
    >>> outcome = await pool.run(item)                    # doctest: +SKIP
    """

    def __init__(self, *, timeout: float, concurrency: int, resolve: Resolver | None = None):
        self.timeout = timeout
        self.concurrency = concurrency
        self._resolve = resolve
        self._scorers: dict[str, Any] = {}
        self._problems: dict[str, str] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._resolving: dict[str, asyncio.Lock] = {}

    async def _scorer(self, ref: ScorerRef, scorer_id: str) -> Any:
        # Concurrent first runs share one resolution: a second instance (an LLM judge with its
        # own HTTP client) would be dropped from _scorers and never closed by aclose().
        async with self._resolving.setdefault(scorer_id, asyncio.Lock()):
            return await self._resolve_once(ref, scorer_id)

    async def _resolve_once(self, ref: ScorerRef, scorer_id: str) -> Any:
        if scorer_id in self._scorers:
            return self._scorers[scorer_id]
        if scorer_id in self._problems:
            raise _Unresolved(self._problems[scorer_id])
        if ref.problem is not None:
            self._problems[scorer_id] = ref.problem
            raise _Unresolved(ref.problem)
        resolve = self._resolve
        if resolve is None:
            from evalhouse.evaluators.scorers import resolve_scorer

            resolve = resolve_scorer
        try:
            # Resolving may import user modules: off the event loop.
            scorer = await asyncio.to_thread(resolve, ref.spec, ref.options)
        except Exception as exc:  # any failure of a user's module is that scorer's error
            message = f"cannot load scorer {ref.spec}: {exc}"
            self._problems[scorer_id] = message
            raise _Unresolved(message) from exc
        self._scorers[scorer_id] = scorer
        return scorer

    async def aclose(self) -> None:
        """Release what scorers hold on this event loop (an LLM judge's HTTP client)."""
        for scorer in self._scorers.values():
            close = getattr(scorer, "aclose", None)
            if close is None or not inspect.iscoroutinefunction(close):
                continue
            try:
                await close()
            except Exception as exc:  # closing must not hide the results already stored
                logger.warning("closing scorer %s failed: %s", scorer_name(scorer), exc)

    def limit(self, scorer_id: str) -> asyncio.Semaphore:
        semaphore = self._limits.get(scorer_id)
        if semaphore is None:
            semaphore = self._limits[scorer_id] = asyncio.Semaphore(self.concurrency)
        return semaphore

    async def run(self, item: ScoringItem) -> Outcome:
        """Run one scorer on one row; every failure becomes the outcome's error."""
        ref = ScorerRef.from_id(item.scorer_id)
        name = ref.spec or "evalhouse.scorers"
        async with self.limit(item.scorer_id):
            started = time.time_ns()
            scores: tuple[Score, ...] = ()
            error = ""
            try:
                scorer = await self._scorer(ref, item.scorer_id)
                name = scorer_name(scorer)
                result = await asyncio.wait_for(
                    run_scorer(
                        scorer,
                        input=_decode(item.input),
                        output=_decode(item.output),
                        expected=_decode(item.expected),
                        metadata=_metadata(item.metadata),
                    ),
                    self.timeout,
                )
                scores = tuple(result)
            except _Unresolved as exc:
                error = str(exc)
            except TimeoutError:
                error = (
                    f"scorer {name} timed out after {self.timeout:g} s; raise "
                    "evaluator_scorer_timeout or make the scorer faster"
                )
            except Exception as exc:  # a scorer's own failure: recorded, never raised
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return Outcome(item, name, scores, error, started, time.time_ns())


class _Unresolved(Exception):
    pass


def _metadata(text: str) -> dict[str, Any]:
    value = _decode(text)
    return value if isinstance(value, dict) else {}
