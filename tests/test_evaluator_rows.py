"""Experiment rows computed from span sets of every dialect in the reference.

Each case puts one dialect's model-call spans (with the wrappers that repeat their usage) under
an ``eval`` root and a ``task`` span, lets the daemon compute the row, and checks tokens exactly
(input total, cache read, cache write, output total, reasoning, total), the cost provenance and
the cost itself against the pricing module, and that scorer work never leaks into task metrics.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from test_evaluator_spans import Trace, eval_root, evaluate, rows, tokens, write

from evalhouse.evaluators._cost import Usage, row_cost, span_cost
from evalhouse.store import Store, migrate


@dataclass(frozen=True)
class Leaf:
    """A leaf model call as priced: what the row's cost must be made of."""

    provider: str
    model: str
    usage: Usage
    provided: float | None = None
    response_model: str = ""


@dataclass(frozen=True)
class Case:
    build: Callable[[Trace, bytes], None]  # adds the dialect's spans under the task span
    tokens: tuple[int, int, int, int, int, int]
    provenance: str
    leaves: tuple[Leaf, ...]
    ttft_ms: float | None = None


def _otel_new(t: Trace, task: bytes) -> None:
    t.add(
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
            "gen_ai.usage.cache_read.input_tokens": 400,
            "gen_ai.usage.cache_creation.input_tokens": 100,
            "gen_ai.usage.reasoning.output_tokens": 50,
            "gen_ai.response.time_to_first_chunk": 0.35,
        },
        parent=task,
        at_ms=5,
        ms=300,
    )


def _otel_old(t: Trace, task: bytes) -> None:
    t.add(
        "openai.chat",
        {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 80,
            "gen_ai.usage.completion_tokens": 12,
            "gen_ai.usage.cache_read_input_tokens": 30,
        },
        parent=task,
        at_ms=5,
    )


def _openinference(t: Trace, task: bytes) -> None:
    t.add(
        "ChatCompletion",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o",
            "llm.provider": "openai",
            "llm.token_count.prompt": 50,
            "llm.token_count.completion": 9,
            "llm.token_count.prompt_details.cache_read": 25,
            "llm.token_count.completion_details.reasoning": 4,
            "llm.cost.total": 0.002,
        },
        parent=task,
        at_ms=5,
    )


def _openinference_over_openai(t: Trace, task: bytes) -> None:
    # LangChain's OpenInference span and the OpenAI instrumentation's span under it both
    # report the same call: only the leaf counts.
    outer = t.add(
        "ChatOpenAI",
        {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o",
            "llm.token_count.prompt": 50,
            "llm.token_count.completion": 9,
        },
        parent=task,
        at_ms=5,
        ms=100,
    )
    t.add(
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 50,
            "gen_ai.usage.output_tokens": 9,
            "gen_ai.usage.cache_read.input_tokens": 25,
        },
        parent=outer,
        at_ms=6,
        ms=90,
    )


def _openllmetry(t: Trace, task: bytes) -> None:
    workflow = t.add("qa.workflow", {"traceloop.span.kind": "workflow"}, parent=task, at_ms=1)
    step = t.add("answer.task", {"traceloop.span.kind": "task"}, parent=workflow, at_ms=2)
    t.add(
        "openai.chat",
        {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.prompt_tokens": 120,
            "gen_ai.usage.completion_tokens": 30,
            "gen_ai.usage.cache_read_input_tokens": 100,
            "llm.usage.total_tokens": 150,
        },
        parent=step,
        at_ms=3,
    )


def _vercel(t: Trace, task: bytes) -> None:
    generate = t.add(
        "ai.generateText",
        {
            "ai.operationId": "ai.generateText",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": 300,
            "ai.usage.completionTokens": 40,
        },
        parent=task,
        at_ms=1,
        ms=200,
    )
    t.add(
        "ai.generateText.doGenerate",
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": 300,
            "ai.usage.completionTokens": 40,
            "ai.usage.cachedInputTokens": 200,
            "ai.usage.reasoningTokens": 10,
        },
        parent=generate,
        at_ms=2,
        ms=150,
    )
    stream = t.add(
        "ai.streamText",
        {
            "ai.operationId": "ai.streamText",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.inputTokens": 50,
            "ai.usage.outputTokens": 5,
        },
        parent=task,
        at_ms=210,
        ms=100,
    )
    t.add(
        "ai.streamText.doStream",
        {
            "ai.operationId": "ai.streamText.doStream",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.inputTokens": 50,
            "ai.usage.outputTokens": 5,
            "ai.response.msToFirstChunk": 120.0,
        },
        parent=stream,
        at_ms=211,
        ms=90,
    )


