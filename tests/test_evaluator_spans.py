"""Span-set builders shared by the evaluator tests, and unit tests of the pure parts (scorer
selection, the trace tree) that need no store.

Spans go through the real ingest path: OTLP requests parsed by ClickHouse (``OtlpSink``).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.trace.v1.trace_pb2 import Status
from otlp_builders import span, trace_request

from evalhouse.collector._writer import _length_delimited
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator
from evalhouse.evaluators._scorer_refs import ScorerRef, scorer_refs
from evalhouse.evaluators._traces import Span
from evalhouse.evaluators._tree import TraceTree
from evalhouse.store import OtlpSink, Store

MS = 1_000_000


@dataclass
class Trace:
    """Spans of one trace, built parent first; ``add`` returns the new span's id."""

    start: int = field(default_factory=lambda: time.time_ns() - 600_000 * MS)
    trace_id: bytes = field(default_factory=lambda: os.urandom(16))
    spans: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[bytes, str] = field(default_factory=dict)
    events: dict[bytes, list[tuple[str, dict[str, Any]]]] = field(default_factory=dict)

    def add(
        self,
        name: str,
        attrs: Mapping[str, Any] | None = None,
        *,
        parent: bytes = b"",
        at_ms: float = 0,
        ms: float = 10,
        error: str | None = None,
        events: Iterable[tuple[str, dict[str, Any]]] = (),
    ) -> bytes:
        built = span(
            name,
            attrs,
            trace_id=self.trace_id,
            parent_span_id=parent,
            start_ns=self.start + int(at_ms * MS),
            duration_ns=int(ms * MS),
        )
        self.spans.append(built)
        if error is not None:
            self.errors[built["span_id"]] = error
        if events:
            self.events[built["span_id"]] = list(events)
        return bytes(built["span_id"])

    @property
    def hex(self) -> str:
        return self.trace_id.hex()


def write(store: Store, *traces: Trace, only: set[bytes] | None = None) -> None:
    """Send the spans (or only the span ids in ``only``) as one OTLP request."""
    spans = [s for t in traces for s in t.spans if only is None or s["span_id"] in only]
    request = trace_request(spans)
    errors = {k: v for t in traces for k, v in t.errors.items()}
    events = {k: v for t in traces for k, v in t.events.items()}
    for out in request.resource_spans[0].scope_spans[0].spans:
        if out.span_id in errors:
            out.status.code = Status.STATUS_CODE_ERROR
            out.status.message = errors[out.span_id]
        for name, attributes in events.get(out.span_id, []):
            event = out.events.add(name=name, time_unix_nano=out.end_time_unix_nano)
            for key, value in attributes.items():
                item = event.attributes.add(key=key)
                if isinstance(value, float):
                    item.value.double_value = value
                else:
                    item.value.string_value = str(value)
    payload = _length_delimited([request.SerializeToString()])
    OtlpSink(store).insert_otlp("traces", payload, uuid.uuid4().hex)


def eval_root(
    trace: Trace,
    *,
    experiment: str = "exp-1",
    row_id: str | None = "row-1",
    trial: int | None = None,
    input: Any = "question",
    expected: Any = "answer",
    output: Any = "answer",
    scorers: list[Any] | None = None,
    ms: float = 500,
    error: str | None = None,
    **extra: Any,
) -> bytes:
    attrs: dict[str, Any] = {
        "evalhouse.span.purpose": "eval",
        "evalhouse.experiment.name": experiment,
        "evalhouse.experiment.id": f"{experiment}-id",
        "evalhouse.dataset.name": "golden",
        "evalhouse.input": json.dumps(input),
        "evalhouse.expected": json.dumps(expected),
        "evalhouse.output": json.dumps(output),
        **extra,
    }
    if row_id is not None:
        attrs["evalhouse.dataset.row_id"] = row_id
    if trial is not None:
        attrs["evalhouse.trial"] = trial
    if scorers is not None:
        attrs["evalhouse.scorers"] = json.dumps(scorers)
    return trace.add("eval", attrs, ms=ms, error=error)


def evaluator(store: Store, **overrides: Any) -> Evaluator:
    values: dict[str, Any] = {
        "evaluator_quiet_seconds": 0,
        "evaluator_poll_seconds": 0.2,
        "evaluator_scorer_timeout": 5,
        "evaluator_lease_seconds": 30,
    }
    values.update(overrides)
    worker_id = values.pop("worker_id", None)
    observer = values.pop("observer", None)
    return Evaluator(load_settings(**values), store, worker_id=worker_id, observer=observer)


def evaluate(store: Store, **overrides: Any) -> Evaluator:
    """Run an evaluator until nothing is left to do; returns it (for its counters)."""
    daemon = evaluator(store, **overrides)
    try:
        daemon.run_until_idle(timeout=120)
    finally:
        daemon.close()
    return daemon


