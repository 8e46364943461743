"""Cost of model calls: provided cost first, else inferred offline from genai-prices' data.

Expected dollars are derived in the tests from the package's own published per-token rates
(``genai_prices.data``) or from its own ``calc_price``, never typed in by hand.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal

import genai_prices
import pytest
from genai_prices import types as gp
from genai_prices.data import providers
from genai_prices.data_snapshot import DataSnapshot, set_custom_snapshot

from evalhouse.evaluators._cost import (
    RowCost,
    SpanCost,
    Usage,
    price_data_version,
    row_cost,
    span_cost,
)
from evalhouse.evaluators._models import model_refs, provider_hint, provider_id

AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
MTOK = Decimal(1_000_000)
USAGE = Usage(
    input_tokens=12_000,
    output_tokens=900,
    cache_read_tokens=8_000,
    cache_write_tokens=2_500,
    reasoning_tokens=300,
)
KNOWN_IDS = frozenset(p.id for p in providers)


def published(provider: str, model: str, at: datetime = AT) -> gp.ModelPrice:
    """The data's price for one model (by its id in the data) at a time."""
    found = next(p for p in providers if p.id == provider)
    return next(m for m in found.models if m.id == model).get_prices(at)


def rate(price: gp.ModelPrice, key: str) -> Decimal:
    value = getattr(price, key)
    assert isinstance(value, Decimal), f"{key} is {value!r}: expected a flat per-token rate"
    return value


def cost(provider: str, model: str, usage: Usage = USAGE, **kwargs: object) -> SpanCost:
    arguments: dict[str, object] = {
        "provider": provider,
        "request_model": model,
        "response_model": "",
        "usage": usage,
        "provided_usd": None,
        "at": AT,
    }
    arguments.update(kwargs)
    return span_cost(**arguments)  # type: ignore[arg-type]


def genai_usage(usage: Usage) -> gp.Usage:
    return gp.Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_read_tokens=usage.cache_read_tokens,
        cache_write_tokens=usage.cache_write_tokens,
        output_reasoning_tokens=usage.reasoning_tokens,
    )


# --- exact prices -----------------------------------------------------------------------------


def test_known_model_costs_exactly_its_published_rates() -> None:
    price = published("openai", "gpt-4o")
    usage = Usage(input_tokens=12_000, output_tokens=900, cache_read_tokens=8_000)
    expected = (
        (12_000 - 8_000) * rate(price, "input_mtok")
        + 8_000 * rate(price, "cache_read_mtok")
        + 900 * rate(price, "output_mtok")
    ) / MTOK

    assert cost("openai", "gpt-4o", usage) == SpanCost(float(expected), "inferred")


def test_cache_reads_and_writes_are_priced_at_their_own_rates() -> None:
    price = published("anthropic", "claude-3-5-sonnet")
    read, write, plain = (
        rate(price, k) for k in ("cache_read_mtok", "cache_write_mtok", "input_mtok")
    )
    assert read < plain < write, "the data no longer makes this model's cache rates differ"
    uncached = USAGE.input_tokens - USAGE.cache_read_tokens - USAGE.cache_write_tokens
    expected = (
        uncached * plain
        + USAGE.cache_read_tokens * read
        + USAGE.cache_write_tokens * write
        + USAGE.output_tokens * rate(price, "output_mtok")
    ) / MTOK
    naive = (USAGE.input_tokens * plain + USAGE.output_tokens * rate(price, "output_mtok")) / MTOK

    got = cost("anthropic", "claude-3-5-sonnet-20241022")

    assert got == SpanCost(float(expected), "inferred")
    assert got.usd != float(naive)
    # Reads save more than writes add here, so pricing every input token as plain input
    # overstates this call by exactly the difference of the rates.
    saved = (
        USAGE.cache_read_tokens * (plain - read) - USAGE.cache_write_tokens * (write - plain)
    ) / MTOK
    assert float(naive - expected) == float(saved)


def test_every_model_in_the_data_costs_what_genai_prices_calc_price_says() -> None:
    usages = [
        USAGE,
        Usage(input_tokens=1_000, output_tokens=50),
        # Past the 200k "cliff" of tiered models (every token at the higher tier rate).
        Usage(250_000, 4_000, cache_read_tokens=100_000, cache_write_tokens=20_000),
    ]
    compared = unpriceable = 0
    for provider in providers:
        for model in provider.models:
            for at in _interesting_times(model):
                for usage in usages:
                    try:
                        expected = genai_prices.calc_price(
                            genai_usage(usage),
                            model.id,
                            provider_id=provider.id,
                            genai_request_timestamp=at,
                        )
                    except LookupError:
                        continue  # the model's id does not match its own match rule
                    got = cost(provider.id, model.id, usage, at=at)
                    price = expected.model_price
                    if price.input_mtok is None and price.output_mtok is None:
                        assert got == SpanCost(None, "unknown"), (provider.id, model.id)
                        unpriceable += 1
                        continue
                    assert got == SpanCost(float(expected.total_price), "inferred"), (
                        provider.id,
                        model.id,
                        at,
                        usage,
                    )
                    compared += 1
    assert compared > 5_000
    assert unpriceable > 0


