"""Which attribute holds a span's input, output, expected value and metadata.

One rule for the experiment rows (:mod:`._rows`) and the trace page (:mod:`._trace_view`), so
the two never show different values for the same span (``docs/sql.md``, "Values"):

1. evalhouse's own attribute (``evalhouse.input``...: JSON texts by the wire contract) wins;
2. else another dialect's, in this order: Braintrust ``braintrust.input_json`` (the exact
   JSON) and ``braintrust.input``, OpenInference ``input.value``, OpenLLMetry
   ``traceloop.entity.input``, Langfuse ``langfuse.observation.input``. Braintrust comes
   first because its attributes are the values of an evaluation row (``input``, ``expected``,
   ``output`` of its ``eval``/``task`` spans), where the others are generic values that an
   instrumentation may put on any span; it is also the order experiment rows were computed
   with from the start, so a recomputed row keeps its values;
3. an empty value never wins.

Over several spans (a row reads its root, then its task spans), evalhouse's attribute on any
of them wins over another dialect's on the first. Values come back as JSON texts: another
dialect's plain text is JSON-encoded (``Paris`` becomes ``"Paris"``).

>>> value_json(INPUT, {"input.value": "hi", "braintrust.input": '{"q": 1}'})
'{"q": 1}'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from evalhouse import contract

__all__ = ["EXPECTED", "INPUT", "METADATA", "OUTPUT", "ValueKeys", "value_json"]


@dataclass(frozen=True)
class ValueKeys:
    """Where one value lives: evalhouse's attribute, then the other dialects', in order."""

    own: str
    others: tuple[str, ...]


INPUT = ValueKeys(
    contract.INPUT,
    (
        "braintrust.input_json",
        "braintrust.input",
        "input.value",
        "traceloop.entity.input",
        "langfuse.observation.input",
    ),
)
OUTPUT = ValueKeys(
    contract.OUTPUT,
    (
        "braintrust.output_json",
        "braintrust.output",
        "output.value",
        "traceloop.entity.output",
        "langfuse.observation.output",
    ),
)
EXPECTED = ValueKeys(contract.EXPECTED, ("braintrust.expected",))
METADATA = ValueKeys(contract.METADATA, ("braintrust.metadata", "langfuse.observation.metadata"))


def value_json(keys: ValueKeys, *spans: Mapping[str, str]) -> str:
    """The value the attributes of ``spans`` (in order of preference) give, as a JSON text;
    "" when none carries it.

    >>> value_json(OUTPUT, {"evalhouse.output": ""}, {"output.value": "Paris"})
    '"Paris"'
    """
    for attributes in spans:
        value = attributes.get(keys.own)
        if value:
            return value
    for attributes in spans:
        for key in keys.others:
            value = attributes.get(key)
            if value:
                return value if _is_json(value) else json.dumps(value)
    return ""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
