"""The recorded baseline: the original calls as an experiment, so the replays compare with it.

Each replayable call becomes one experiment row traced by the wire contract
(``docs/wire-contract.md``): an ``eval`` root and a ``task`` span carrying the recorded
request as input and the recorded answer as output and expected value, and under them one
model-call span with the recorded provider, models and token counts (and the provided cost,
when the call had one), all with the original start and end times. The evaluator daemon
then computes the row's tokens, latency and cost exactly as it does for the replayed models.

>>> emit_recorded(tracer, spec, calls, experiment_id="ab12", scorers=["exact_match"])
... # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace

from evalhouse import contract
from evalhouse.encoding import encode
from evalhouse.replay._cohort import Call
from evalhouse.replay._spec import ReplaySpec

__all__ = ["RECORDED", "emit_recorded", "row_input"]

RECORDED = "recorded"


def row_input(call: Call) -> dict[str, Any]:
    """The dataset row input of a call: its recorded request (and the model it asked)."""
    return {**(call.request or {}), "model": call.request_model}


def emit_recorded(
    tracer: trace.Tracer,
    spec: ReplaySpec,
    calls: Sequence[Call],
    *,
    experiment_id: str,
    scorers: Sequence[str],
    dataset_version: int | None = None,
) -> None:
    """Trace ``calls`` as the rows of the recorded experiment ``experiment_id``."""
    models = sorted({call.model for call in calls})
    shared: dict[str, Any] = {
        contract.SPAN_PURPOSE: "eval",
        contract.EXPERIMENT_NAME: spec.experiment(None),
        contract.EXPERIMENT_ID: experiment_id,
        contract.EXPERIMENT_METADATA: encode(
            {
                "model": RECORDED,
                "provider": RECORDED,
                "recorded_models": models,
                "replay": spec.name,
            }
        ),
        contract.DATASET_NAME: spec.dataset,
        contract.SCORERS: encode(list(scorers)),
    }
    if dataset_version is not None:
        shared[contract.DATASET_VERSION] = dataset_version
    for call in calls:
        start, end = call.start_ns, call.start_ns + call.duration_ns
        input_json, answer_json = encode(row_input(call)), encode(call.answer)
        root = tracer.start_span(
            "eval",
            context=otel_context.Context(),
            start_time=start,
            attributes={
                **shared,
                contract.DATASET_ROW_ID: call.span_id,
                contract.TRIAL: 0,
                contract.INPUT: input_json,
                contract.EXPECTED: answer_json,
                contract.OUTPUT: answer_json,
                contract.METADATA: encode(
                    {"source_span_id": call.span_id, "source_trace_id": call.trace_id}
                ),
            },
        )
        parent = trace.set_span_in_context(root)
        task = tracer.start_span(
            "task",
            context=parent,
            start_time=start,
            attributes={
                contract.SPAN_PURPOSE: "task",
                contract.INPUT: input_json,
                contract.OUTPUT: answer_json,
            },
        )
        llm: dict[str, Any] = {
            "gen_ai.operation.name": call.operation,
            "gen_ai.provider.name": call.provider,
            "gen_ai.request.model": call.request_model,
            "gen_ai.response.model": call.model,
            "gen_ai.usage.input_tokens": call.input_tokens,
            "gen_ai.usage.output_tokens": call.output_tokens,
        }
        if call.cache_read_tokens:
            llm["gen_ai.usage.cache_read.input_tokens"] = call.cache_read_tokens
        if call.provided_cost_usd is not None:
            llm["gen_ai.usage.cost"] = call.provided_cost_usd
        span = tracer.start_span(
            f"{call.operation} {call.request_model}",
            context=trace.set_span_in_context(task),
            kind=trace.SpanKind.CLIENT,
            start_time=start,
            attributes={k: v for k, v in llm.items() if v != ""},
        )
        span.end(end_time=end)
        task.end(end_time=end)
        root.end(end_time=end)