def _interesting_times(model: gp.ModelInfo) -> list[datetime]:
    times = [AT]
    if isinstance(model.prices, list):
        for conditional in model.prices:
            constraint = conditional.constraint
            if isinstance(constraint, gp.StartDateConstraint):
                start = datetime.combine(constraint.start_date, time(12), UTC)
                times += [start, start - timedelta(days=1)]
            elif isinstance(constraint, gp.TimeOfDateConstraint):
                inside = datetime.combine(date(2026, 10, 1), constraint.start_time)
                times += [inside, inside - timedelta(minutes=1)]
    return times


def test_request_time_selects_historical_prices() -> None:
    # o3's price was cut in 2025; read the change from the data rather than trusting memory.
    o3 = next(m for m in published_models("openai") if m.id == "o3")
    assert isinstance(o3.prices, list), "the data has no price change for o3 any more"
    changes = [
        p.constraint.start_date
        for p in o3.prices
        if isinstance(p.constraint, gp.StartDateConstraint)
    ]
    assert changes, "the data has no price change for o3 any more"
    after = datetime.combine(changes[0], time(0, 30), UTC)
    before = after - timedelta(hours=1)
    usage = Usage(input_tokens=10_000, output_tokens=2_000)

    def expected(at: datetime) -> float:
        price = published("openai", "o3", at)
        return float(
            (10_000 * rate(price, "input_mtok") + 2_000 * rate(price, "output_mtok")) / MTOK
        )

    assert expected(before) != expected(after)
    assert cost("openai", "o3", usage, at=before).usd == expected(before)
    assert cost("openai", "o3", usage, at=after).usd == expected(after)
    # Naive datetimes are UTC; an aware one in another zone is converted, not read as UTC.
    assert cost("openai", "o3", usage, at=before.replace(tzinfo=None)).usd == expected(before)
    plus_two = after.astimezone(timezone(timedelta(hours=2)))
    assert cost("openai", "o3", usage, at=plus_two).usd == expected(after)


def published_models(provider: str) -> list[gp.ModelInfo]:
    return next(p for p in providers if p.id == provider).models


# --- names ------------------------------------------------------------------------------------

SONNET = "claude-3-5-sonnet-20241022"
BEDROCK_SONNET = "us.anthropic.claude-3-5-sonnet-20241022-v2:0"


@pytest.mark.parametrize(
    ("drifted", "canonical"),
    [
        (("Anthropic", SONNET), ("anthropic", SONNET)),
        (("ANTHROPIC ", SONNET), ("anthropic", SONNET)),
        (("azure.ai.openai", "gpt-4o"), ("azure", "gpt-4o")),
        (("az.ai.openai", "gpt-4o"), ("azure", "gpt-4o")),
        (("openai.chat", "gpt-4o"), ("openai", "gpt-4o")),
        (("openai.responses", "gpt-4o"), ("openai", "gpt-4o")),
        (("anthropic.messages", SONNET), ("anthropic", SONNET)),
        (("gcp.vertex_ai", "claude-3-5-sonnet-v2@20241022"), ("google", SONNET)),
        (("openai", "openai/gpt-4o"), ("openai", "gpt-4o")),
        (("", "openai/gpt-4o"), ("openai", "gpt-4o")),
        (("litellm", "openai/gpt-4o"), ("openai", "gpt-4o")),
        (("", "gpt-4o"), ("openai", "gpt-4o")),
        (("aws.bedrock", BEDROCK_SONNET), ("aws", BEDROCK_SONNET.removeprefix("us."))),
        (("", BEDROCK_SONNET), ("aws", BEDROCK_SONNET.removeprefix("us."))),
        (("anthropic", BEDROCK_SONNET), ("anthropic", SONNET)),
        (("openai", "GPT-4o@2024-08-06"), ("openai", "gpt-4o-2024-08-06")),
        (("x_ai", "grok-3"), ("x-ai", "grok-3")),
        (("mistral_ai", "mistral-large-latest"), ("mistral", "mistral-large-latest")),
    ],
)
def test_name_drift_prices_like_the_canonical_spelling(
    drifted: tuple[str, str], canonical: tuple[str, str]
) -> None:
    expected = genai_prices.calc_price(
        genai_usage(USAGE),
        canonical[1],
        provider_id=canonical[0],
        genai_request_timestamp=AT,
    )

    got = cost(*drifted)

    assert got == SpanCost(float(expected.total_price), "inferred")