def rows(store: Store, experiment: str | None = None) -> dict[str, dict[str, Any]]:
    """experiment_rows by trace id."""
    sql = "SELECT * FROM experiment_rows"
    parameters = None
    if experiment is not None:
        sql += " WHERE experiment_id = {e:String} OR experiment_name = {e:String}"
        parameters = {"e": experiment}
    return {row["trace_id"]: row for row in store.query_dicts(sql, parameters)}


def tokens(row: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(
        row[k]
        for k in (
            "input_tokens",
            "cache_read_tokens",
            "cache_write_tokens",
            "output_tokens",
            "reasoning_tokens",
            "total_tokens",
        )
    )


# --- unit tests -------------------------------------------------------------------------------


def test_scorers_come_from_the_row_the_experiment_metadata_and_the_config() -> None:
    refs = scorer_refs(
        row_attribute='["exact_match", {"name": "llm_judge", "options": {"model": "m"}}]',
        experiment_metadata='{"scorers": ["contains", "exact_match"]}',
        experiment_name="summaries-v2",
        config={"summaries-*": ["levenshtein"], "other-*": ["regex"]},
    )
    assert [ref.id for ref in refs] == [
        "exact_match",
        'llm_judge{"model":"m"}',
        "contains",
        "levenshtein",
    ]
    assert ScorerRef.from_id('llm_judge{"model":"m"}') == ScorerRef("llm_judge", {"model": "m"})


def test_unreadable_scorer_entries_become_errors_not_silence() -> None:
    refs = scorer_refs(
        row_attribute="exact_match, contains",
        experiment_metadata='{"scorers": [42]}',
        experiment_name="x",
        config={},
    )
    assert [ref.id[0] for ref in refs] == ["!", "!"]
    assert "evalhouse.scorers is not JSON" in refs[0].id
    assert "neither a scorer name" in refs[1].id
    assert ScorerRef.from_id(refs[0].id).problem == refs[0].problem


def _span(span_id: str, parent: str, **values: Any) -> Span:
    fields: dict[str, Any] = {
        "trace_id": "t",
        "span_id": span_id,
        "parent_id": parent,
        "name": span_id,
        "start_ns": 0,
        "duration_ns": 1,
        "failed": False,
        "status_message": "",
        "exception_message": "",
        "purpose": "",
        "experiment_name": "",
        "experiment_id": "",
        "row_id": "",
        "trial": 0,
        "provider": "",
        "request_model": "",
        "response_model": "",
        "operation": "",
        "input_tokens": 0,
        "output_tokens": 0,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "provided_cost_usd": None,
        "by_evaluator": False,
        "inserted_ms": 0,
        "attributes": {},
        "evaluations": [],
    }
    fields.update(values)
    return Span(**fields)


def test_the_tree_splits_task_and_scorers_and_keeps_leaf_model_calls_only() -> None:
    spans = [
        _span("root", "", purpose="eval"),
        _span("task", "root", purpose="task"),
        _span("agent", "task", operation="invoke_agent", input_tokens=300),
        _span("wrapper", "agent", operation="chat", input_tokens=100),  # framework LLM span
        _span("call", "wrapper", operation="chat", input_tokens=100),  # the real call
        _span("embed", "task", operation="embeddings", input_tokens=7),
        _span("scorer", "root", purpose="scorer"),
        _span("judge", "scorer", operation="chat", input_tokens=50),
        _span("lost", "never-arrived", operation="chat", input_tokens=9),
        _span("cycle-a", "cycle-b"),
        _span("cycle-b", "cycle-a"),
    ]
    tree = TraceTree(spans)
    root = tree.row_root()
    assert root is not None and root.span_id == "root"
    part = tree.partition(root)
    assert {s.span_id for s in part.task_calls} == {"call", "embed"}
    assert [s.span_id for s in part.judge_calls] == ["judge"]
    assert [s.span_id for s in part.task_spans] == ["task"]
    assert [s.span_id for s in part.scorer_spans] == ["scorer"]
    assert [s.span_id for s in tree.orphans] == ["lost"]


def test_without_an_eval_span_the_outermost_span_naming_an_experiment_is_the_root() -> None:
    spans = [
        _span("ci", ""),
        _span("item", "ci", experiment_id="lf-exp"),
        _span("child", "item", experiment_id="lf-exp"),
    ]
    root = TraceTree(spans).row_root()
    assert root is not None and root.span_id == "item"


def test_the_evaluator_package_exports_its_public_names() -> None:
    import evalhouse.evaluators as package

    assert {
        "Evaluator",
        "RepriceReport",
        "ScoreReport",
        "reprice_experiment",
        "score_experiment",
    } <= set(package.__all__)
    assert all(hasattr(package, name) for name in package.__all__)
