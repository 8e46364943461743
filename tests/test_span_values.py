"""One rule for a span's input and output, and for which model calls count, held by the
experiment rows and the trace page alike (``evaluators/_values.py``, ``evaluators/_tree.py``).

The rule: evalhouse's own attribute wins; else Braintrust's (``braintrust.input_json``, then
``braintrust.input``), then OpenInference ``input.value``, OpenLLMetry
``traceloop.entity.input``, Langfuse ``langfuse.observation.input``; an empty value never
wins. A model call counts when no model call sits below it.
"""

from __future__ import annotations

import json

from test_evaluator_spans import Trace, evaluate, rows, write

from evalhouse.evaluators import read_trace
from evalhouse.store import Store

BRAINTRUST_INPUT = {"question": "capital of France?"}


def _dialects_trace() -> Trace:
    """An experiment row whose root carries its values in several dialects at once, with a
    framework span around the model call that repeats its usage."""
    t = Trace()
    usage = {"gen_ai.usage.input_tokens": 120, "gen_ai.usage.output_tokens": 8}
    root = t.add(
        "eval",
        {
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": "dialects",
            "evalhouse.experiment.id": "dialects-1",
            "evalhouse.dataset.row_id": "row-1",
            # No evalhouse.input: Braintrust's JSON wins over OpenInference's and the others.
            "input.value": "from openinference",
            "traceloop.entity.input": "from openllmetry",
            "braintrust.input": json.dumps(BRAINTRUST_INPUT),
            # An empty evalhouse.output never wins; the plain text after it is the output.
            "evalhouse.output": "",
            "output.value": "Paris",
        },
        ms=500,
    )
    task = t.add("task", {"evalhouse.span.purpose": "task"}, parent=root, at_ms=10, ms=400)
    wrapper = t.add(
        "agent", {"gen_ai.operation.name": "chat", **usage}, parent=task, at_ms=20, ms=300
    )
    t.add(
        "chat gpt-4o",
        {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", **usage},
        parent=wrapper,
        at_ms=30,
        ms=200,
    )
    return t


def test_the_row_and_the_trace_page_read_the_same_values_and_count_the_same_calls(
    store: Store,
) -> None:
    trace = _dialects_trace()
    write(store, trace)
    evaluate(store)

    row = rows(store)[trace.hex]
    assert json.loads(row["input"]) == BRAINTRUST_INPUT
    assert row["output"] == '"Paris"'  # another dialect's plain text, JSON-encoded
    assert (row["input_tokens"], row["output_tokens"]) == (120, 8)  # the leaf call, once

    page = read_trace(store, trace.hex)
    assert page is not None
    spans = {span["name"]: span for span in page["spans"]}
    assert spans["eval"]["input"] == BRAINTRUST_INPUT
    assert spans["eval"]["output"] == "Paris"
    counted = [name for name, span in spans.items() if span["llm"] and span["llm"]["counted"]]
    assert counted == ["chat gpt-4o"]
