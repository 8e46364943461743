"""Normalised columns on ``otel_traces``: SQL expressions over ``SpanAttributes``.

They are ``MATERIALIZED`` columns, so ClickHouse computes them at insert for spans written by
evalhouse *and* by a stock OpenTelemetry Collector, and ``evalhouse migrate`` can add them to
a table the Collector's ClickHouse exporter created (older parts compute them on read).

Every dialect of the table in docs/sql.md ("Normalised LLM columns") is read; when several names are
present the first in each list wins (newest OTel names first). Token counts are normalised to
(input total incl. cache, cache read, cache write, output total incl. reasoning, reasoning):
Langfuse's ``usage_details.input`` excludes cache, so its cache counts are added back.

A migration's DDL never changes once released (``tests/test_cluster_ddl.py`` pins it):
installed databases would not run it again. To change an expression, keep the released text
for the migration that wrote it (as :data:`MIGRATION_3_COLUMNS` does) and add a migration
that ``MODIFY``s the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

__all__ = [
    "MIGRATION_3_COLUMNS",
    "MIGRATION_11_COLUMNS",
    "NORMALISED_COLUMNS",
    "NormalisedColumn",
]


@dataclass(frozen=True)
class NormalisedColumn:
    name: str
    type: str
    expression: str
    doc: str

    def declaration(self) -> str:
        """The column as ``ADD COLUMN`` / ``MODIFY COLUMN`` declare it.

        >>> NormalisedColumn("Trial", "UInt32", "0", "Trial's number.").declaration()
        "Trial UInt32 MATERIALIZED 0 COMMENT 'Trial''s number.'"
        """
        comment = self.doc.replace("'", "''")
        return f"{self.name} {self.type} MATERIALIZED {self.expression} COMMENT '{comment}'"


def _attr(key: str) -> str:
    return f"SpanAttributes['{key}']"


def _has(key: str) -> str:
    return f"mapContains(SpanAttributes, '{key}')"


def _json_attr(key: str, path: str) -> str:
    """A number or string stored under ``path`` of a JSON-encoded attribute, as text."""
    return f"JSONExtractRaw({_attr(key)}, '{path}')"


def _json_text(key: str, path: str) -> str:
    """The string under ``path`` of a JSON-encoded attribute; '' when the attribute is absent
    or not JSON, or ``path`` is missing or null."""
    return f"JSONExtractString({_attr(key)}, '{path}')"


def _json_string(key: str, path: str) -> tuple[str, str]:
    """A branch taken when ``path`` of a JSON-encoded attribute is a non-empty string.

    The type is checked because ``JSONExtractString`` returns the raw text of a number on
    current ClickHouse (``{"model": 4}`` gives '4') and '' on older servers.
    """
    value = _json_text(key, path)
    return f"JSONType({_attr(key)}, '{path}') = 'String' AND {value} != ''", value


def _nonempty(value: str) -> tuple[str, str]:
    """A (condition, value) branch taken when the text ``value`` is not empty."""
    return f"{value} != ''", value


def _present(*keys: str) -> list[tuple[str, str]]:
    """A branch per attribute key, taken when that attribute is not empty."""
    return [_nonempty(_attr(key)) for key in keys]


def _first_of(branches: Sequence[tuple[str, str]]) -> str:
    """The value of the first (condition, value) branch whose condition holds, else ''."""
    return f"multiIf({', '.join(part for branch in branches for part in branch)}, '')"


def _first_text(keys: list[str], *, extra: Sequence[tuple[str, str]] = ()) -> str:
    """First non-empty attribute among ``keys``, then (condition, value) pairs, else ''."""
    return _first_of([*_present(*keys), *extra])


def _count(text: str) -> str:
    """Tolerant token count: '12', '12.0', 12 in JSON, '"12"' in JSON all become 12."""
    return f"toUInt64(greatest(0, round(toFloat64OrZero(trim(BOTH '\"' FROM {text})))))"


# (attribute key) or (json attribute key, json path) sources, in priority order.
_Source = tuple[str, ...]


def _tokens(sources: list[_Source], fallback: str = "0") -> str:
    branches = []
    for source in sources:
        if len(source) == 1:
            key = source[0]
            branches += [_has(key), _count(_attr(key))]
        else:
            key, path = source
            branches += [
                f"{_has(key)} AND JSONHas({_attr(key)}, '{path}')",
                _count(_json_attr(key, path)),
            ]
    return f"multiIf({', '.join(branches)}, {fallback})"


_LF_USAGE = "langfuse.observation.usage_details"
_BT_METRICS = "braintrust.metrics"

_CACHE_READ: list[_Source] = [
    ("gen_ai.usage.cache_read.input_tokens",),
    ("gen_ai.usage.cache_read_input_tokens",),
    ("llm.token_count.prompt_details.cache_read",),
    ("ai.usage.inputTokenDetails.cacheReadTokens",),
    ("ai.usage.cachedInputTokens",),
    ("gen_ai.usage.details.cache_read_tokens",),
    (_LF_USAGE, "input_cached_tokens"),
    (_BT_METRICS, "prompt_cached_tokens"),
]
_CACHE_WRITE: list[_Source] = [
    ("gen_ai.usage.cache_creation.input_tokens",),
    ("gen_ai.usage.cache_creation_input_tokens",),
    ("llm.token_count.prompt_details.cache_write",),
    ("ai.usage.inputTokenDetails.cacheWriteTokens",),
    ("gen_ai.usage.details.cache_write_tokens",),
    (_LF_USAGE, "input_cache_creation"),
    (_BT_METRICS, "prompt_cache_creation_tokens"),
]
_LANGFUSE_INPUT_TOTAL = (
    f"{_count(_json_attr(_LF_USAGE, 'input'))}"
    f" + {_count(_json_attr(_LF_USAGE, 'input_cached_tokens'))}"
    f" + {_count(_json_attr(_LF_USAGE, 'input_cache_creation'))}"
)
_INPUT = _tokens(
    [
        ("gen_ai.usage.input_tokens",),
        ("gen_ai.usage.prompt_tokens",),
        ("llm.token_count.prompt",),
        ("ai.usage.inputTokens",),
        ("ai.usage.promptTokens",),
        (_BT_METRICS, "prompt_tokens"),
        # Vercel embedding spans: every token of an embedding call is an input token.
        ("ai.usage.tokens",),
    ],
    fallback=f"if({_has(_LF_USAGE)}, {_LANGFUSE_INPUT_TOTAL}, 0)",
)
_OUTPUT = _tokens(
    [
        ("gen_ai.usage.output_tokens",),
        ("gen_ai.usage.completion_tokens",),
        ("llm.token_count.completion",),
        ("ai.usage.outputTokens",),
        ("ai.usage.completionTokens",),
        (_LF_USAGE, "output"),
        (_BT_METRICS, "completion_tokens"),
    ]
)
_REASONING = _tokens(
    [
        ("gen_ai.usage.reasoning.output_tokens",),
        ("gen_ai.usage.reasoning_tokens",),
        ("llm.token_count.completion_details.reasoning",),
        ("ai.usage.reasoningTokens",),
        ("ai.usage.outputTokenDetails.reasoningTokens",),
        ("gen_ai.usage.details.reasoning_tokens",),
        (_LF_USAGE, "output_reasoning_tokens"),
        (_BT_METRICS, "completion_reasoning_tokens"),
    ]
)


def _cost() -> str:
    plain = ["llm.cost.total", "operation.cost", "gen_ai.usage.cost"]
    branches = []
    for key in plain:
        branches += [
            f"{_has(key)} AND isNotNull(toFloat64OrNull({_attr(key)}))",
            f"toFloat64OrNull({_attr(key)})",
        ]
    for key, path in [
        ("langfuse.observation.cost_details", "total"),
        (_BT_METRICS, "estimated_cost"),
    ]:
        value = f"toFloat64OrNull(trim(BOTH '\"' FROM {_json_attr(key, path)}))"
        branches += [f"{_has(key)} AND isNotNull({value})", value]
    return f"multiIf({', '.join(branches)}, NULL)"


_BT_SPAN = "braintrust.span_attributes"
_PURPOSE = (
    "multiIf("
    f"{_attr('evalhouse.span.purpose')} IN ('eval', 'task', 'scorer'), "
    f"{_attr('evalhouse.span.purpose')}, "
    f"JSONExtractString({_attr(_BT_SPAN)}, 'purpose') = 'scorer', 'scorer', "
    f"JSONExtractString({_attr(_BT_SPAN)}, 'type') = 'score', 'scorer', "
    f"JSONExtractString({_attr(_BT_SPAN)}, 'type') = 'eval', 'eval', "
    f"JSONExtractString({_attr(_BT_SPAN)}, 'type') = 'task', 'task', "
    f"upper({_attr('openinference.span.kind')}) = 'EVALUATOR', 'scorer', "
    f"lower({_attr('langfuse.observation.type')}) = 'evaluator', 'scorer', "
    "'')"
)

# Provider spellings drift (`Anthropic`, `azure.ai.openai`, Vercel's `openai.chat`).
_PROVIDER_RAW = _first_text(
    ["gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system"],
    extra=[
        (
            f"{_attr('ai.model.provider')} != ''",
            f"splitByChar('.', {_attr('ai.model.provider')})[1]",
        ),
        (
            f"JSONExtractString({_attr('braintrust.metadata')}, 'provider') != ''",
            f"JSONExtractString({_attr('braintrust.metadata')}, 'provider')",
        ),
    ],
)
_PROVIDER_ALIASES = {
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure_openai": "azure",
    "azure-openai": "azure",
    "azure.ai.inference": "azure",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "amazon-bedrock": "aws",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gemini": "google",
    "google-vertex": "google",
    "mistralai": "mistral",
    "mistral_ai": "mistral",
    "google.vertex": "google",
    "x_ai": "x-ai",
    "xai": "x-ai",
}
# Vercel's legacy spans put `model.provider` (e.g. 'openai.chat', 'anthropic.messages') in
# `gen_ai.system` too: drop the API suffix. No OTel well-known provider name ends in one.
_VERCEL_API_SUFFIX = (
    "\\\\.(chat|completion|responses|embedding|messages|generative-ai|image|transcription|speech)$"
)
_PROVIDER_CLEAN = f"replaceRegexpOne(lower(trim({_PROVIDER_RAW})), '{_VERCEL_API_SUFFIX}', '')"
_PROVIDER = (
    f"transform({_PROVIDER_CLEAN}, "
    f"[{', '.join(repr(k) for k in _PROVIDER_ALIASES)}], "
    f"[{', '.join(repr(v) for v in _PROVIDER_ALIASES.values())}], "
    f"{_PROVIDER_CLEAN})"
)

_VERCEL_OP = _attr("ai.operationId")
_OPERATION = (
    "multiIf("
    f"{_attr('gen_ai.operation.name')} != '', {_attr('gen_ai.operation.name')}, "
    f"upper({_attr('openinference.span.kind')}) = 'LLM', 'chat', "
    f"upper({_attr('openinference.span.kind')}) = 'EMBEDDING', 'embeddings', "
    f"upper({_attr('openinference.span.kind')}) = 'TOOL', 'execute_tool', "
    f"upper({_attr('openinference.span.kind')}) = 'AGENT', 'invoke_agent', "
    f"{_attr('llm.request.type')} = 'chat', 'chat', "
    f"{_attr('llm.request.type')} = 'completion', 'text_completion', "
    f"{_attr('llm.request.type')} IN ('embedding', 'embeddings'), 'embeddings', "
    f"match({_VERCEL_OP}, '\\\\.do(Generate|Stream)$'), 'chat', "
    f"match({_VERCEL_OP}, '\\\\.doEmbed$'), 'embeddings', "
    f"{_VERCEL_OP} = 'ai.toolCall', 'execute_tool', "
    f"{_VERCEL_OP} != '', {_VERCEL_OP}, "
    f"lower({_attr('langfuse.observation.type')}) = 'generation', 'chat', "
    f"lower({_attr('langfuse.observation.type')}) = 'embedding', 'embeddings', "
    f"JSONExtractString({_attr(_BT_SPAN)}, 'type') = 'llm', 'chat', "
    "'')"
)

# OpenInference puts the model that *answered* in `llm.model_name` (its OpenAI instrumentation
# copies `response.model`, e.g. 'gpt-4o-mini-2024-07-18'), and the model asked for only in the
# request's JSON, `llm.invocation_parameters` (`{"model": "gpt-4o-mini", "temperature": 0}`);
# embeddings likewise (`embedding.model_name`, `embedding.invocation_parameters`). A failed call
# has no response, so only the request names its model. See _request_attributes_extractor.py
# and _response_attributes_extractor.py of openinference-instrumentation-openai
# (github.com/Arize-ai/openinference, python/instrumentation/).
_BRAINTRUST_MODEL = _nonempty(_json_text("braintrust.metadata", "model"))
_REQUEST_MODEL = _first_of(
    [
        *_present("gen_ai.request.model", "llm.request.model_name"),
        _json_string("llm.invocation_parameters", "model"),
        _json_string("embedding.invocation_parameters", "model"),
        # What answered stands in for what was asked only when the request does not say.
        *_present("llm.model_name", "embedding.model_name"),
        *_present("ai.model.id", "langfuse.observation.model.name"),
        _BRAINTRUST_MODEL,
    ]
)
_RESPONSE_MODEL = _first_of(
    _present(
        "gen_ai.response.model",
        "llm.response.model_name",
        "ai.response.model",
        "llm.model_name",
        "embedding.model_name",
    )
)

NORMALISED_COLUMNS: tuple[NormalisedColumn, ...] = (
    NormalisedColumn(
        "Purpose",
        "LowCardinality(String)",
        _PURPOSE,
        "'eval' (root of an experiment row), 'task', 'scorer' or '' (any other span).",
    ),
    NormalisedColumn(
        "ExperimentName",
        "String",
        _first_text(["evalhouse.experiment.name", "langfuse.experiment.name"]),
        "Experiment name (evalhouse or Langfuse attributes).",
    ),
    NormalisedColumn(
        "ExperimentId",
        "String",
        _first_text(["evalhouse.experiment.id", "langfuse.experiment.id"]),
        "Experiment id.",
    ),
    NormalisedColumn(
        "RowId",
        "String",
        _first_text(["evalhouse.dataset.row_id", "langfuse.experiment.item.id"]),
        "Dataset row id of an experiment row.",
    ),
    NormalisedColumn(
        "Trial",
        "UInt32",
        f"toUInt32OrZero({_attr('evalhouse.trial')})",
        "Trial number when a row is run several times.",
    ),
    NormalisedColumn("LlmProvider", "LowCardinality(String)", _PROVIDER, "Provider, lower-case."),
    NormalisedColumn(
        "LlmRequestModel", "LowCardinality(String)", _REQUEST_MODEL, "Model asked for, as reported."
    ),
    NormalisedColumn(
        "LlmResponseModel",
        "LowCardinality(String)",
        _RESPONSE_MODEL,
        "Model that answered, as reported.",
    ),
    NormalisedColumn(
        "LlmOperation",
        "LowCardinality(String)",
        _OPERATION,
        "chat, text_completion, generate_content, embeddings (model calls), execute_tool, ...",
    ),
    NormalisedColumn("InputTokens", "UInt64", _INPUT, "Input tokens including cached ones."),
    NormalisedColumn("OutputTokens", "UInt64", _OUTPUT, "Output tokens including reasoning ones."),
    NormalisedColumn(
        "CacheReadTokens", "UInt64", _tokens(_CACHE_READ), "Input tokens read from cache."
    ),
    NormalisedColumn(
        "CacheWriteTokens", "UInt64", _tokens(_CACHE_WRITE), "Input tokens written to cache."
    ),
    NormalisedColumn("ReasoningTokens", "UInt64", _REASONING, "Output tokens spent on reasoning."),
    NormalisedColumn(
        "ProvidedCostUsd",
        "Nullable(Float64)",
        _cost(),
        "Cost in USD reported by the span itself; NULL when none was reported.",
    ),
)

# The columns migration 11 changes, as it writes them (OpenInference models read apart).
MIGRATION_11_COLUMNS: tuple[NormalisedColumn, ...] = tuple(
    column
    for column in NORMALISED_COLUMNS
    if column.name in ("LlmRequestModel", "LlmResponseModel")
)

# The columns as migration 3 released them: `llm.model_name` and `embedding.model_name` read as
# the model asked for, nothing of OpenInference as the model that answered.
_RELEASED_IN_3 = {
    "LlmRequestModel": _first_text(
        [
            "gen_ai.request.model",
            "llm.request.model_name",
            "llm.model_name",
            "embedding.model_name",
            "ai.model.id",
            "langfuse.observation.model.name",
        ],
        extra=[_BRAINTRUST_MODEL],
    ),
    "LlmResponseModel": _first_text(
        ["gen_ai.response.model", "llm.response.model_name", "ai.response.model"]
    ),
}
MIGRATION_3_COLUMNS: tuple[NormalisedColumn, ...] = tuple(
    replace(column, expression=_RELEASED_IN_3.get(column.name, column.expression))
    for column in NORMALISED_COLUMNS
)
