"""Why a cost is unknown: the task's model calls that have no price.

A row's cost is unknown (``NULL``, never $0) when one of its task's model calls has no price:
no provided cost and a model the price data does not know. To say which model, the spans of a
few such rows are read again and their task calls priced the way the evaluator prices them
(:func:`evalhouse.evaluators._cost.span_cost` over the same trace tree), so the answer names
exactly the calls that made the cost unknown.

>>> unknown_cost_reason(store, ["exp-1"])                            # doctest: +SKIP
'no price for tiny-model (3 of 10 rows)'
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from evalhouse.evaluators import TraceTree, Usage, fetch_spans, span_cost
from evalhouse.evaluators.results._sql import query
from evalhouse.store import Store

__all__ = ["unknown_cost_reason"]

# Rows whose spans are read to name the unpriced models: a handful says enough.
_SAMPLE_ROWS = 20

_UNPRICED = """
SELECT
    countIf(cost_usd IS NULL) AS unknown,
    count() AS rows,
    arraySlice(groupArrayIf(trace_id, cost_usd IS NULL), 1, {sample:UInt64}) AS traces
FROM experiment_row_metrics FINAL
WHERE experiment_id IN {ids:Array(String)}
"""


def _unpriced_models(store: Store, trace_ids: Sequence[str]) -> list[str]:
    models: dict[str, None] = {}
    for spans in fetch_spans(store, trace_ids).values():
        tree = TraceTree(spans)
        root = tree.row_root()
        if root is None:
            continue
        for call in tree.partition(root).task_calls:
            usage = Usage(
                input_tokens=call.input_tokens,
                output_tokens=call.output_tokens,
                cache_read_tokens=call.cache_read_tokens,
                cache_write_tokens=call.cache_write_tokens,
                reasoning_tokens=call.reasoning_tokens,
            )
            cost = span_cost(
                provider=call.provider,
                request_model=call.request_model,
                response_model=call.response_model,
                usage=usage,
                provided_usd=call.provided_cost_usd,
                at=datetime.fromtimestamp(call.start_ns / 1e9, UTC),
            )
            if cost.usd is None:
                model = call.response_model or call.request_model or "a model with no name"
                models[f"{call.provider}/{model}" if call.provider else model] = None
    return sorted(models)


def unknown_cost_reason(store: Store, experiment_ids: Sequence[str]) -> str | None:
    """Why the cost of these experiments' rows is unknown, or None when every row is priced:
    ``"no price for tiny-model (3 of 10 rows)"``."""
    (found,) = query(store, _UNPRICED, {"ids": list(experiment_ids), "sample": _SAMPLE_ROWS})
    unknown, rows = int(found["unknown"]), int(found["rows"])
    if not unknown:
        return None
    share = f"{unknown} of {rows} rows"
    models = _unpriced_models(store, list(found["traces"]))
    if not models:
        return f"no price for the model calls of {share}"
    return f"no price for {', '.join(models)} ({share})"
