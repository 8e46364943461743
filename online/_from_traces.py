"""Datasets from production traces (``POST /api/datasets/{name}/from-traces``,
``evalhouse datasets from-traces``).

The traces are named (``trace_ids``) or chosen like the explorer's list (``filter``,
``where``, ``since``, ``until``, newest first, at most ``limit``). Each becomes a row of a new
version of the dataset, its id the trace id (adding a trace again replaces its row): by
default the trace's input as ``input`` and its output as ``expected`` (what it answered is
what a new version should answer), read by the rules' value rule
(:func:`evalhouse.evaluators.trace_values`); ``mapping`` takes ``input``, ``expected`` and
``metadata`` from an attribute or ``root``, ``messages``, ``none`` instead. Every row's
metadata carries ``source_trace_id``. Traces without an input or an output are left out and
listed with the reason.

>>> dataset_from_traces(store, "regressions", {"filter": "tag:support", "since": "7d"})
... # doctest: +SKIP
{'name': 'regressions', 'version': 1, 'rows': 40, ..., 'skipped': []}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from evalhouse.dataset_rows import check_name
from evalhouse.datasets import Datasets, StoredRow
from evalhouse.errors import InvalidRequest
from evalhouse.evaluators import normalise_trace_id, trace_values
from evalhouse.explorer import Window, parse_filter
from evalhouse.online._body import Fields
from evalhouse.store import Store

__all__ = ["FROM_TRACES_USAGE", "dataset_from_traces", "select_traces"]

FROM_TRACES_USAGE = (
    '{"trace_ids": ["<hex>", ...]} or {"filter": "tag:support", "where": "...", '
    '"since": "7d", "limit": 100}, optional "mapping": {"input": ..., "expected": ..., '
    '"metadata": ...} and "description"'
)
MAX_TRACES = 10_000
_MAPPED = {"input": "input", "expected": "output", "metadata": "metadata"}


def select_traces(
    store: Store,
    *,
    filter: str = "",
    where: str = "",
    since: str = "",
    until: str = "",
    limit: int = 100,
    sample: tuple[str, float] | None = None,
) -> list[str]:
    """Production trace ids as the explorer would list them (newest first): the filter
    language, a checked ``where`` over the trace columns, a window; ``sample`` keeps a
    deterministic fraction (by a hash of its name and the trace id)."""
    window = Window.from_params({"since": since, "until": until}, default_since="7d")
    parsed = parse_filter(filter, prefix="t")
    conditions = [
        "start_time >= fromUnixTimestamp64Nano({since:Int64}, 'UTC')",
        "start_time < fromUnixTimestamp64Nano({until:Int64}, 'UTC')",
        "kind = 'production'",
        f"({parsed.sql})",
    ]
    params: dict[str, Any] = {**window.sql_params(), **parsed.params, "limit": limit}
    if where.strip():
        try:
            conditions.append(f"({store.check_expression(where.strip())})")
        except Exception as exc:  # the parser's refusal, said as the caller's mistake
            raise InvalidRequest(
                f"invalid where: {exc}; give one ClickHouse boolean over the trace columns "
                "(docs/sql.md, traces)"
            ) from exc
    if sample is not None:
        conditions.append(
            "cityHash64(concat({sample_name:String}, ':', trace_id)) < {sample_below:UInt64}"
        )
        params["sample_name"] = sample[0]
        params["sample_below"] = min(2**64 - 1, int(sample[1] * 2**64))
    rows = store.select(
        f"SELECT trace_id FROM trace_summaries FINAL WHERE {' AND '.join(conditions)} "
        "ORDER BY start_time DESC, trace_id LIMIT {limit:UInt32}",
        params,
    )
    return [row["trace_id"] for row in rows]


def _limit(fields: Fields) -> int:
    value = fields.number("limit", low=1, high=MAX_TRACES)
    return 100 if value is None else int(value)


def dataset_from_traces(store: Store, name: str, payload: Mapping[str, Any]) -> dict[str, Any]:
    """A new version of dataset ``name`` from traces (see the module's docstring)."""
    check_name(name)
    fields = Fields(payload, "from-traces")
    fields.only("trace_ids", "filter", "where", "since", "until", "limit", "mapping", "description")
    mapping = fields.mapping("mapping")
    unknown = sorted(set(mapping) - set(_MAPPED))
    if unknown:
        raise InvalidRequest(
            f"from-traces: mapping field(s) {', '.join(unknown)}: give input, expected, metadata"
        )
    named = fields.strings("trace_ids")
    if named:
        ids = []
        for text in named:
            trace_id = normalise_trace_id(text)
            if trace_id is None:
                raise InvalidRequest(f"from-traces: {text!r} is not a hex trace id")
            ids.append(trace_id)
        if len(ids) > MAX_TRACES:
            raise InvalidRequest(f"from-traces: {len(ids)} trace ids; at most {MAX_TRACES}")
    else:
        ids = select_traces(
            store,
            filter=fields.text("filter"),
            where=fields.text("where"),
            since=fields.text("since"),
            until=fields.text("until"),
            limit=_limit(fields),
        )
    if not ids:
        raise InvalidRequest(
            f"no trace to add to dataset {name!r}: the filter matched none in the window; "
            f"widen it ({FROM_TRACES_USAGE})"
        )
    values = trace_values(store, ids, {_MAPPED[field]: source for field, source in mapping.items()})
    rows: list[StoredRow] = []
    skipped: list[dict[str, str]] = []
    for trace_id, found in zip(ids, values, strict=True):
        reason = found.detail if found.problem == "mapping_failed" else ""
        if not reason and found.input is None:
            reason = "the trace has no input (no root value, no model call's messages)"
        if not reason and found.output is None:
            reason = "the trace has no output to expect"
        if reason:
            skipped.append({"trace_id": trace_id, "reason": reason})
            continue
        metadata = found.metadata if isinstance(found.metadata, dict) else {}
        metadata = {**metadata, "source_trace_id": trace_id}
        rows.append(
            StoredRow(
                trace_id,
                json.dumps(found.input, ensure_ascii=False),
                json.dumps(found.output, ensure_ascii=False),
                json.dumps(metadata, ensure_ascii=False, sort_keys=True),
            )
        )
    if not rows:
        raise InvalidRequest(
            f"none of the {len(ids)} traces can be a row: {skipped[0]['reason']} "
            f"(trace {skipped[0]['trace_id']})"
        )
    version = Datasets(store).push(
        name,
        rows,
        description=fields.text("description") or f"{len(rows)} production traces",
        source="traces",
    )
    return {**version, "skipped": skipped}
