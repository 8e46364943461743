"""The normalised columns of ``otel_traces`` read every GenAI attribute dialect correctly.

Each test writes spans with one dialect's attributes and compares the whole set of normalised
columns with the exact values expected (untouched columns must keep their defaults, so a
dialect leaking into the wrong column fails too). Most spans are written straight into
``otel_traces``; a few go through the real ingest path (collector validation, then ClickHouse
parsing the OTLP request) to check how attribute values are rendered before normalisation, and
OpenInference's models are checked end to end: the OTel SDK exports to a running collector.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from conftest import count, wait_for
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode
from otlp_builders import span, trace_request

from evalhouse.collector._validate import prepare
from evalhouse.collector._writer import _length_delimited
from evalhouse.store import NORMALISED_COLUMNS, OtlpSink, Store, migrate

MODEL_CALLS = ("chat", "text_completion", "generate_content", "embeddings")

DEFAULTS: dict[str, Any] = {
    "Purpose": "",
    "ExperimentName": "",
    "ExperimentId": "",
    "RowId": "",
    "Trial": 0,
    "LlmProvider": "",
    "LlmRequestModel": "",
    "LlmResponseModel": "",
    "LlmOperation": "",
    "InputTokens": 0,
    "OutputTokens": 0,
    "CacheReadTokens": 0,
    "CacheWriteTokens": 0,
    "ReasoningTokens": 0,
    "ProvidedCostUsd": None,
}
_SELECT = ", ".join(column.name for column in NORMALISED_COLUMNS)


@pytest.fixture(scope="module")
def db(chdb_dsn: str) -> Iterator[Store]:
    """One migrated database for the module; every test reads back only its own spans."""
    store = Store(chdb_dsn, database=f"test_normalise_{uuid.uuid4().hex[:8]}")
    migrate(store)
    yield store
    store.command(f"DROP DATABASE IF EXISTS {store.database}")


def expected(**values: Any) -> dict[str, Any]:
    unknown = set(values) - set(DEFAULTS)
    assert not unknown, f"not a normalised column: {unknown}"
    return {**DEFAULTS, **values}


def read_span(store: Store, span_id: str) -> dict[str, Any]:
    rows = store.query_dicts(
        f"SELECT {_SELECT} FROM otel_traces WHERE SpanId = {{span_id:String}}",
        {"span_id": span_id},
    )
    assert len(rows) == 1, rows
    row: dict[str, Any] = rows[0]
    return row


def normalised(store: Store, attributes: Mapping[str, str]) -> dict[str, Any]:
    """Insert one span with these SpanAttributes; return its normalised columns."""
    span_id = uuid.uuid4().hex[:16]
    store.insert_rows(
        "otel_traces",
        [(dt.datetime.now(dt.UTC), uuid.uuid4().hex, span_id, "llm", "svc", dict(attributes))],
        ["Timestamp", "TraceId", "SpanId", "SpanName", "ServiceName", "SpanAttributes"],
    )
    return read_span(store, span_id)


def ingested(store: Store, attributes: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """Send one span through collector validation and ClickHouse's OTLP parsing."""
    sent = span("llm", attributes)
    prepared = prepare("traces", trace_request([sent]).SerializeToString(), 64 * 1024)
    assert prepared.accepted == 1
    OtlpSink(store).insert_otlp("traces", _length_delimited([prepared.payload]), uuid.uuid4().hex)
    return read_span(store, sent["span_id"].hex()), sent["span_id"].hex()


def as_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


# --- OpenTelemetry GenAI -----------------------------------------------------------------


def test_otel_genai_current_names_fill_every_llm_column(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.provider.name": "openai",
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "gen_ai.usage.input_tokens": "1200",
            "gen_ai.usage.output_tokens": "300",
            "gen_ai.usage.cache_read.input_tokens": "1000",
            "gen_ai.usage.cache_creation.input_tokens": "100",
            "gen_ai.usage.reasoning.output_tokens": "120",
        },
    )
    assert row == expected(
        LlmProvider="openai",
        LlmOperation="chat",
        LlmRequestModel="gpt-4o",
        LlmResponseModel="gpt-4o-2024-08-06",
        InputTokens=1200,
        OutputTokens=300,
        CacheReadTokens=1000,
        CacheWriteTokens=100,
        ReasoningTokens=120,
    )