def _langfuse(t: Trace, task: bytes) -> None:
    t.add(
        "generation",
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "claude-3-5-sonnet-20241022",
            "langfuse.observation.usage_details": json.dumps(
                {"input": 70, "input_cached_tokens": 30, "input_cache_creation": 10, "output": 12}
            ),
            "langfuse.observation.cost_details": json.dumps({"total": 0.0042}),
        },
        parent=task,
        at_ms=5,
    )


def _braintrust(t: Trace, task: bytes) -> None:
    t.add(
        "Chat Completion",
        {
            "braintrust.span_attributes": json.dumps({"type": "llm"}),
            "braintrust.metadata": json.dumps({"model": "gpt-4o", "provider": "openai"}),
            "braintrust.metrics": json.dumps(
                {
                    "prompt_tokens": 64,
                    "completion_tokens": 16,
                    "prompt_cached_tokens": 32,
                    "completion_reasoning_tokens": 8,
                    "time_to_first_token": 0.25,
                }
            ),
        },
        parent=task,
        at_ms=5,
    )


def _logfire(t: Trace, task: bytes) -> None:
    # pydantic-ai: the agent run span sums its model requests' usage and cost.
    run = t.add(
        "agent run",
        {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.usage.input_tokens": 900,
            "gen_ai.usage.output_tokens": 90,
            "operation.cost": 0.01,
        },
        parent=task,
        at_ms=1,
        ms=300,
    )
    for at, (inp, out, reasoning, cost) in enumerate([(400, 40, 5, 0.004), (500, 50, 0, 0.006)]):
        t.add(
            "chat gpt-4o",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.usage.input_tokens": inp,
                "gen_ai.usage.output_tokens": out,
                "gen_ai.usage.details.reasoning_tokens": reasoning,
                "operation.cost": cost,
            },
            parent=run,
            at_ms=2 + at * 100,
            ms=90,
        )


def _unknown_model(t: Trace, task: bytes) -> None:
    t.add(
        "chat acme",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "acme-cloud",
            "gen_ai.request.model": "acme-llm-9000",
            "gen_ai.usage.input_tokens": 10,
            "gen_ai.usage.output_tokens": 2,
        },
        parent=task,
        at_ms=5,
    )


def _partly_unknown(t: Trace, task: bytes) -> None:
    _otel_old(t, task)
    _unknown_model(t, task)


CASES = {
    "otel-genai-new": Case(
        _otel_new,
        (1000, 400, 100, 200, 50, 1200),
        "inferred",
        (
            Leaf(
                "openai",
                "gpt-4o",
                Usage(1000, 200, 400, 100, 50),
                response_model="gpt-4o-2024-08-06",
            ),
        ),
        ttft_ms=350.0,
    ),
    "otel-genai-old": Case(
        _otel_old,
        (80, 30, 0, 12, 0, 92),
        "inferred",
        (Leaf("openai", "gpt-4o-mini", Usage(80, 12, 30)),),
    ),
    "openinference": Case(
        _openinference,
        (50, 25, 0, 9, 4, 59),
        "provided",
        (Leaf("openai", "gpt-4o", Usage(50, 9, 25, 0, 4), provided=0.002),),
    ),
    "openinference-over-openai": Case(
        _openinference_over_openai,
        (50, 25, 0, 9, 0, 59),
        "inferred",
        (Leaf("openai", "gpt-4o", Usage(50, 9, 25)),),
    ),
    "openllmetry": Case(
        _openllmetry,
        (120, 100, 0, 30, 0, 150),
        "inferred",
        (Leaf("openai", "gpt-4o-mini", Usage(120, 30, 100)),),
    ),
    "vercel": Case(
        _vercel,
        (350, 200, 0, 45, 10, 395),
        "inferred",
        (
            Leaf("openai", "gpt-4o-mini", Usage(300, 40, 200, 0, 10)),
            Leaf("openai", "gpt-4o-mini", Usage(50, 5)),
        ),
        ttft_ms=120.0,
    ),
    "langfuse": Case(
        _langfuse,
        (110, 30, 10, 12, 0, 122),
        "provided",
        (Leaf("", "claude-3-5-sonnet-20241022", Usage(110, 12, 30, 10), provided=0.0042),),
    ),
    "braintrust": Case(
        _braintrust,
        (64, 32, 0, 16, 8, 80),
        "inferred",
        (Leaf("openai", "gpt-4o", Usage(64, 16, 32, 0, 8)),),
        ttft_ms=250.0,
    ),
    "logfire-pydantic-ai": Case(
        _logfire,
        (900, 0, 0, 90, 5, 990),
        "provided",
        (
            Leaf("openai", "gpt-4o", Usage(400, 40, 0, 0, 5), provided=0.004),
            Leaf("openai", "gpt-4o", Usage(500, 50), provided=0.006),
        ),
    ),
    "unknown-model": Case(
        _unknown_model,
        (10, 0, 0, 2, 0, 12),
        "unknown",
        (Leaf("acme-cloud", "acme-llm-9000", Usage(10, 2)),),
    ),
    "partly-unknown": Case(
        _partly_unknown,
        (90, 30, 0, 14, 0, 104),
        "partly_unknown",
        (
            Leaf("openai", "gpt-4o-mini", Usage(80, 12, 30)),
            Leaf("acme-cloud", "acme-llm-9000", Usage(10, 2)),
        ),
    ),
}


