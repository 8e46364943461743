"""Which scorers the daemon runs on a row, and how a scorer is named in the tables.

Three sources, merged in this order without duplicates:

1. the row's ``evalhouse.scorers`` attribute (JSON list);
2. the ``scorers`` key of the experiment's metadata (``evalhouse.experiment.metadata``);
3. the project configuration, ``evaluator_scorers`` in evalhouse.toml: experiment-name glob ->
   list.

An entry is a scorer spec (``"exact_match"``, ``"my_pkg.scorers:tone"``) or an object
``{"name": spec, "options": {...}}``. Its *id* (the spec, plus its options as canonical JSON)
names it in ``experiment_rows.scorers`` and ``scores.scorer``; each (row, id) runs once. An
entry that cannot be read becomes an id starting with ``!`` that says why: the daemon records
it as a scorer error instead of dropping it.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ScorerRef", "scorer_refs"]

_INVALID = "!"


@dataclass(frozen=True)
class ScorerRef:
    """One scorer to run: a spec for ``resolve_scorer`` and its options.

    >>> ScorerRef("llm_judge", {"model": "gpt-4o-mini"}).id
    'llm_judge{"model":"gpt-4o-mini"}'
    >>> ScorerRef.from_id('llm_judge{"model":"gpt-4o-mini"}').options
    {'model': 'gpt-4o-mini'}
    """

    spec: str
    options: Mapping[str, Any] | None = None
    problem: str | None = None

    @property
    def id(self) -> str:
        if self.problem is not None:
            return _INVALID + self.problem
        if not self.options:
            return self.spec
        return self.spec + json.dumps(self.options, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_id(cls, scorer_id: str) -> ScorerRef:
        if scorer_id.startswith(_INVALID):
            return cls(spec="", problem=scorer_id[len(_INVALID) :])
        spec, brace, rest = scorer_id.partition("{")
        if not brace:
            return cls(spec)
        try:
            options = json.loads(brace + rest)
        except ValueError:
            return cls(spec="", problem=f"scorer id {scorer_id!r} has unreadable options")
        return cls(spec, options if isinstance(options, dict) else None)


def _entries(value: Any, where: str) -> list[ScorerRef]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return [_bad(f"{where} is not JSON ({value[:100]!r}); send a JSON list of scorers")]
    if not isinstance(value, list):
        return [_bad(f"{where} must be a JSON list of scorers, got {type(value).__name__}")]
    refs = []
    for item in value:
        if isinstance(item, str) and item.strip():
            refs.append(ScorerRef(item.strip()))
        elif isinstance(item, Mapping) and isinstance(item.get("name"), str) and item["name"]:
            options = item.get("options")
            if options is not None and not isinstance(options, Mapping):
                refs.append(_bad(f"{where}: options of scorer {item['name']} must be an object"))
                continue
            refs.append(ScorerRef(item["name"].strip(), dict(options) if options else None))
        else:
            text = json.dumps(item, default=str)[:100]
            refs.append(
                _bad(
                    f"{where} has an entry {text} that is neither a scorer name nor "
                    '{"name": ..., "options": {...}}'
                )
            )
    return refs


def _bad(problem: str) -> ScorerRef:
    return ScorerRef(spec="", problem=problem)


def scorer_refs(
    *,
    row_attribute: str | None,
    experiment_metadata: str | None,
    experiment_name: str,
    config: Mapping[str, Iterable[str | Mapping[str, Any]]],
) -> list[ScorerRef]:
    """The scorers for one row, from its attribute, its experiment's metadata and the config.

    >>> [r.id for r in scorer_refs(row_attribute='["exact_match"]', experiment_metadata=None,
    ...                            experiment_name="qa-7", config={"qa-*": ["contains"]})]
    ['exact_match', 'contains']
    """
    refs: list[ScorerRef] = []
    if row_attribute:
        refs += _entries(row_attribute, "evalhouse.scorers")
    if experiment_metadata:
        try:
            metadata = json.loads(experiment_metadata)
        except ValueError:
            metadata = None
        if isinstance(metadata, Mapping) and "scorers" in metadata:
            refs += _entries(metadata["scorers"], "the experiment metadata's 'scorers'")
    for pattern, entries in config.items():
        if fnmatch.fnmatchcase(experiment_name, pattern):
            refs += _entries(list(entries), f"evaluator_scorers[{pattern!r}]")
    unique: dict[str, ScorerRef] = {}
    for ref in refs:
        unique.setdefault(ref.id, ref)
    return list(unique.values())