def test_otel_genai_old_names_prompt_completion_tokens_and_system(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.system": "anthropic",
            "gen_ai.operation.name": "text_completion",
            "gen_ai.request.model": "claude-3-haiku",
            "gen_ai.usage.prompt_tokens": "50",
            "gen_ai.usage.completion_tokens": "8",
        },
    )
    assert row == expected(
        LlmProvider="anthropic",
        LlmOperation="text_completion",
        LlmRequestModel="claude-3-haiku",
        InputTokens=50,
        OutputTokens=8,
    )


def test_new_otel_names_win_over_old_ones_when_both_are_present(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.provider.name": "azure.ai.openai",
            "gen_ai.system": "openai",
            "gen_ai.usage.input_tokens": "100",
            "gen_ai.usage.prompt_tokens": "90",
            "gen_ai.usage.output_tokens": "20",
            "gen_ai.usage.completion_tokens": "19",
            "gen_ai.usage.cache_read.input_tokens": "60",
            "gen_ai.usage.cache_read_input_tokens": "59",
            "gen_ai.usage.cache_creation.input_tokens": "7",
            "gen_ai.usage.cache_creation_input_tokens": "6",
            "gen_ai.usage.reasoning.output_tokens": "11",
            "gen_ai.usage.reasoning_tokens": "10",
        },
    )
    assert row == expected(
        LlmProvider="azure",
        InputTokens=100,
        OutputTokens=20,
        CacheReadTokens=60,
        CacheWriteTokens=7,
        ReasoningTokens=11,
    )


def test_otel_names_win_over_other_dialects_on_the_same_span(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.usage.input_tokens": "40",
            "llm.token_count.prompt": "39",
            "ai.usage.promptTokens": "38",
            "braintrust.metrics": as_json({"prompt_tokens": 37}),
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2024-08-06",
            "llm.invocation_parameters": as_json({"model": "other"}),
            "llm.model_name": "other-2024-01-01",
        },
    )
    assert row == expected(
        InputTokens=40, LlmRequestModel="gpt-4o", LlmResponseModel="gpt-4o-2024-08-06"
    )


# --- OpenInference -----------------------------------------------------------------------


