"""Online rules as the ``rules`` table keeps them, and the one sampling rule.

A rule version is a row of ``rules`` (``evalhouse/store/_online_schema.py``); editing a rule
adds a version, disabling it rewrites its current version with ``enabled = 0``. The daemon
reads the enabled rules every cycle; the service (:mod:`evalhouse.online`) writes them.

Sampling is a hash of the rule's name and the target, compared with the rule's fraction, in
ClickHouse: the daemon, the estimate and a re-run all pick the same targets, and editing a
rule (a new version, same name) keeps the sample it had.

>>> sample_threshold(0.25) == 2**62
True
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from evalhouse.config import RuleSpec, Settings
from evalhouse.errors import InvalidRequest, QueryError
from evalhouse.evaluators._rule_values import check_mapping
from evalhouse.evaluators._scorer_refs import ScorerRef, scorer_refs
from evalhouse.store import RULE_BACKFILLS, RULES, Store

__all__ = [
    "RULE_COLUMNS",
    "StoredRule",
    "backfills",
    "prepare_rule",
    "read_rules",
    "request_backfill",
    "rule_entries",
    "same_definition",
    "sample_params",
    "sample_threshold",
    "sampled_sql",
    "sync_rules",
    "write_rule",
]

logger = logging.getLogger(__name__)

# The shard number of a backfill request's own row; a row per shard marks that shard done.
REQUEST_SHARD = 65535

RULE_COLUMNS = (
    "name",
    "version",
    "scope",
    "filter",
    "where_sql",
    "sample",
    "scorers",
    "mapping",
    "budget_usd_per_day",
    "delay_s",
    "enabled",
    "origin",
    "author",
    "created_at",
    "updated_at",
)


@dataclass(frozen=True)
class StoredRule:
    """One version of a rule; ``scorers`` are scorer ids (spec, options as canonical JSON)."""

    name: str
    version: int
    scope: str
    filter: str
    where: str
    sample: float
    scorers: tuple[str, ...]
    mapping: Mapping[str, str] = field(default_factory=dict)
    budget_usd_per_day: float | None = None
    delay_s: float = 10.0
    enabled: bool = True
    origin: str = "api"
    author: str = ""
    created_at_ms: int = 0
    updated_at_ms: int = 0

    @property
    def delay_ms(self) -> int:
        return int(self.delay_s * 1000)

    def values(self) -> tuple[Any, ...]:
        return (
            self.name,
            self.version,
            self.scope,
            self.filter,
            self.where,
            self.sample,
            list(self.scorers),
            json.dumps(dict(self.mapping), sort_keys=True),
            self.budget_usd_per_day,
            self.delay_s,
            int(self.enabled),
            self.origin,
            self.author,
            self.created_at_ms,
            self.updated_at_ms or time.time_ns() // 1_000_000,
        )


_READ = f"""
SELECT {", ".join(RULE_COLUMNS[:-2])},
    toUnixTimestamp64Milli(created_at) AS created_ms,
    toUnixTimestamp64Milli(updated_at) AS updated_ms
