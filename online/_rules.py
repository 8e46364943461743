"""Rules as the API and ``evalhouse rules`` manage them: create, list, show with status, edit
(a new version), disable, estimate, backfill.

The daemon (``evaluators/_online.py``) reads the ``rules`` table each cycle: a rule saved here
is scored from the daemon's next look on. Every field is checked before anything is saved
(:func:`evalhouse.evaluators.prepare_rule`), so a saved rule always runs.

>>> rules = Rules(store, settings)                                          # doctest: +SKIP
>>> rules.create({"name": "support-quality", "filter": "tag:support", "sample": 0.2,
...               "scorers": ["llm_judge:helpfulness"]})["version"]         # doctest: +SKIP
1
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from evalhouse.config import RuleSpec, Settings
from evalhouse.errors import Conflict, InvalidRequest, NotFound
from evalhouse.evaluators import (
    StoredRule,
    backfills,
    estimate_rule,
    prepare_rule,
    read_rules,
    request_backfill,
    rule_entries,
    write_rule,
)
from evalhouse.explorer import Window
from evalhouse.online._status import rule_status
from evalhouse.store import Store

__all__ = ["Rules", "rule_json", "spec_from_json"]

_FIELDS = tuple(RuleSpec.model_fields)


def spec_from_json(payload: Mapping[str, Any]) -> RuleSpec:
    """A rule's fields from a JSON body; :class:`InvalidRequest` naming the first bad one."""
    try:
        return RuleSpec.model_validate(dict(payload))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "rule"
        raise InvalidRequest(
            f"rule field {where}: {first['msg']} (got {first.get('input')!r}); fields are "
            f"{', '.join(_FIELDS)}"
        ) from None


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _iso_ns(ns: int) -> str:
    return _iso(ns // 1_000_000)


def rule_json(rule: StoredRule) -> dict[str, Any]:
    """A rule version as the API answers it (the fields of ``POST /api/rules``, plus its
    version, origin and times)."""
    return {
        "name": rule.name,
        "version": rule.version,
        "scope": rule.scope,
        "filter": rule.filter,
        "where": rule.where,
        "sample": rule.sample,
        "scorers": rule_entries(rule),
        "mapping": dict(rule.mapping),
        "budget_usd_per_day": rule.budget_usd_per_day,
        "delay_s": rule.delay_s,
        "enabled": rule.enabled,
        "origin": rule.origin,
        "author": rule.author,
        "created_at": _iso(rule.created_at_ms),
        "updated_at": _iso(rule.updated_at_ms),
    }


def _spec_of(rule: StoredRule) -> dict[str, Any]:
    return {
        "name": rule.name,
        "scope": rule.scope,
        "filter": rule.filter,
        "where": rule.where,
        "sample": rule.sample,
        "scorers": rule_entries(rule),
        "mapping": dict(rule.mapping),
        "budget_usd_per_day": rule.budget_usd_per_day,
        "delay_s": rule.delay_s,
        "enabled": rule.enabled,
    }


class Rules:
    """The rules of one store; answers are the API's JSON bodies."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def _current(self, name: str) -> StoredRule:
        found = read_rules(self.store, name)
        if not found:
            raise NotFound(
                f"no rule named {name!r}; list them with 'evalhouse rules list' (or GET /api/rules)"
            )
        return found[0]

    def create(self, payload: Mapping[str, Any], *, author: str = "") -> dict[str, Any]:
        """Save a new rule as version 1; :class:`Conflict` when the name is taken."""
        spec = spec_from_json(payload)
        if read_rules(self.store, spec.name):
            raise Conflict(
                f"a rule named {spec.name!r} exists; change it with PUT /api/rules/{spec.name} "
                "(a new version) or pick another name"
            )
        rule = prepare_rule(
            self.store,
            spec,
            version=1,
            default_delay_s=self.settings.rules_delay_seconds,
            author=author,
        )
        write_rule(self.store, rule)
        return rule_json(rule)

    def list(self) -> dict[str, Any]:
        """Every rule's current version with its headline counts."""
        out = []
        for rule in read_rules(self.store):
            status = rule_status(self.store, rule)
            out.append(
                {
                    **rule_json(rule),
                    "status": {
                        k: status[k]
                        for k in ("matched", "sampled", "scored", "pending", "spend_today_usd")
                    },
                }
            )
        return {"rules": out}

    def get(self, name: str) -> dict[str, Any]:
        """The rule, its status, its versions and its backfills."""
        rule = self._current(name)
        versions = read_rules(self.store, name, all_versions=True)
        return {
            **rule_json(rule),
            "status": rule_status(self.store, rule),
            "versions": [
                {"version": v.version, "created_at": _iso(v.created_at_ms), "enabled": v.enabled}
                for v in versions
            ],
            "backfills": [
                {
                    "id": b["id"],
                    "version": b["version"],
                    "since": _iso_ns(b["since_ns"]),
                    "until": _iso_ns(b["until_ns"]),
                    "shards_done": b["shards_done"],
                    "shards": b["shards"],
                    "done": b["done"],
                }
                for b in backfills(self.store, name)
            ],
        }

    def update(self, name: str, payload: Mapping[str, Any], *, author: str = "") -> dict[str, Any]:
        """A new version: the fields given replace the current version's, the rest stay."""
        current = self._current(name)
        if payload.get("name", name) != name:
            raise InvalidRequest(
                f"the body names rule {payload.get('name')!r} but the path {name!r}; a rule "
                "is renamed by creating the new one and disabling the old"
            )
        spec = spec_from_json({**_spec_of(current), **payload, "name": name})
        rule = prepare_rule(
            self.store,
            spec,
            version=current.version + 1,
            default_delay_s=self.settings.rules_delay_seconds,
            author=author,
        )
        write_rule(self.store, rule)
        return rule_json(rule)

    def disable(self, name: str) -> dict[str, Any]:
        """Stop scoring with the rule (its current version, rewritten disabled); its scores
        stay. ``PUT`` with ``"enabled": true`` turns it on again as a new version."""
        current = self._current(name)
        now = int(datetime.now(UTC).timestamp() * 1000)
        rule = dataclasses.replace(current, enabled=False, updated_at_ms=now)
        write_rule(self.store, rule)
        return rule_json(rule)

    def estimate(self, name: str, params: Mapping[str, str]) -> dict[str, Any]:
        """What the rule would have scored and cost on the window's traffic (``since``,
        default 7d; ``until``, default now), computed before anything is spent."""
        rule = self._current(name)
        window = Window.from_params(params, default_since="7d")
        answer = estimate_rule(
            self.store, rule, start_ns=_ns(window.since), end_ns=_ns(window.until)
        )
        return {
            "rule": rule.name,
            "version": rule.version,
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            **answer,
        }

    def backfill(self, name: str, params: Mapping[str, str]) -> dict[str, Any]:
        """Ask the daemon to score the rule's past targets in the window (``since``, default
        7d), within its budget; progress shows in :meth:`get`."""
        rule = self._current(name)
        if not rule.enabled:
            raise InvalidRequest(
                f"rule {name!r} is disabled; enable it first (PUT with enabled true)"
            )
        window = Window.from_params(params, default_since="7d")
        backfill_id = request_backfill(
            self.store, rule, start_ns=_ns(window.since), end_ns=_ns(window.until)
        )
        return {
            "rule": rule.name,
            "version": rule.version,
            "backfill_id": backfill_id,
            "since": window.since.isoformat(),
            "until": window.until.isoformat(),
            "status": "queued",
        }


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000