def _expected_cost(leaves: tuple[Leaf, ...]) -> tuple[float | None, float]:
    at = datetime.now(UTC)
    costs = [
        span_cost(
            provider=leaf.provider,
            request_model=leaf.model,
            response_model=leaf.response_model,
            usage=leaf.usage,
            provided_usd=leaf.provided,
            at=at,
        )
        for leaf in leaves
    ]
    total = row_cost(costs)
    return total.usd, total.known_usd


def _judge(t: Trace, root: bytes) -> None:
    """A scorer subtree with its own model call: must count as judge, never as task."""
    scorer = t.add(
        "score factuality",
        {
            "evalhouse.span.purpose": "scorer",
            "evalhouse.score.name": "factuality",
            "evalhouse.score.value": 0.5,
        },
        parent=root,
        at_ms=400,
        ms=80,
    )
    t.add(
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 700,
            "gen_ai.usage.output_tokens": 3,
        },
        parent=scorer,
        at_ms=401,
        ms=70,
    )


@pytest.fixture(scope="module")
def dialect_rows(chdb_dsn: str) -> Iterator[tuple[Store, dict[str, str]]]:
    """Every case as its own row of one experiment, evaluated in one go."""
    store = Store(chdb_dsn, database=f"test_dialects_{uuid.uuid4().hex[:8]}")
    migrate(store)
    traces = {}
    for dialect, case in CASES.items():
        t = Trace()
        root = eval_root(t, row_id=dialect)
        task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=10, ms=350)
        case.build(t, task)
        _judge(t, root)
        traces[dialect] = t
    write(store, *traces.values())
    evaluate(store)
    yield store, {dialect: t.hex for dialect, t in traces.items()}
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


@pytest.mark.parametrize("dialect", sorted(CASES))
def test_row_tokens_and_cost_per_dialect(
    dialect_rows: tuple[Store, dict[str, str]], dialect: str
) -> None:
    store, trace_ids = dialect_rows
    case = CASES[dialect]
    row = store.query_dicts(
        "SELECT * FROM experiment_rows WHERE trace_id = {t:String}", {"t": trace_ids[dialect]}
    )[0]
    assert tokens(row) == case.tokens
    assert row["cost_provenance"] == case.provenance
    usd, known = _expected_cost(case.leaves)
    if usd is None:
        assert row["cost_usd"] is None  # unknown is NULL, never $0
    else:
        assert row["cost_usd"] == pytest.approx(usd, rel=1e-9)
    assert row["cost_known_usd"] == pytest.approx(known, rel=1e-9)
    assert row["price_data_version"].startswith("genai-prices ")
    assert row["ttft_ms"] == (pytest.approx(case.ttft_ms) if case.ttft_ms else None)
    assert row["llm_calls"] == len(case.leaves)
    # The judge's call is reported apart, never in the task's numbers.
    assert (row["judge_input_tokens"], row["judge_output_tokens"]) == (700, 3)
    assert row["judge_llm_calls"] == 1
    assert row["judge_cost_usd"] == pytest.approx(
        _expected_cost((Leaf("openai", "gpt-4o-mini", Usage(700, 3)),))[0]
    )
    assert row["scores"] == {"factuality": 0.5}
    assert row["task_duration_ms"] == 350.0