def test_openinference_llm_span_tokens_model_provider_and_cost(db: Store) -> None:
    row = normalised(
        db,
        {
            "openinference.span.kind": "LLM",
            "llm.invocation_parameters": as_json({"model": "gpt-4o-mini", "temperature": 0}),
            "llm.model_name": "gpt-4o-mini-2024-07-18",
            "llm.provider": "azure",
            "llm.system": "openai",
            "llm.token_count.prompt": "500",
            "llm.token_count.completion": "60",
            "llm.token_count.total": "560",
            "llm.token_count.prompt_details.cache_read": "200",
            "llm.token_count.prompt_details.cache_write": "30",
            "llm.token_count.completion_details.reasoning": "12",
            "llm.cost.total": "0.00315",
            "llm.cost.prompt": "0.003",
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmRequestModel="gpt-4o-mini",
        LlmResponseModel="gpt-4o-mini-2024-07-18",
        LlmProvider="azure",
        InputTokens=500,
        OutputTokens=60,
        CacheReadTokens=200,
        CacheWriteTokens=30,
        ReasoningTokens=12,
        ProvidedCostUsd=0.00315,
    )


def test_openinference_llm_system_names_the_provider_when_llm_provider_is_absent(
    db: Store,
) -> None:
    row = normalised(db, {"openinference.span.kind": "LLM", "llm.system": "Anthropic"})
    assert row == expected(LlmOperation="chat", LlmProvider="anthropic")


def test_openinference_embedding_span_is_an_embeddings_call_with_its_model(db: Store) -> None:
    row = normalised(
        db,
        {
            "openinference.span.kind": "EMBEDDING",
            "embedding.invocation_parameters": as_json({"model": "text-embedding-3-small"}),
            "embedding.model_name": "text-embedding-3-small-v2",
            "llm.token_count.prompt": "8",
            "llm.token_count.total": "8",
        },
    )
    assert row == expected(
        LlmOperation="embeddings",
        LlmRequestModel="text-embedding-3-small",
        LlmResponseModel="text-embedding-3-small-v2",
        InputTokens=8,
    )


def test_openinference_embedding_model_name_alone_is_both_models(db: Store) -> None:
    row = normalised(
        db,
        {"openinference.span.kind": "EMBEDDING", "embedding.model_name": "text-embedding-3-small"},
    )
    assert row == expected(
        LlmOperation="embeddings",
        LlmRequestModel="text-embedding-3-small",
        LlmResponseModel="text-embedding-3-small",
    )


def test_openinference_evaluator_span_is_a_scorer_not_a_model_call(db: Store) -> None:
    row = normalised(db, {"openinference.span.kind": "EVALUATOR"})
    assert row == expected(Purpose="scorer")


@pytest.mark.parametrize(
    ("kind", "operation"),
    [
        ("LLM", "chat"),
        ("llm", "chat"),
        ("EMBEDDING", "embeddings"),
        ("TOOL", "execute_tool"),
        ("AGENT", "invoke_agent"),
        ("CHAIN", ""),
        ("RETRIEVER", ""),
    ],
)
def test_openinference_span_kind_maps_to_operation(db: Store, kind: str, operation: str) -> None:
    row = normalised(db, {"openinference.span.kind": kind})
    assert row == expected(LlmOperation=operation)


# OpenInference spans as its OpenAI instrumentation writes them: the request's parameters as
# JSON in llm.invocation_parameters, the model that answered (response.model) in llm.model_name.
OPENINFERENCE_CHAT = {
    "openinference.span.kind": "LLM",
    "llm.system": "openai",
    "llm.provider": "openai",
    "llm.invocation_parameters": as_json({"model": "gpt-4o-mini", "temperature": 0}),
    "llm.model_name": "gpt-4o-mini-2024-07-18",
    "llm.token_count.prompt": 21,
    "llm.token_count.completion": 5,
}
# The same call failing (HTTP 429): no response, so no llm.model_name and no usage.
OPENINFERENCE_FAILED = {
    key: value
    for key, value in OPENINFERENCE_CHAT.items()
    if key not in ("llm.model_name", "llm.token_count.prompt", "llm.token_count.completion")
}


def test_openinference_models_through_the_collector_group_with_other_clients(
    start_collector: Any, store: Store
) -> None:
    """The OTel SDK exports to a running collector: OpenInference's requested model lands in
    LlmRequestModel beside an OTel GenAI client's, its answered model in LlmResponseModel,
    and a failed call keeps the model it asked for."""
    _, addresses = start_collector()
    provider = TracerProvider(resource=Resource.create({"service.name": "support-bot"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{addresses.http}/v1/traces"))
    )
    tracer = provider.get_tracer("openinference.instrumentation.openai")
    with tracer.start_as_current_span("ChatCompletion", attributes=OPENINFERENCE_CHAT):
        pass
    with tracer.start_as_current_span(
        "ChatCompletion failed", attributes=OPENINFERENCE_FAILED, record_exception=False
    ) as failed:
        failed.record_exception(RuntimeError("Error code: 429 - rate limited"))
        failed.set_status(Status(StatusCode.ERROR, "Error code: 429 - rate limited"))
    otel_client = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.response.model": "gpt-4o-mini-2024-07-18",
        "gen_ai.usage.input_tokens": 30,
        "gen_ai.usage.output_tokens": 6,
    }
    with tracer.start_as_current_span("chat gpt-4o-mini", attributes=otel_client):
        pass
    provider.shutdown()
    wait_for(lambda: count(store) == 3)

    rows = store.query(
        "SELECT SpanName, StatusCode, LlmProvider, LlmOperation, LlmRequestModel, "
        "LlmResponseModel, InputTokens FROM otel_traces ORDER BY SpanName"
    )
    assert rows == [
        (
            "ChatCompletion",
            "STATUS_CODE_UNSET",
            "openai",
            "chat",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            21,
        ),
        ("ChatCompletion failed", "STATUS_CODE_ERROR", "openai", "chat", "gpt-4o-mini", "", 0),
        (
            "chat gpt-4o-mini",
            "STATUS_CODE_UNSET",
            "openai",
            "chat",
            "gpt-4o-mini",
            "gpt-4o-mini-2024-07-18",
            30,
        ),
    ]
    # Grouping by model no longer splits OpenInference calls from other clients' ones.
    by_model = store.query(
        "SELECT LlmRequestModel, count(), countIf(StatusCode = 'STATUS_CODE_ERROR'), "
        "sum(InputTokens) FROM otel_traces GROUP BY LlmRequestModel"
    )
    assert by_model == [("gpt-4o-mini", 3, 1, 51)]


@pytest.mark.parametrize(
    "invocation_parameters",
    [
        pytest.param(None, id="absent"),
        pytest.param("", id="empty"),
        pytest.param("model=gpt-4o-mini", id="not-json"),
        pytest.param('{"model": "gpt-4o-mini"', id="truncated-json"),
        pytest.param(as_json({"temperature": 0}), id="no-model"),
        pytest.param(as_json({"model": ""}), id="empty-model"),
        pytest.param(as_json({"model": 4}), id="model-not-a-string"),
        pytest.param(as_json([{"model": "gpt-4o-mini"}]), id="json-array"),
    ],
)
def test_openinference_request_model_falls_back_to_llm_model_name(
    db: Store, invocation_parameters: str | None
) -> None:
    attributes = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-2024-08-06"}
    if invocation_parameters is not None:
        attributes["llm.invocation_parameters"] = invocation_parameters
    row, _ = ingested(db, attributes)
    assert row == expected(
        LlmOperation="chat",
        LlmRequestModel="gpt-4o-2024-08-06",
        LlmResponseModel="gpt-4o-2024-08-06",
    )


def test_openinference_invocation_parameters_sent_as_a_kvlist_are_read(db: Store) -> None:
    # A structured OTLP value is stored as compact JSON (see the ingest tests below).
    row, _ = ingested(
        db,
        {
            "openinference.span.kind": "LLM",
            "llm.invocation_parameters": {"model": "claude-3-5-haiku", "max_tokens": 256},
            "llm.model_name": "claude-3-5-haiku-20241022",
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmRequestModel="claude-3-5-haiku",
        LlmResponseModel="claude-3-5-haiku-20241022",
    )


# --- OpenLLMetry (Traceloop) -------------------------------------------------------------


def test_openllmetry_old_request_type_cache_and_reasoning_names(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.system": "OpenAI",
            "llm.request.type": "chat",
            "gen_ai.request.model": "o3-mini",
            "gen_ai.response.model": "o3-mini-2025-01-31",
            "gen_ai.usage.prompt_tokens": "500",
            "gen_ai.usage.completion_tokens": "40",
            "gen_ai.usage.cache_read_input_tokens": "300",
            "gen_ai.usage.cache_creation_input_tokens": "50",
            "gen_ai.usage.reasoning_tokens": "16",
            "llm.usage.total_tokens": "540",
            "traceloop.span.kind": "task",
        },
    )
    assert row == expected(
        LlmProvider="openai",
        LlmOperation="chat",
        LlmRequestModel="o3-mini",
        LlmResponseModel="o3-mini-2025-01-31",
        InputTokens=500,
        OutputTokens=40,
        CacheReadTokens=300,
        CacheWriteTokens=50,
        ReasoningTokens=16,
    )


@pytest.mark.parametrize(
    ("request_type", "operation"),
    [("chat", "chat"), ("completion", "text_completion"), ("embedding", "embeddings")],
)
def test_openllmetry_request_type_maps_to_operation(
    db: Store, request_type: str, operation: str
) -> None:
    row = normalised(db, {"llm.request.type": request_type})
    assert row == expected(LlmOperation=operation)


def test_total_token_counts_alone_fill_neither_input_nor_output(db: Store) -> None:
    row = normalised(
        db,
        {
            "llm.usage.total_tokens": "540",
            "gen_ai.usage.total_tokens": "540",
            "llm.token_count.total": "540",
            "ai.usage.totalTokens": "540",
        },
    )
    assert row == expected()


# --- Vercel AI SDK -----------------------------------------------------------------------


def test_vercel_legacy_do_generate_span_is_a_chat_call_from_its_provider(db: Store) -> None:
    # Legacy AI SDK spans copy `model.provider` ('openai.chat') into gen_ai.system as well.
    row = normalised(
        db,
        {
            "operation.name": "ai.generateText.doGenerate my-function",
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.response.model": "gpt-4o-mini-2024-07-18",
            "ai.usage.promptTokens": "11",
            "ai.usage.completionTokens": "4",
            "gen_ai.system": "openai.chat",
            "gen_ai.request.model": "gpt-4o-mini",
        },
    )
    assert row == expected(
        LlmProvider="openai",
        LlmOperation="chat",
        LlmRequestModel="gpt-4o-mini",
        LlmResponseModel="gpt-4o-mini-2024-07-18",
        InputTokens=11,
        OutputTokens=4,
    )


def test_vercel_v5_usage_names_with_cached_and_reasoning_tokens(db: Store) -> None:
    row = normalised(
        db,
        {
            "ai.operationId": "ai.streamText.doStream",
            "ai.model.id": "claude-sonnet-4",
            "ai.model.provider": "anthropic.messages",
            "ai.usage.inputTokens": "900",
            "ai.usage.outputTokens": "120",
            "ai.usage.totalTokens": "1020",
            "ai.usage.cachedInputTokens": "700",
            "ai.usage.reasoningTokens": "50",
        },
    )
    assert row == expected(
        LlmProvider="anthropic",
        LlmOperation="chat",
        LlmRequestModel="claude-sonnet-4",
        InputTokens=900,
        OutputTokens=120,
        CacheReadTokens=700,
        ReasoningTokens=50,
    )


def test_vercel_input_token_details_give_cache_read_and_write(db: Store) -> None:
    row = normalised(
        db,
        {
            "ai.operationId": "ai.generateText.doGenerate",
            "ai.usage.inputTokens": "1000",
            "ai.usage.outputTokens": "10",
            "ai.usage.inputTokenDetails.cacheReadTokens": "600",
            "ai.usage.inputTokenDetails.cacheWriteTokens": "300",
        },
    )
    assert row == expected(
        LlmOperation="chat",
        InputTokens=1000,
        OutputTokens=10,
        CacheReadTokens=600,
        CacheWriteTokens=300,
    )


def test_vercel_wrapper_span_keeps_its_tokens_but_is_not_a_model_call(db: Store) -> None:
    row = normalised(
        db,
        {
            "ai.operationId": "ai.generateText",
            "ai.model.id": "gpt-4o-mini",
            "ai.model.provider": "openai.chat",
            "ai.usage.promptTokens": "11",
            "ai.usage.completionTokens": "4",
        },
    )
    assert row == expected(
        LlmProvider="openai",
        LlmOperation="ai.generateText",
        LlmRequestModel="gpt-4o-mini",
        InputTokens=11,
        OutputTokens=4,
    )
    assert row["LlmOperation"] not in MODEL_CALLS


def test_vercel_do_embed_span_is_an_embeddings_call_whose_tokens_are_input(db: Store) -> None:
    row = normalised(
        db,
        {
            "ai.operationId": "ai.embed.doEmbed",
            "ai.model.id": "text-embedding-3-small",
            "ai.model.provider": "openai.embedding",
            "ai.usage.tokens": "12",
        },
    )
    assert row == expected(
        LlmProvider="openai",
        LlmOperation="embeddings",
        LlmRequestModel="text-embedding-3-small",
        InputTokens=12,
    )


@pytest.mark.parametrize(
    ("operation_id", "operation"),
    [
        ("ai.generateText.doGenerate", "chat"),
        ("ai.streamText.doStream", "chat"),
        ("ai.generateObject.doGenerate", "chat"),
        ("ai.streamObject.doStream", "chat"),
        ("ai.embed.doEmbed", "embeddings"),
        ("ai.embedMany.doEmbed", "embeddings"),
        ("ai.toolCall", "execute_tool"),
        ("ai.generateText", "ai.generateText"),
        ("ai.streamText", "ai.streamText"),
        ("ai.embedMany", "ai.embedMany"),
    ],
)
def test_vercel_operation_id_maps_to_operation(
    db: Store, operation_id: str, operation: str
) -> None:
    row = normalised(db, {"ai.operationId": operation_id})
    assert row == expected(LlmOperation=operation)


# --- Langfuse ----------------------------------------------------------------------------


def test_langfuse_usage_input_excludes_cache_so_cache_is_added_back(db: Store) -> None:
    row = normalised(
        db,
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o",
            "langfuse.observation.usage_details": as_json(
                {
                    "input": 200,
                    "output": 50,
                    "input_cached_tokens": 800,
                    "input_cache_creation": 100,
                    "output_reasoning_tokens": 20,
                    "total": 1170,
                }
            ),
            "langfuse.observation.cost_details": as_json(
                {"input": 0.001, "output": 0.002, "total": 0.003}
            ),
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmRequestModel="gpt-4o",
        InputTokens=1100,
        OutputTokens=50,
        CacheReadTokens=800,
        CacheWriteTokens=100,
        ReasoningTokens=20,
        ProvidedCostUsd=0.003,
    )


def test_langfuse_usage_without_cache_counts_input_as_is(db: Store) -> None:
    row = normalised(
        db,
        {
            "langfuse.observation.type": "GENERATION",
            "langfuse.observation.usage_details": as_json({"input": 31, "output": 7}),
        },
    )
    assert row == expected(LlmOperation="chat", InputTokens=31, OutputTokens=7)


def test_langfuse_evaluator_observation_is_a_scorer(db: Store) -> None:
    row = normalised(db, {"langfuse.observation.type": "evaluator"})
    assert row == expected(Purpose="scorer")


def test_langfuse_experiment_attributes_fill_experiment_columns(db: Store) -> None:
    row = normalised(
        db,
        {
            "langfuse.experiment.id": "exp-7",
            "langfuse.experiment.name": "prompt v2",
            "langfuse.experiment.item.id": "item-42",
            "langfuse.experiment.dataset.id": "ds-1",
        },
    )
    assert row == expected(ExperimentId="exp-7", ExperimentName="prompt v2", RowId="item-42")


def test_langfuse_reads_cost_from_gen_ai_usage_cost(db: Store) -> None:
    row = normalised(db, {"gen_ai.usage.cost": "0.25"})
    assert row == expected(ProvidedCostUsd=0.25)


# --- Braintrust --------------------------------------------------------------------------


def test_braintrust_metrics_and_metadata_fill_tokens_cost_model_and_provider(db: Store) -> None:
    row = normalised(
        db,
        {
            "braintrust.span_attributes": as_json({"type": "llm", "name": "Chat Completion"}),
            "braintrust.metadata": as_json({"model": "gpt-4o-mini", "provider": "OpenAI"}),
            "braintrust.metrics": as_json(
                {
                    "prompt_tokens": 1000,
                    "completion_tokens": 80,
                    "tokens": 1080,
                    "prompt_cached_tokens": 512,
                    "prompt_cache_creation_tokens": 64,
                    "completion_reasoning_tokens": 32,
                    "estimated_cost": 0.00042,
                }
            ),
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmRequestModel="gpt-4o-mini",
        LlmProvider="openai",
        InputTokens=1000,
        OutputTokens=80,
        CacheReadTokens=512,
        CacheWriteTokens=64,
        ReasoningTokens=32,
        ProvidedCostUsd=0.00042,
    )


@pytest.mark.parametrize(
    ("span_attributes", "purpose"),
    [
        ({"type": "score", "purpose": "scorer"}, "scorer"),
        ({"type": "score"}, "scorer"),
        ({"type": "llm", "purpose": "scorer"}, "scorer"),
        ({"type": "task"}, "task"),
        ({"type": "eval"}, "eval"),
        ({"type": "function"}, ""),
    ],
)
def test_braintrust_span_attributes_map_to_purpose(
    db: Store, span_attributes: dict[str, str], purpose: str
) -> None:
    row = normalised(db, {"braintrust.span_attributes": as_json(span_attributes)})
    operation = "chat" if span_attributes["type"] == "llm" else ""
    assert row == expected(Purpose=purpose, LlmOperation=operation)


# --- Logfire / pydantic-ai ---------------------------------------------------------------


def test_logfire_operation_cost_and_usage_details(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4.1",
            "gen_ai.usage.input_tokens": "900",
            "gen_ai.usage.output_tokens": "100",
            "gen_ai.usage.details.cache_read_tokens": "600",
            "gen_ai.usage.details.cache_write_tokens": "10",
            "gen_ai.usage.details.reasoning_tokens": "64",
            "operation.cost": "0.0021",
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmProvider="openai",
        LlmRequestModel="gpt-4.1",
        InputTokens=900,
        OutputTokens=100,
        CacheReadTokens=600,
        CacheWriteTokens=10,
        ReasoningTokens=64,
        ProvidedCostUsd=0.0021,
    )


# --- evalhouse wire attributes -----------------------------------------------------------


def test_evalhouse_eval_root_fills_experiment_row_columns(db: Store) -> None:
    row = normalised(
        db,
        {
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": "summaries",
            "evalhouse.experiment.id": "0193e0c4-exp",
            "evalhouse.dataset.name": "news",
            "evalhouse.dataset.row_id": "row-17",
            "evalhouse.trial": "2",
        },
    )
    assert row == expected(
        Purpose="eval",
        ExperimentName="summaries",
        ExperimentId="0193e0c4-exp",
        RowId="row-17",
        Trial=2,
    )


@pytest.mark.parametrize(
    ("value", "purpose"), [("eval", "eval"), ("task", "task"), ("scorer", "scorer"), ("x", "")]
)
def test_evalhouse_span_purpose_accepts_only_the_three_purposes(
    db: Store, value: str, purpose: str
) -> None:
    assert normalised(db, {"evalhouse.span.purpose": value}) == expected(Purpose=purpose)


def test_evalhouse_names_win_over_langfuse_and_braintrust_ones(db: Store) -> None:
    row = normalised(
        db,
        {
            "evalhouse.span.purpose": "task",
            "braintrust.span_attributes": as_json({"type": "score", "purpose": "scorer"}),
            "evalhouse.experiment.id": "ours",
            "langfuse.experiment.id": "theirs",
            "evalhouse.dataset.row_id": "r1",
            "langfuse.experiment.item.id": "i1",
        },
    )
    assert row == expected(Purpose="task", ExperimentId="ours", RowId="r1")


# --- Value parsing, cost and provider spelling -------------------------------------------


@pytest.mark.parametrize("text", ["12", "12.0", '"12"', '"12.0"', "1.2e1", "11.6"])
def test_token_counts_written_as_text_are_parsed_tolerantly(db: Store, text: str) -> None:
    row = normalised(db, {"gen_ai.usage.input_tokens": text, "gen_ai.usage.output_tokens": text})
    assert row == expected(InputTokens=12, OutputTokens=12)


@pytest.mark.parametrize("value", [12, 12.0, "12", "12.0"])
def test_token_counts_inside_json_are_parsed_tolerantly(db: Store, value: object) -> None:
    metrics = {"prompt_tokens": value, "completion_tokens": value, "prompt_cached_tokens": value}
    row = normalised(db, {"braintrust.metrics": as_json(metrics)})
    assert row == expected(InputTokens=12, OutputTokens=12, CacheReadTokens=12)


@pytest.mark.parametrize("text", ["", "n/a", "-5", "null"])
def test_unreadable_or_negative_token_counts_become_zero(db: Store, text: str) -> None:
    assert normalised(db, {"gen_ai.usage.input_tokens": text}) == expected()


def test_cost_is_null_not_zero_when_no_cost_is_reported(db: Store) -> None:
    row = normalised(
        db,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": "10",
            "braintrust.metrics": as_json({"prompt_tokens": 10}),
            "langfuse.observation.cost_details": as_json({}),
        },
    )
    assert row == expected(LlmOperation="chat", InputTokens=10)
    assert row["ProvidedCostUsd"] is None


def test_cost_reported_as_zero_stays_zero(db: Store) -> None:
    assert normalised(db, {"llm.cost.total": "0"}) == expected(ProvidedCostUsd=0.0)


def test_unreadable_cost_falls_through_to_the_next_source(db: Store) -> None:
    row = normalised(db, {"llm.cost.total": "n/a", "operation.cost": "0.5"})
    assert row == expected(ProvidedCostUsd=0.5)


@pytest.mark.parametrize(
    ("raw", "provider"),
    [
        ("Anthropic", "anthropic"),
        (" OpenAI ", "openai"),
        ("azure.ai.openai", "azure"),
        ("az.ai.openai", "azure"),
        ("aws.bedrock", "aws"),
        ("gcp.vertex_ai", "google"),
        ("gcp.gemini", "google"),
        ("mistral_ai", "mistral"),
        ("x_ai", "x-ai"),
        ("openai.chat", "openai"),
        ("openai.responses", "openai"),
        ("anthropic.messages", "anthropic"),
        ("google.vertex.chat", "google"),
        ("groq", "groq"),
    ],
)
def test_provider_names_are_normalised(db: Store, raw: str, provider: str) -> None:
    assert normalised(db, {"gen_ai.provider.name": raw}) == expected(LlmProvider=provider)


# --- Through the real ingest path --------------------------------------------------------


def test_ints_doubles_and_strings_sent_over_otlp_normalise_alike(db: Store) -> None:
    row, span_id = ingested(
        db,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 120,
            "gen_ai.usage.output_tokens": 30.0,
            "gen_ai.usage.cache_read.input_tokens": "100",
            "llm.cost.total": 0.0012,
            "evalhouse.trial": 3,
            "stream": True,
        },
    )
    assert row == expected(
        LlmOperation="chat",
        LlmProvider="openai",
        InputTokens=120,
        OutputTokens=30,
        CacheReadTokens=100,
        ProvidedCostUsd=0.0012,
        Trial=3,
    )
    rendered = db.query(
        "SELECT SpanAttributes['gen_ai.usage.input_tokens'], "
        "SpanAttributes['gen_ai.usage.output_tokens'], SpanAttributes['stream'] "
        "FROM otel_traces WHERE SpanId = {span_id:String}",
        {"span_id": span_id},
    )
    assert rendered == [("120", "30", "true")]


def test_structured_values_arrive_as_compact_json_and_normalise(db: Store) -> None:
    row, span_id = ingested(
        db,
        {
            "braintrust.span_attributes": {"type": "score", "purpose": "scorer"},
            "braintrust.metrics": {"prompt_tokens": 10, "completion_tokens": 5},
            "braintrust.metadata": {"model": "gpt-4o", "provider": "OpenAI"},
        },
    )
    assert row == expected(
        Purpose="scorer",
        LlmProvider="openai",
        LlmRequestModel="gpt-4o",
        InputTokens=10,
        OutputTokens=5,
    )
    rendered = db.query(
        "SELECT SpanAttributes['braintrust.metrics'] FROM otel_traces "
        "WHERE SpanId = {span_id:String}",
        {"span_id": span_id},
    )
    assert rendered == [('{"completion_tokens":5,"prompt_tokens":10}',)]
