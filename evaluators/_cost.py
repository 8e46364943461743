"""Cost of model calls in USD: provided when a span carries it, else inferred offline.

Inference uses the price snapshot bundled with the ``genai-prices`` package, read through a
snapshot object of our own: nothing is downloaded, and an ``UpdatePrices`` started elsewhere
in the process cannot change our figures (``evalhouse reprice`` is how users take new prices,
after upgrading the package). Rules (docs/sql.md, "Normalised LLM columns"):

- a provided cost wins over inference;
- cache reads and cache writes are priced at their own rates, the rest of the input at the
  input rate; reasoning tokens at their own rate where the data has one;
- the request time selects historical prices;
- an unknown model or provider is "unknown" (no USD), never $0.

The daemon prices every model-call span of large experiments, so lookups are cached per
(provider, model, day) and the arithmetic runs on rates read once from the data; a test checks
it against the package's own ``calc_price`` for every model in the data.

>>> from datetime import datetime, timezone
>>> cost = span_cost(provider="openai", request_model="gpt-4o", response_model="",
...                  usage=Usage(input_tokens=1000, output_tokens=100), provided_usd=None,
...                  at=datetime(2025, 6, 1, tzinfo=timezone.utc))
>>> cost.provenance, cost.usd is not None
('inferred', True)
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from functools import cache, lru_cache
from importlib.resources import files

from genai_prices import types as gp
from genai_prices.data_snapshot import DataSnapshot

from evalhouse.evaluators import _models

__all__ = ["RowCost", "SpanCost", "Usage", "price_data_version", "row_cost", "span_cost"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Usage:
    """Token usage of one model call, normalised (pitfall 2).

    ``input_tokens`` is the input total, cache reads and writes included; ``output_tokens`` the
    output total, reasoning included.

    >>> Usage(input_tokens=1200, cache_read_tokens=1000, output_tokens=50).cache_read_tokens
    1000
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0


@dataclass(frozen=True)
class SpanCost:
    """Cost of one model call; ``usd`` is None when it is unknown.

    ``provenance`` is "provided" (the span carried it), "inferred" (priced from the data) or
    "unknown".

    >>> SpanCost(usd=None, provenance="unknown").usd is None
    True
    """

    usd: float | None
    provenance: str


@dataclass(frozen=True)
class RowCost:
    """Cost of one experiment row (the sum over its model calls).

    ``usd`` is None unless every call's cost is known; ``known_usd`` sums the known part.
    ``provenance``: "provided" (every call carried its cost), "inferred" (every cost known, some
    inferred), "partly_unknown", "unknown" (no call's cost known) or "none" (no model calls).

    >>> RowCost(usd=0.0, known_usd=0.0, provenance="none").usd
    0.0
    """

    usd: float | None
    known_usd: float
    provenance: str


_UNKNOWN = SpanCost(usd=None, provenance="unknown")
_MTOK = Decimal(1_000_000)
_KCOUNT = Decimal(1_000)


def span_cost(
    *,
    provider: str,
    request_model: str,
    response_model: str,
    usage: Usage,
    provided_usd: float | None,
    at: datetime,
) -> SpanCost:
    """Cost of one model-call span.

    ``provider``, ``request_model`` and ``response_model`` as the span spells them ("" when
    absent); the response model is used when it is priced, else the request model. ``at`` is
    the request time (naive means UTC) and selects historical prices.

    >>> from datetime import datetime
    >>> span_cost(provider="anthropic", request_model="claude-3-5-sonnet-20241022",
    ...           response_model="", usage=Usage(input_tokens=10), provided_usd=0.5,
    ...           at=datetime(2025, 1, 1))
    SpanCost(usd=0.5, provenance='provided')
    """
    if provided_usd is not None:
        if math.isfinite(provided_usd) and provided_usd >= 0:
            return SpanCost(usd=float(provided_usd), provenance="provided")
        logger.debug("ignoring provided cost %r: not a finite non-negative number", provided_usd)
    model = _priced_model(provider, response_model, request_model)
    if model is None:
        return _UNKNOWN
    if not _consistent(usage):
        _warn_inconsistent(provider, response_model or request_model, usage)
        return _UNKNOWN
    rates = model.rates(at)
    if rates is None:
        return _UNKNOWN
    if usage.input_tokens == 0 and usage.output_tokens == 0:
        return SpanCost(usd=0.0, provenance="inferred")
    return SpanCost(usd=rates.usd(usage), provenance="inferred")