def test_dated_model_id_uses_the_price_the_data_gives_that_date() -> None:
    # gpt-4o-2024-05-13 has a price of its own, so a dated id must not be shortened to gpt-4o.
    dated, current = published("openai", "gpt-4o-2024-05-13"), published("openai", "gpt-4o")
    assert rate(dated, "input_mtok") != rate(current, "input_mtok")
    usage = Usage(input_tokens=1_000, output_tokens=100)
    expected = (1_000 * rate(dated, "input_mtok") + 100 * rate(dated, "output_mtok")) / MTOK

    assert cost("openai", "gpt-4o-2024-05-13", usage).usd == float(expected)


def test_fine_tuned_model_gets_its_own_price_not_its_base_models() -> None:
    tuned, base = published("openai", "ft:gpt-4o-mini"), published("openai", "gpt-4o-mini")
    assert rate(tuned, "input_mtok") != rate(base, "input_mtok")
    usage = Usage(input_tokens=1_000, output_tokens=100)
    expected = (1_000 * rate(tuned, "input_mtok") + 100 * rate(tuned, "output_mtok")) / MTOK

    assert cost("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123", usage).usd == float(expected)


def test_response_model_is_preferred_when_priced_else_request_model() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=100)
    by_response = cost("openai", "gpt-4o", usage, response_model="gpt-4o-2024-05-13")
    assert by_response == cost("openai", "gpt-4o-2024-05-13", usage)
    assert by_response != cost("openai", "gpt-4o", usage)

    unpriced_response = cost("openai", "gpt-4o", usage, response_model="my-deployment-7")
    assert unpriced_response == cost("openai", "gpt-4o", usage)
    only_response = cost("openai", "", usage, response_model="gpt-4o")
    assert only_response == cost("openai", "gpt-4o", usage)


def test_provider_spellings_map_to_price_data_ids() -> None:
    cases = {
        "Anthropic": "anthropic",
        "azure": "azure",
        "azure.ai.openai": "azure",
        "azure.ai.inference": "azure",
        "aws.bedrock": "aws",
        "amazon-bedrock": "aws",
        "gcp.gemini": "google",
        "gcp.gen_ai": "google",
        "google.generative-ai": "google",
        "vertex_ai": "google",
        "openai.chat": "openai",
        "xai": "x-ai",
        "groq.chat": "groq",
        "togetherai.chat": "together",
        "huggingface_together": "huggingface_together",
        "github-copilot": "github-copilot",
        "ibm.watsonx.ai": "ibm.watsonx.ai",
    }
    assert {name: provider_id(name, known=KNOWN_IDS) for name in cases} == cases
    assert provider_id("  ", known=KNOWN_IDS) is None
    assert provider_id("LiteLLM", known=KNOWN_IDS) is None


def test_every_mapped_provider_exists_in_the_price_data() -> None:
    spellings = ["openai", "anthropic", "az", "aws", "gcp", "mistralai", "x_ai", "grok", "groq"]
    spellings += ["deepseek", "cohere", "perplexity", "togetherai", "fireworks", "openrouter"]
    spellings += ["cerebras", "moonshot", "voyage", "zhipu", "bedrock", "gemini"]
    assert {provider_id(s, known=()) for s in spellings} <= KNOWN_IDS


def test_model_refs_strip_only_decorations() -> None:
    assert model_refs(BEDROCK_SONNET) == (
        BEDROCK_SONNET,
        "claude-3-5-sonnet-20241022-v2:0",
        "claude-3-5-sonnet-20241022",
    )
    assert model_refs("models/gemini-1.5-pro") == ("models/gemini-1.5-pro", "gemini-1.5-pro")
    assert model_refs("claude-3-5-sonnet-v2@20241022") == (
        "claude-3-5-sonnet-v2@20241022",
        "claude-3-5-sonnet-v2-20241022",
        "claude-3-5-sonnet-v2",
    )
    # A fine-tuned model costs more than its base: never priced as the base model.
    assert model_refs("ft:gpt-4o-mini-2024-07-18:acme::abc123") == (
        "ft:gpt-4o-mini-2024-07-18:acme::abc123",
    )
    assert model_refs("  ") == ()
    assert provider_hint("anthropic/claude-3-5-sonnet", known=KNOWN_IDS) == "anthropic"
    assert provider_hint("meta-llama/llama-3-8b", known=KNOWN_IDS) is None


