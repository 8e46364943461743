"""Provider and model names as spans spell them, mapped to the names the price data uses.

The same provider or model reaches us under many spellings (pitfall 4 in
docs/sql.md, "Normalised LLM columns"): ``Anthropic`` and ``anthropic``, ``azure`` and
``azure.ai.openai``, OpenInference and Vercel AI SDK names such as ``openai.chat`` or
``anthropic.messages``, model ids with a provider prefix (``openai/gpt-4o``), a Bedrock region
and vendor (``us.anthropic.claude-3-5-sonnet-20241022-v2:0``) or a Vertex version
(``claude-3-5-sonnet-v2@20241022``). This module only rewrites strings; the price lookup
(:mod:`evalhouse.evaluators._cost`) tries the spellings in order and keeps the first that the
price data knows.

>>> provider_id("azure.ai.openai", known=())
'azure'
>>> model_refs("us.anthropic.claude-3-5-sonnet-20241022-v2:0")[-1]
'claude-3-5-sonnet-20241022'
"""

from __future__ import annotations

import re
from collections.abc import Collection

__all__ = ["model_refs", "provider_hint", "provider_id"]

# Every spelling below names the genai-prices provider id on the right. Sources: OTel GenAI
# `gen_ai.provider.name` and the older `gen_ai.system` values, OpenInference `llm.provider` /
# `llm.system`, Vercel AI SDK `ai.model.provider` (whose first dotted part is the provider).
_PROVIDERS: dict[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure",
    "az": "azure",
    "azureopenai": "azure",
    "aws": "aws",
    "amazon": "aws",
    "bedrock": "aws",
    "google": "google",
    "gcp": "google",
    "gemini": "google",
    "vertex": "google",
    "vertexai": "google",
    "mistral": "mistral",
    "mistralai": "mistral",
    "xai": "x-ai",
    "x-ai": "x-ai",
    "x_ai": "x-ai",
    "grok": "x-ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "cohere": "cohere",
    "perplexity": "perplexity",
    "together": "together",
    "togetherai": "together",
    "fireworks": "fireworks",
    "openrouter": "openrouter",
    "cerebras": "cerebras",
    "moonshot": "moonshotai",
    "moonshotai": "moonshotai",
    "voyage": "voyageai",
    "voyageai": "voyageai",
    "zhipu": "zhipuai",
    "zhipuai": "zhipuai",
}

# Gateways that name the real provider inside the model id (`openai/gpt-4o`).
_GATEWAYS = frozenset({"litellm"})

_SEPARATORS = re.compile(r"[\s._/:-]+")

# Bedrock model ids: optional cross-region inference prefix, then the vendor
# (https://docs.aws.amazon.com/bedrock/latest/userguide/inference-profiles-support.html).
_BEDROCK_PREFIX = re.compile(
    r"^(?:(?:us|us-gov|eu|apac|ap|jp|au|ca|global)\.)?"
    r"(?:anthropic|amazon|meta|mistral|cohere|ai21|deepseek|openai|qwen|writer|moonshotai)\."
)
# Bedrock's `-v2:0` (model version and revision) after the model name.
_BEDROCK_REVISION = re.compile(r"(?:-v\d+)?:\d+$")


def _clean(name: str) -> str:
    return name.strip().lower()


def provider_id(name: str, *, known: Collection[str]) -> str | None:
    """The price-data provider id for a provider spelling, or None when no provider is named.

    ``known`` holds the ids the price data has; an exact id is kept as it is. An unrecognised
    name comes back cleaned (lower case), so the price data's own matching still gets a chance
    and an unknown provider stays unknown. Gateways such as LiteLLM give None: the provider is
    then read from the model id.

    >>> provider_id("openai.chat", known=())
    'openai'
    >>> provider_id("", known=()) is None
    True
    """
    cleaned = _clean(name)
    if not cleaned or cleaned in _GATEWAYS:
        return None
    if cleaned in known:
        return cleaned
    if mapped := _PROVIDERS.get(cleaned):
        return mapped
    # `openai.chat`, `anthropic.messages`, `azure.ai.openai`, `aws.bedrock`, `gcp.vertex_ai`.
    first = _SEPARATORS.split(cleaned, maxsplit=1)[0]
    return _PROVIDERS.get(first, cleaned)


def provider_hint(model: str, *, known: Collection[str]) -> str | None:
    """The provider a model id itself names, for spans that name no provider.

    >>> provider_hint("openai/gpt-4o", known=())
    'openai'
    >>> provider_hint("us.anthropic.claude-3-5-sonnet-20241022-v2:0", known=())
    'aws'
    >>> provider_hint("gpt-4o", known=()) is None
    True
    """
    cleaned = _clean(model)
    if "/" in cleaned:
        prefix = cleaned.split("/", 1)[0]
        if prefix in known:
            return prefix
        if mapped := _PROVIDERS.get(prefix):
            return mapped
    last = cleaned.rsplit("/", 1)[-1]
    if _BEDROCK_PREFIX.match(last):
        return "aws"
    return None


def model_refs(model: str) -> tuple[str, ...]:
    """Spellings of a model id to look up, the exact one first, then ever more reduced.

    Only decorations are removed (provider prefix, Bedrock region/vendor/revision, Vertex
    ``@version``); a model name is never shortened to a different model. Fine-tuned ids
    (``ft:...``) keep their own name: they cost more than their base model.

    >>> model_refs("openai/gpt-4o")
    ('openai/gpt-4o', 'gpt-4o')
    >>> model_refs("gpt-4o@2024-08-06")
    ('gpt-4o@2024-08-06', 'gpt-4o-2024-08-06', 'gpt-4o')
    """
    ref = _clean(model)
    if not ref:
        return ()
    refs = [ref]
    if ref.startswith("ft:"):
        return tuple(refs)

    def add(candidate: str) -> None:
        if candidate and candidate not in refs:
            refs.append(candidate)

    if "@" in ref:
        # Vertex AI: `claude-3-5-sonnet-v2@20241022`; the dated form may carry its own price.
        add(ref.replace("@", "-"))
        ref = ref.split("@", 1)[0]
        add(ref)
    if "/" in ref:
        ref = ref.rsplit("/", 1)[1]
        add(ref)
    if prefix := _BEDROCK_PREFIX.match(ref):
        ref = ref[prefix.end() :]
        add(ref)
    if revision := _BEDROCK_REVISION.search(ref):
        ref = ref[: revision.start()]
        add(ref)
    return tuple(refs)