def row_cost(costs: Iterable[SpanCost]) -> RowCost:
    """Sum span costs into a row cost; unknown parts make the row's ``usd`` None.

    >>> row_cost([SpanCost(0.5, "provided"), SpanCost(None, "unknown")])
    RowCost(usd=None, known_usd=0.5, provenance='partly_unknown')
    >>> row_cost([])
    RowCost(usd=0.0, known_usd=0.0, provenance='none')
    """
    known: list[float] = []
    unknown = 0
    provided_only = True
    for cost in costs:
        if cost.usd is None:
            unknown += 1
            continue
        known.append(cost.usd)
        provided_only = provided_only and cost.provenance == "provided"
    known_usd = math.fsum(known)
    if not known and not unknown:
        return RowCost(usd=0.0, known_usd=0.0, provenance="none")
    if unknown:
        provenance = "partly_unknown" if known else "unknown"
        return RowCost(usd=None, known_usd=known_usd, provenance=provenance)
    return RowCost(
        usd=known_usd, known_usd=known_usd, provenance="provided" if provided_only else "inferred"
    )


@cache
def price_data_version() -> str:
    """Identifies the price snapshot in use: the package version and a digest of its data.

    Stored with every row, so ``evalhouse reprice`` can tell which rows were priced with older
    data.

    >>> price_data_version().startswith("genai-prices ")
    True
    """
    import genai_prices

    digest = hashlib.sha256()
    package = files("genai_prices")
    for name in ("data.py", "data_units.py"):
        digest.update(package.joinpath(name).read_bytes())
    return f"genai-prices {genai_prices.__version__} data {digest.hexdigest()[:12]}"


# --- lookups --------------------------------------------------------------------------------


@cache
def _snapshot() -> DataSnapshot:
    # Our own snapshot of the bundled data: `genai_prices.calc_price` would follow a snapshot
    # fetched by an `UpdatePrices` running anywhere in the process.
    from genai_prices.data import providers

    return DataSnapshot(providers=providers, from_auto_update=False)


@cache
def _provider_ids() -> frozenset[str]:
    return frozenset(provider.id for provider in _snapshot().providers)


@dataclass(frozen=True)
class _Price:
    """One per-token rate, flat or tiered on the input total (the data's "cliff" tiers)."""

    base: Decimal
    tiers: tuple[tuple[int, Decimal], ...] = ()  # (start, price), highest start first

    def at(self, input_total: int) -> Decimal:
        for start, price in self.tiers:
            if input_total > start:
                return price
        return self.base


@dataclass(frozen=True)
class _Rates:
    """The per-token rates of one model price, read once from the data."""

    input: _Price | None
    output: _Price | None
    cache_read: _Price | None
    cache_write: _Price | None
    reasoning: _Price | None
    per_request: Decimal

    def usd(self, usage: Usage) -> float:
        # The data's arithmetic: each priced unit pays for its own tokens, and a parent unit
        # (input, output) only for what its priced sub-units (cache, reasoning) leave.
        n_in = usage.input_tokens
        total = self.per_request
        plain_input = n_in
        if self.cache_read is not None:
            total += self.cache_read.at(n_in) * usage.cache_read_tokens / _MTOK
            plain_input -= usage.cache_read_tokens
        if self.cache_write is not None:
            total += self.cache_write.at(n_in) * usage.cache_write_tokens / _MTOK
            plain_input -= usage.cache_write_tokens
        if self.input is not None:
            total += self.input.at(n_in) * plain_input / _MTOK
        plain_output = usage.output_tokens
        if self.reasoning is not None:
            total += self.reasoning.at(n_in) * usage.reasoning_tokens / _MTOK
            plain_output -= usage.reasoning_tokens
        if self.output is not None:
            total += self.output.at(n_in) * plain_output / _MTOK
        return float(total)


def _price(value: object) -> _Price | None:
    if isinstance(value, Decimal):
        return _Price(base=value)
    if isinstance(value, gp.TieredPrices):
        tiers = sorted(((t.start, t.price) for t in value.tiers), reverse=True)
        return _Price(base=value.base, tiers=tuple(tiers))
    return None