FROM {RULES} FINAL
WHERE {{where}}
ORDER BY name, version"""


def read_rules(
    store: Store, name: str | None = None, *, all_versions: bool = False
) -> list[StoredRule]:
    """The latest version of every rule (or of ``name``); every version with
    ``all_versions``.

    >>> [r.version for r in read_rules(store, "support-quality", all_versions=True)]
    ... # doctest: +SKIP
    [1, 2]
    """
    where, params = ("name = {name:String}", {"name": name}) if name else ("1", {})
    rows = store.query(_READ.format(where=where), params)
    rules = [_rule(row) for row in rows]
    if all_versions:
        return rules
    latest: dict[str, StoredRule] = {}
    for rule in rules:
        latest[rule.name] = rule  # ordered by version
    return list(latest.values())


def _rule(row: Sequence[Any]) -> StoredRule:
    mapping = json.loads(row[7]) if row[7] else {}
    return StoredRule(
        name=row[0],
        version=int(row[1]),
        scope=row[2],
        filter=row[3],
        where=row[4],
        sample=float(row[5]),
        scorers=tuple(row[6]),
        mapping=mapping if isinstance(mapping, dict) else {},
        budget_usd_per_day=row[8],
        delay_s=float(row[9]),
        enabled=bool(row[10]),
        origin=row[11],
        author=row[12],
        created_at_ms=int(row[13]),
        updated_at_ms=int(row[14]),
    )


def write_rule(store: Store, rule: StoredRule) -> None:
    """Store one rule version (a new one, or the same version again to disable it)."""
    store.insert_rows(RULES, [rule.values()], RULE_COLUMNS)


def sample_threshold(sample: float) -> int:
    """The hash values below which a target is sampled (of 2^64)."""
    return min(2**64 - 1, max(0, int(sample * 2**64)))


def sampled_sql(target: str, *, rule_param: str = "rule", sample_param: str = "threshold") -> str:
    """A SQL condition that holds for the targets a rule samples; ``target`` is the SQL of the
    target's id (a trace id, ``trace_id || ':' || span_id``, a session id). Bind
    ``rule_param`` to the rule's name and ``sample_param`` to :func:`sample_threshold` plus
    ``{sample_param}_all`` to 1 for a rule sampling everything.

    >>> sampled_sql("trace_id")[:48]
    '({threshold_all:UInt8} = 1 OR cityHash64(concat('

    """
    return (
        f"({{{sample_param}_all:UInt8}} = 1 OR cityHash64(concat({{{rule_param}:String}}, ':', "
        f"{target})) < {{{sample_param}:UInt64}})"
    )


def sample_params(rule: StoredRule, sample_param: str = "threshold") -> dict[str, Any]:
    """The parameters :func:`sampled_sql` needs for ``rule``."""
    return {
        sample_param: sample_threshold(rule.sample),
        f"{sample_param}_all": int(rule.sample >= 1),
    }


def _scorer_ids(entries: Sequence[str | Mapping[str, Any]]) -> tuple[str, ...]:
    refs = scorer_refs(
        row_attribute=json.dumps(list(entries), default=str),
        experiment_metadata=None,
        experiment_name="",
        config={},
    )
    for ref in refs:
        if ref.problem is not None:
            raise InvalidRequest(f"scorers: {ref.problem}")
    from evalhouse.evaluators.scorers import resolve_scorer

    for ref in refs:
        try:
            resolve_scorer(ref.spec, ref.options)
        except Exception as exc:  # whatever a user's module raises, the rule cannot run it
            raise InvalidRequest(
                f"scorer {ref.spec} cannot be used: {exc}; give a built-in name, "
                "module:function or autoevals:Name (evalhouse scorers list the built-ins)"
            ) from exc
    return tuple(ref.id for ref in refs)


def rule_entries(rule: StoredRule) -> list[str | dict[str, Any]]:
    """The rule's scorers as a user writes them: a name, or ``{"name", "options"}``."""
    entries: list[str | dict[str, Any]] = []
    for scorer_id in rule.scorers:
        ref = ScorerRef.from_id(scorer_id)
        entries.append(
            {"name": ref.spec, "options": dict(ref.options)} if ref.options else ref.spec
        )
    return entries


# What a rule's ``where`` reads: the trace rows, or the spans.
_WHERE_TABLES = {"trace": "trace_summaries", "session": "trace_summaries", "span": "otel_traces"}


def _checked_where(store: Store, scope: str, where: str) -> str:
    text = where.strip()
    if not text:
        return ""
    table = _WHERE_TABLES[scope]
    columns = (
        "the trace columns (docs/sql.md, traces)"
        if scope != "span"
        else ("the otel_traces columns (SpanName, LlmRequestModel, SpanAttributes['key'], ...)")
    )
    try:
        canonical = store.check_expression(text)
        store.query(f"SELECT 1 FROM {table} WHERE ({canonical}) LIMIT 0")
    except QueryError as exc:
        raise InvalidRequest(
            f"invalid where for a {scope} rule: {exc}; give one ClickHouse boolean over {columns}"
        ) from exc
    return canonical


