"""The rows of a stored experiment, read back from its ``eval`` root spans, for a new dataset
version (``POST /api/datasets/{name}/from-experiment``, ``Dataset.append_experiment``).

The values are the wire-contract attributes the runner put on each root (``evalhouse.input``,
``evalhouse.expected``, ``evalhouse.metadata``: JSON texts), so a dataset rebuilt from an
experiment holds what the experiment was run on. One row per row id, from its lowest trial.
The caller names the run by its id: which run an id or name means is decided once, by
``evalhouse.evaluators.resolve_experiment`` (the API route resolves, then calls this).
"""

from __future__ import annotations

import json

from evalhouse import contract
from evalhouse.dataset_rows import DatasetError, json_text
from evalhouse.datasets._rows import StoredRow
from evalhouse.encoding import row_id as input_row_id
from evalhouse.store import Store

__all__ = ["experiment_rows"]

_ROOTS = """SELECT RowId,
    SpanAttributes[{input:String}], mapContains(SpanAttributes, {input:String}),
    SpanAttributes[{expected:String}], mapContains(SpanAttributes, {expected:String}),
    SpanAttributes[{metadata:String}], mapContains(SpanAttributes, {metadata:String})
FROM otel_traces
WHERE Purpose = 'eval' AND ExperimentId = {id:String}
ORDER BY Trial, Timestamp, SpanId"""


def experiment_rows(store: Store, experiment_id: str) -> list[StoredRow]:
    """The rows of the run ``experiment_id``, from its eval root spans (none when no root
    span of it is stored).

    >>> experiment_rows(store, "6f1c...")                           # doctest: +SKIP
    [StoredRow(id='refund', input='"Refund window?"', ...)]
    """
    spans = store.query(
        _ROOTS,
        {
            "id": experiment_id,
            "input": contract.INPUT,
            "expected": contract.EXPECTED,
            "metadata": contract.METADATA,
        },
    )
    rows: dict[str, StoredRow] = {}
    for row_id, text_in, has_in, text_exp, has_exp, text_meta, has_meta in spans:
        value_in = _attribute_json(text_in, has_in)
        key = row_id or input_row_id(json.loads(value_in))
        if key not in rows:
            rows[key] = StoredRow(
                key,
                value_in,
                _attribute_json(text_exp, has_exp),
                _attribute_json(text_meta, has_meta),
            )
    return list(rows.values())


def _attribute_json(text: str, present: bool) -> str:
    """A wire-contract JSON attribute as stored JSON; text that is not JSON stays a string."""
    if not present:
        return "null"
    try:
        return json_text(json.loads(text), "span", "attribute")
    except (ValueError, DatasetError):
        return json.dumps(text, ensure_ascii=False)