def _compile(model_price: gp.ModelPrice) -> _Rates | None:
    """Rates for the usage we report; None when the model has no per-token prices."""
    rates = _Rates(
        input=_price(model_price.input_mtok),
        output=_price(model_price.output_mtok),
        cache_read=_price(model_price.cache_read_mtok),
        cache_write=_price(model_price.cache_write_mtok),
        reasoning=_price(model_price.output_reasoning_mtok),
        per_request=_per_request(model_price.requests_kcount),
    )
    # Audio-hour, page or search-priced models cannot be priced from token counts.
    return None if rates.input is None and rates.output is None else rates


def _per_request(value: object) -> Decimal:
    return value / _KCOUNT if isinstance(value, Decimal) else Decimal(0)


@dataclass(frozen=True)
class _PricedModel:
    """A model the data knows, with the provider it was found under."""

    provider_id: str
    model_id: str
    info: gp.ModelInfo = field(compare=False, hash=False, repr=False)
    time_of_day: bool = field(compare=False, hash=False)

    def rates(self, at: datetime) -> _Rates | None:
        if self.time_of_day:
            # Off-peak prices change within a day: resolve per call, compile once per price.
            return _compiled(self.info.get_prices(at))
        utc = at.astimezone(UTC) if at.tzinfo is not None else at
        return _rates_on(self, utc.date())


@lru_cache(maxsize=65_536)
def _rates_on(model: _PricedModel, day: date) -> _Rates | None:
    # Start-date constraints compare UTC dates, so one lookup serves a whole day.
    return _compile(model.info.get_prices(datetime.combine(day, time(), UTC)))


_compiled_by_price: dict[int, tuple[gp.ModelPrice, _Rates | None]] = {}


def _compiled(model_price: gp.ModelPrice) -> _Rates | None:
    # Keyed by identity: the data's price objects live as long as the snapshot (kept in the
    # value so the id cannot be reused).
    entry = _compiled_by_price.get(id(model_price))
    if entry is None:
        entry = _compiled_by_price[id(model_price)] = (model_price, _compile(model_price))
    return entry[1]


@lru_cache(maxsize=4_096)
def _priced_model(provider: str, response_model: str, request_model: str) -> _PricedModel | None:
    snapshot = _snapshot()
    known = _provider_ids()
    named = _models.provider_id(provider, known=known)
    for model in (response_model, request_model):
        if named is not None:
            providers: tuple[str | None, ...] = (named,)
        else:
            # No provider named: the model id may name one, else the data infers it.
            providers = (_models.provider_hint(model, known=known), None)
        for ref in _models.model_refs(model):
            for provider_id in dict.fromkeys(providers):
                try:
                    found, info = snapshot.find_provider_model(ref, None, provider_id, None)
                except LookupError:
                    continue
                return _PricedModel(
                    provider_id=found.id,
                    model_id=info.id,
                    info=info,
                    time_of_day=_has_time_of_day_prices(info),
                )
    return None


def _has_time_of_day_prices(info: gp.ModelInfo) -> bool:
    if isinstance(info.prices, gp.ModelPrice):
        return False
    return any(isinstance(p.constraint, gp.TimeOfDateConstraint) for p in info.prices)


def _consistent(usage: Usage) -> bool:
    counts = (
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_tokens,
        usage.cache_write_tokens,
        usage.reasoning_tokens,
    )
    return (
        min(counts) >= 0
        and usage.cache_read_tokens + usage.cache_write_tokens <= usage.input_tokens
        and usage.reasoning_tokens <= usage.output_tokens
    )


_warned: set[tuple[str, str]] = set()


def _warn_inconsistent(provider: str, model: str, usage: Usage) -> None:
    # Once per model: a bad exporter repeats the same mistake on every span.
    key = (provider, model)
    if key in _warned or len(_warned) >= 1_000:
        return
    _warned.add(key)
    logger.warning(
        "cost of %s/%s spans left unknown: usage %s is inconsistent (cache tokens must be part "
        "of input_tokens, reasoning part of output_tokens); fix the token counts the exporter "
        "sends, then run `evalhouse reprice`",
        provider,
        model,
        usage,
    )