def test_row_values_durations_and_task_error(store: Store) -> None:
    t = Trace()
    root = eval_root(
        t,
        input={"question": "2+2?"},
        expected="4",
        output=None,
        ms=900,
        error="ValueError: no answer",
        **{
            "evalhouse.metadata": json.dumps({"topic": "math"}),
            "evalhouse.experiment.metadata": json.dumps({"model": "gpt-4o"}),
            "evalhouse.dataset.version": "v3",
        },
    )
    task = t.add(
        "task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=100, ms=600, error=""
    )
    t.add(
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        parent=task,
        at_ms=110,
        ms=250,
    )
    t.add(
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"},
        parent=task,
        at_ms=400,
        ms=150,
    )
    write(store, t)
    evaluate(store)
    row = store.query_dicts("SELECT * FROM experiment_rows")[0]
    assert (row["experiment_id"], row["experiment_name"]) == ("exp-1-id", "exp-1")
    assert (row["dataset_name"], row["dataset_version"], row["row_id"], row["trial"]) == (
        "golden",
        "v3",
        "row-1",
        0,
    )
    assert json.loads(row["input"]) == {"question": "2+2?"}
    assert (row["expected"], row["output"]) == ('"4"', "null")
    assert json.loads(row["metadata"]) == {"topic": "math"}
    assert json.loads(row["experiment_metadata"]) == {"model": "gpt-4o"}
    # The task span failed without a message; the root carries the exception text.
    assert row["error"] == "ValueError: no answer"
    assert (row["task_duration_ms"], row["offset_ms"], row["llm_duration_ms"]) == (
        600.0,
        100.0,
        400.0,
    )
    assert row["root_span_id"] == root.hex()
    assert row["span_count"] == 4


def test_braintrust_experiment_is_recognised_without_evalhouse_attributes(
    store: Store,
) -> None:
    t = Trace()
    root = t.add(
        "eval",
        {
            "braintrust.span_attributes": json.dumps({"type": "eval"}),
            "braintrust.parent": "experiment_id:bt-7f3a",
            "braintrust.input": json.dumps({"q": "capital of France?"}),
            "braintrust.expected": "Paris",
            "braintrust.output": "Paris",
        },
        ms=300,
    )
    task = t.add(
        "task",
        {"braintrust.span_attributes": json.dumps({"type": "task"})},
        parent=root,
        at_ms=1,
        ms=200,
    )
    _braintrust(t, task)
    t.add(
        "ExactMatch",
        {
            "braintrust.span_attributes": json.dumps({"type": "score", "purpose": "scorer"}),
            "braintrust.scores": json.dumps({"ExactMatch": 1, "Levenshtein": 0.75}),
        },
        parent=root,
        at_ms=250,
        ms=5,
    )
    write(store, t)
    evaluate(store)
    row = rows(store)[t.hex]
    assert (row["experiment_id"], row["experiment_name"]) == ("bt-7f3a", "bt-7f3a")
    assert json.loads(row["input"]) == {"q": "capital of France?"}
    # Plain-text values of other dialects are stored JSON-encoded, like the contract's.
    assert (row["expected"], row["output"]) == ('"Paris"', '"Paris"')
    assert tokens(row) == (64, 32, 0, 16, 8, 80)
    assert row["task_duration_ms"] == 200.0
    assert row["scores"] == {"ExactMatch": 1.0, "Levenshtein": 0.75}


def test_langfuse_experiment_item_is_a_row(store: Store) -> None:
    t = Trace()
    item = t.add(
        "experiment-item-run",
        {
            "langfuse.experiment.id": "lf-exp-1",
            "langfuse.experiment.name": "support-bot v2",
            "langfuse.experiment.item.id": "item-9",
            "langfuse.experiment.dataset.id": "ds-support",
            "langfuse.observation.input": "where is my order?",
            "langfuse.observation.output": json.dumps({"answer": "on its way"}),
        },
        ms=400,
    )
    _langfuse(t, item)
    evaluator_span = t.add(
        "helpfulness",
        {"langfuse.observation.type": "evaluator"},
        parent=item,
        at_ms=300,
        ms=50,
    )
    t.add(
        "judge",
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o-mini",
            "langfuse.observation.usage_details": json.dumps({"input": 300, "output": 2}),
        },
        parent=evaluator_span,
        at_ms=301,
        ms=40,
    )
    write(store, t)
    evaluate(store)
    row = rows(store)[t.hex]
    assert (row["experiment_id"], row["experiment_name"], row["dataset_name"]) == (
        "lf-exp-1",
        "support-bot v2",
        "ds-support",
    )
    assert row["row_id"] == "item-9"
    assert (row["input"], json.loads(row["output"])) == (
        '"where is my order?"',
        {"answer": "on its way"},
    )
    assert tokens(row) == (110, 30, 10, 12, 0, 122)
    assert (row["judge_input_tokens"], row["judge_output_tokens"]) == (300, 2)
    assert row["cost_usd"] == pytest.approx(0.0042)