def prepare_rule(
    store: Store,
    spec: RuleSpec,
    *,
    version: int,
    default_delay_s: float,
    origin: str = "api",
    author: str = "",
    created_at_ms: int | None = None,
) -> StoredRule:
    """A rule version from ``spec``, every part checked: the filter by the explorer's
    language, ``where`` by ClickHouse's parser against the scope's table, each scorer by
    loading it, the mapping by its sources. :class:`InvalidRequest` names what is wrong.

    >>> prepare_rule(store, RuleSpec(name="q", scorers=["exact_match"]), version=1,
    ...              default_delay_s=10).delay_s                      # doctest: +SKIP
    10.0
    """
    if spec.filter.strip():
        from evalhouse.explorer import parse_filter  # the explorer reads the evaluator: late

        parse_filter(spec.filter)
    now = time.time_ns() // 1_000_000
    return StoredRule(
        name=spec.name,
        version=version,
        scope=spec.scope,
        filter=spec.filter.strip(),
        where=_checked_where(store, spec.scope, spec.where),
        sample=spec.sample,
        scorers=_scorer_ids(spec.scorers),
        mapping=check_mapping(spec.scope, spec.mapping),
        budget_usd_per_day=spec.budget_usd_per_day,
        delay_s=default_delay_s if spec.delay_s is None else spec.delay_s,
        enabled=spec.enabled,
        origin=origin,
        author=author,
        created_at_ms=now if created_at_ms is None else created_at_ms,
        updated_at_ms=now,
    )


def same_definition(a: StoredRule, b: StoredRule) -> bool:
    """Whether two versions score the same way (times, version and author aside)."""
    keys = ("scope", "filter", "where", "sample", "scorers", "budget_usd_per_day", "delay_s")
    return (
        all(getattr(a, k) == getattr(b, k) for k in keys)
        and dict(a.mapping) == dict(b.mapping)
        and a.enabled == b.enabled
    )


def sync_rules(store: Store, settings: Settings) -> list[str]:
    """Save the ``[[rules]]`` of the configuration: a new rule as version 1, a changed one
    as its next version; rules the configuration made and no longer has are disabled. Returns
    what changed, one line each; a rule that cannot be saved is logged and left out."""
    changed: list[str] = []
    current = {rule.name: rule for rule in read_rules(store)}
    wanted = set()
    for spec in settings.rules:
        wanted.add(spec.name)
        before = current.get(spec.name)
        try:
            rule = prepare_rule(
                store,
                spec,
                version=before.version + 1 if before else 1,
                default_delay_s=settings.rules_delay_seconds,
                origin="config",
                author="evalhouse.toml",
            )
        except Exception as exc:
            logger.error("rule %s of the configuration is not saved: %s", spec.name, exc)
            continue
        if before is not None and same_definition(before, rule):
            continue
        write_rule(store, rule)
        changed.append(f"rule {rule.name}: version {rule.version} from the configuration")
    for name, rule in current.items():
        if rule.origin == "config" and name not in wanted and rule.enabled:
            write_rule(store, _disabled(rule))
            changed.append(f"rule {name}: disabled (no longer in the configuration)")
    for line in changed:
        logger.info("%s", line)
    return changed


def _disabled(rule: StoredRule) -> StoredRule:
    from dataclasses import replace

    return replace(rule, enabled=False, updated_at_ms=time.time_ns() // 1_000_000)


def request_backfill(store: Store, rule: StoredRule, *, start_ns: int, end_ns: int) -> str:
    """Ask the daemon to score the rule's past targets started in ``[start_ns, end_ns)``
    (with the rule's current version, within its budget); returns the request's id."""
    backfill_id = uuid.uuid4().hex[:16]
    store.insert_rows(
        RULE_BACKFILLS,
        [(backfill_id, rule.name, rule.version, start_ns, end_ns, REQUEST_SHARD)],
        ["id", "rule", "rule_version", "since", "until", "shard"],
    )
    return backfill_id


def backfills(store: Store, rule: str) -> list[dict[str, Any]]:
    """The rule's backfill requests, newest first, with how many shards are done."""
    from evalhouse.store import SHARDS

    rows = store.query_dicts(
        f"""SELECT id, rule_version AS version,
    toUnixTimestamp64Nano(since) AS since_ns, toUnixTimestamp64Nano(until) AS until_ns,
    minIf(requested_at, shard = {REQUEST_SHARD}) AS requested,
    uniqExactIf(shard, shard != {REQUEST_SHARD}) AS shards_done
FROM {RULE_BACKFILLS} FINAL WHERE rule = {{rule:String}}
GROUP BY id, rule_version, since, until ORDER BY requested DESC""",
        {"rule": rule},
    )
    for row in rows:
        row["done"] = row["shards_done"] >= SHARDS
        row["shards"] = SHARDS
    return rows