# --- unknown, zero, provided, inconsistent -------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-unreleased-9"),
        ("", "my-local-model"),
        ("ibm.watsonx.ai", "gpt-4o"),  # a provider the data lacks, even for a known model name
        ("my-gateway", "gpt-4o"),
        ("openai", ""),
        # Fine-tuned models cost more than their base; this one has no price in the data.
        ("openai", "ft:o4-mini-2025-04-16:acme::abc123"),
        ("mistral", "mistral-ocr-latest"),  # priced per page, not per token
    ],
)
def test_unknown_model_or_provider_is_unknown_not_zero(provider: str, model: str) -> None:
    assert cost(provider, model) == SpanCost(None, "unknown")
    assert cost(provider, model, Usage()) == SpanCost(None, "unknown")


def test_zero_tokens_cost_zero_only_for_a_known_model() -> None:
    assert cost("openai", "gpt-4o", Usage()) == SpanCost(0.0, "inferred")
    assert cost("openai", "no-such-model", Usage()) == SpanCost(None, "unknown")


def test_provided_cost_wins_over_inference() -> None:
    inferred = cost("openai", "gpt-4o")
    assert inferred.usd is not None
    provided = inferred.usd * 3

    assert cost("openai", "gpt-4o", provided_usd=provided) == SpanCost(provided, "provided")
    assert cost("openai", "gpt-4o", provided_usd=0.0) == SpanCost(0.0, "provided")
    assert cost("nobody", "unknown-model", provided_usd=0.25) == SpanCost(0.25, "provided")
    # A cost that cannot be a cost is ignored, and the call is priced as if none was given.
    assert cost("openai", "gpt-4o", provided_usd=float("nan")) == inferred
    assert cost("openai", "gpt-4o", provided_usd=-1.0) == inferred


def test_inconsistent_usage_is_unknown_and_says_how_to_fix_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="evalhouse.evaluators._cost")
    # Cache tokens outside the input total (Langfuse's / Anthropic's raw counting).
    bad = Usage(input_tokens=100, output_tokens=10, cache_read_tokens=900)

    assert cost("anthropic", "claude-3-5-haiku-20241022", bad) == SpanCost(None, "unknown")
    assert (
        cost("anthropic", "claude-3-5-haiku-20241022", Usage(5, 1, reasoning_tokens=2)).usd is None
    )
    assert cost("anthropic", "claude-3-5-haiku-20241022", Usage(-5, 1)).usd is None
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, "one warning per model, not one per span"
    assert "inconsistent" in messages[0] and "reprice" in messages[0]


# --- rows -------------------------------------------------------------------------------------


def test_row_cost_provenance() -> None:
    provided, inferred = SpanCost(0.25, "provided"), SpanCost(0.5, "inferred")
    unknown, free = SpanCost(None, "unknown"), SpanCost(0.0, "inferred")

    assert row_cost([]) == RowCost(0.0, 0.0, "none")
    assert row_cost([provided, provided]) == RowCost(0.5, 0.5, "provided")
    assert row_cost([provided, inferred]) == RowCost(0.75, 0.75, "inferred")
    assert row_cost([free]) == RowCost(0.0, 0.0, "inferred")
    assert row_cost([inferred, unknown, provided]) == RowCost(None, 0.75, "partly_unknown")
    assert row_cost([unknown, unknown]) == RowCost(None, 0.0, "unknown")
    assert row_cost(iter([inferred, inferred])) == RowCost(1.0, 1.0, "inferred")


def test_row_cost_sums_without_float_drift() -> None:
    assert row_cost([SpanCost(0.1, "inferred")] * 10).usd == 1.0


# --- price data -------------------------------------------------------------------------------


def test_price_data_version_is_stable_and_names_the_package() -> None:
    version = price_data_version()
    assert version == price_data_version()
    assert version.startswith(f"genai-prices {genai_prices.__version__} data ")
    assert len(version.rsplit(" ", 1)[1]) == 12


def test_prices_come_from_the_bundled_data_only() -> None:
    version = price_data_version()
    # A spelling and a day no other test prices, so nothing comes from a cache.
    at = datetime(2025, 7, 4, 9, tzinfo=UTC)
    # What `UpdatePrices` does after a download: swap the process-wide snapshot.
    set_custom_snapshot(DataSnapshot(providers=[], from_auto_update=True))
    try:
        with pytest.raises(LookupError):
            genai_prices.calc_price(genai_usage(USAGE), "gpt-4o-mini", provider_id="openai")
        during = cost("OpenAI.chat.completions", "GPT-4o-mini", at=at)
        assert price_data_version() == version
    finally:
        set_custom_snapshot(None)
    bundled = genai_prices.calc_price(
        genai_usage(USAGE), "gpt-4o-mini", provider_id="openai", genai_request_timestamp=at
    )
    assert during == SpanCost(float(bundled.total_price), "inferred")
    assert not [t for t in threading.enumerate() if t.name.startswith("genai_prices")]
