"""What a replay is asked to do: the cohort, the models, the scorers, the limits.

One type read from a JSON body (``POST /api/replays``) or from the command line (which builds
the same body), each refusal naming the field and what to give instead.

>>> spec = ReplaySpec.from_json({"filter": "tag:support", "models": ["openai:gpt-4o-mini"]})
>>> spec.targets[0].model, spec.since
('gpt-4o-mini', '7d')
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from evalhouse.dataset_rows import NAME_RULE
from evalhouse.errors import InvalidRequest

__all__ = ["PROVIDERS", "REPLAY_USAGE", "ReplaySpec", "Target", "parse_target"]

PROVIDERS = ("openai", "anthropic")
REPLAY_USAGE = (
    '{"filter": "tag:support", "since": "7d", "limit": 200, '
    '"models": ["openai:gpt-4o-mini", "openai:gpt-4.1-nano"], "base_url": "...", '
    '"scorers": ["exact_match"], "concurrency": 16, "budget_usd": 5, "name": "cheaper"}'
)
MAX_CALLS = 100_000
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,80}")
_FIELDS = (
    "filter",
    "where",
    "since",
    "until",
    "limit",
    "models",
    "base_url",
    "scorers",
    "concurrency",
    "budget_usd",
    "name",
)


@dataclass(frozen=True)
class Target:
    """One model a cohort is replayed on: ``provider:model``."""

    provider: str
    model: str

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"

    @property
    def slug(self) -> str:
        """The model as an experiment name's last part (``gpt-4o-mini``)."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.model).strip("-") or "model"


def parse_target(text: str) -> Target:
    """``PROVIDER:MODEL`` as a :class:`Target`; :class:`InvalidRequest` saying the syntax.

    >>> parse_target("openai:gpt-4o-mini")
    Target(provider='openai', model='gpt-4o-mini')
    """
    provider, sep, model = str(text).strip().partition(":")
    provider = provider.strip().lower()
    if not sep or not model.strip() or provider not in PROVIDERS:
        raise InvalidRequest(
            f"unknown model {text!r}: give PROVIDER:MODEL, e.g. openai:gpt-4o-mini or "
            f"anthropic:claude-3-5-haiku-latest (providers: {', '.join(PROVIDERS)}; an "
            "OpenAI-compatible server is openai: with --base-url)"
        )
    return Target(provider, model.strip())


def _default_name() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime())


@dataclass(frozen=True)
class ReplaySpec:
    """A replay request, checked (see ``docs/replay.md`` for each field)."""

    targets: tuple[Target, ...]
    filter: str = ""
    where: str = ""
    since: str = "7d"
    until: str = ""
    limit: int = 100
    base_url: str = ""
    scorers: tuple[str, ...] = ()
    concurrency: int = 16
    budget_usd: float | None = None
    name: str = field(default_factory=_default_name)

    @property
    def dataset(self) -> str:
        return f"replay-{self.name}"

    def experiment(self, target: Target | None) -> str:
        """The experiment name of a model, or of the recorded baseline (``None``)."""
        return f"{self.dataset}-{target.slug if target else 'recorded'}"

    def json(self) -> dict[str, Any]:
        return {
            "filter": self.filter,
            "where": self.where,
            "since": self.since,
            "until": self.until,
            "limit": self.limit,
            "models": [t.label for t in self.targets],
            "base_url": self.base_url,
            "scorers": list(self.scorers),
            "concurrency": self.concurrency,
            "budget_usd": self.budget_usd,
            "name": self.name,
        }

    @classmethod
    def from_json(cls, payload: Mapping[str, Any], *, need_models: bool = True) -> ReplaySpec:
        """The spec a JSON body describes; :class:`InvalidRequest` naming a bad field."""
        unknown = sorted(set(payload) - set(_FIELDS))
        if unknown:
            raise InvalidRequest(
                f"replay: unknown field(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}"
            )
        models = payload.get("models") or []
        if isinstance(models, str):
            models = [models]
        if not isinstance(models, list):
            raise InvalidRequest("replay: 'models' must be a list of PROVIDER:MODEL")
        targets = tuple(dict.fromkeys(parse_target(m) for m in models))
        if need_models and not targets:
            raise InvalidRequest(
                "replay: name at least one model to replay on, e.g. --model openai:gpt-4o-mini"
            )
        name = _text(payload, "name") or _default_name()
        if not _NAME.fullmatch(name):
            raise InvalidRequest(f"replay: invalid name {name!r}: use {NAME_RULE} (81 at most)")
        scorers = payload.get("scorers") or []
        if not isinstance(scorers, list) or not all(isinstance(s, str) and s for s in scorers):
            raise InvalidRequest("replay: 'scorers' must be a list of scorer names")
        filter_text, where = _text(payload, "filter"), _text(payload, "where")
        return cls(
            targets=targets,
            filter=filter_text,
            where=where,
            since=_text(payload, "since") or "7d",
            until=_text(payload, "until"),
            limit=int(_number(payload, "limit", 100, low=1, high=MAX_CALLS, whole=True)),
            base_url=_text(payload, "base_url"),
            scorers=tuple(scorers),
            concurrency=int(_number(payload, "concurrency", 16, low=1, high=256, whole=True)),
            budget_usd=_optional_number(payload, "budget_usd"),
            name=name,
        )


def _text(payload: Mapping[str, Any], name: str) -> str:
    value = payload.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest(f"replay: {name!r} must be a string, got {value!r}")
    return value.strip()


def _number(
    payload: Mapping[str, Any], name: str, default: float, *, low: float, high: float, whole: bool
) -> float:
    value = payload.get(name)
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidRequest(f"replay: {name!r} must be a number, got {value!r}") from None
    if not low <= number <= high or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise InvalidRequest(f"replay: {name!r} must be {kind} from {low:g} to {high:g}")
    return number


def _optional_number(payload: Mapping[str, Any], name: str) -> float | None:
    if payload.get(name) in (None, ""):
        return None
    number = _number(payload, name, 0, low=0, high=1e9, whole=False)
    if number <= 0:
        raise InvalidRequest(f"replay: {name!r} must be more than 0 dollars")
    return number