def test_trials_of_one_input_share_a_row_id(store: Store) -> None:
    traces = []
    for trial in range(3):
        t = Trace()
        eval_root(t, row_id=None, trial=trial, input={"q": "same"}, output=f"answer {trial}")
        traces.append(t)
    other = Trace()
    eval_root(other, row_id=None, input={"q": "different"})
    write(store, *traces, other)
    evaluate(store)
    found = rows(store)
    ids = {found[t.hex]["row_id"] for t in traces}
    assert len(ids) == 1 and next(iter(ids)).startswith("input:")
    assert sorted(found[t.hex]["trial"] for t in traces) == [0, 1, 2]
    assert found[other.hex]["row_id"] not in ids
    summary = store.query_dicts("SELECT rows, unique_rows, trials FROM experiments")[0]
    assert (summary["rows"], summary["unique_rows"], summary["trials"]) == (4, 2, 3)


def test_scores_reported_by_spans_and_evaluation_events(store: Store) -> None:
    t = Trace()
    root = eval_root(t)
    task = t.add(
        "task",
        {"evalhouse.span.purpose": "task"},
        parent=root,
        at_ms=1,
        events=[
            (
                "gen_ai.evaluation.result",
                {
                    "gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.value": 0.8,
                    "gen_ai.evaluation.explanation": "on topic",
                },
            )
        ],
    )
    t.add(
        "score tone",
        {
            "evalhouse.span.purpose": "scorer",
            "evalhouse.score.name": "tone",
            "evalhouse.score.value": 0.25,
            "evalhouse.score.explanation": "curt",
        },
        parent=root,
        at_ms=50,
    )
    t.add(
        "score safety",
        {"evalhouse.span.purpose": "scorer", "evalhouse.score.name": "safety"},
        parent=root,
        at_ms=60,
        error="moderation endpoint returned 503",
    )
    t.add(
        "score judge",
        {"openinference.span.kind": "EVALUATOR"},
        parent=root,
        at_ms=70,
        error="judge crashed",
    )
    assert task
    write(store, t)
    evaluate(store)
    got = store.query_dicts(
        "SELECT name, value, error, explanation, source, span_id, scorer_span_id "
        "FROM scores FINAL ORDER BY name"
    )
    # Reported by the app's own spans: source otlp. An event scores the span it is on; a
    # scorer span's score is the row's (the scorer span is kept as scorer_span_id).
    assert [(s["name"], s["value"], s["error"], s["explanation"], s["source"]) for s in got] == [
        ("relevance", 0.8, "", "on topic", "otlp"),
        ("safety", None, "moderation endpoint returned 503", "", "otlp"),
        ("score judge", None, "judge crashed", "", "otlp"),
        ("tone", 0.25, "", "curt", "otlp"),
    ]
    assert (got[0]["span_id"], got[0]["scorer_span_id"]) == (task.hex(), "")
    assert got[3]["span_id"] == "" and got[3]["scorer_span_id"] != ""
    row = rows(store)[t.hex]
    assert row["scores"] == {"relevance": 0.8, "tone": 0.25}
    errors = store.query("SELECT score_errors FROM experiment_rows")[0][0]
    assert errors == {"safety": "moderation endpoint returned 503", "score judge": "judge crashed"}


def test_experiments_view_keeps_unknown_cost_out_of_totals(store: Store) -> None:
    known, unknown = Trace(), Trace()
    for t, build in ((known, _otel_old), (unknown, _unknown_model)):
        root = eval_root(t, row_id=t.hex[:8])
        task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=1)
        build(t, task)
    write(store, known, unknown)
    evaluate(store)
    summary = store.query_dicts("SELECT * FROM experiments")[0]
    assert (summary["rows"], summary["rows_cost_unknown"]) == (2, 1)
    assert summary["total_cost_usd"] is None
    assert summary["known_cost_usd"] == pytest.approx(rows(store)[known.hex]["cost_usd"])
    assert summary["total_tokens"] == 92 + 12
