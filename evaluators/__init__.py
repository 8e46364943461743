"""The evaluator daemon: rebuilds experiment runs from stored traces, computes metrics, scores;
the trace reader the trace page uses, with the same rules as the experiment rows; and the
one rule saying which run an experiment id or name means (:func:`resolve_experiment`).

Reads only the store; meets the collector through the tables, never by import.

>>> from evalhouse.config import load_settings
>>> evaluator = Evaluator(load_settings(data_dir="/tmp/eh"))   # doctest: +SKIP
>>> evaluator.run_until_idle()                                 # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.evaluators._cost import Usage, span_cost
from evalhouse.evaluators._daemon import Evaluator
from evalhouse.evaluators._experiments import Experiment, experiment_runs, resolve_experiment
from evalhouse.evaluators._messages import input_messages, output_messages
from evalhouse.evaluators._recorded import (
    NO_CONTENT,
    leaf_call_ids,
    recorded_answer,
    recorded_request,
)
from evalhouse.evaluators._retro import (
    RepriceReport,
    ScoreReport,
    reprice_experiment,
    score_experiment,
)
from evalhouse.evaluators._rule_estimate import estimate_rule
from evalhouse.evaluators._rule_rows import TARGET_COLUMNS
from evalhouse.evaluators._rule_values import trace_values
from evalhouse.evaluators._rules import (
    StoredRule,
    backfills,
    prepare_rule,
    read_rules,
    request_backfill,
    rule_entries,
    same_definition,
    sync_rules,
    write_rule,
)
from evalhouse.evaluators._trace_view import normalise_trace_id, read_trace
from evalhouse.evaluators._traces import fetch_spans
from evalhouse.evaluators._tree import MODEL_CALLS, TraceTree

__all__ = [
    "MODEL_CALLS",
    "NO_CONTENT",
    "TARGET_COLUMNS",
    "Evaluator",
    "Experiment",
    "RepriceReport",
    "ScoreReport",
    "StoredRule",
    "TraceTree",
    "Usage",
    "backfills",
    "estimate_rule",
    "experiment_runs",
    "fetch_spans",
    "input_messages",
    "leaf_call_ids",
    "normalise_trace_id",
    "output_messages",
    "prepare_rule",
    "read_rules",
    "read_trace",
    "recorded_answer",
    "recorded_request",
    "reprice_experiment",
    "request_backfill",
    "resolve_experiment",
    "rule_entries",
    "same_definition",
    "score_experiment",
    "span_cost",
    "sync_rules",
    "trace_values",
    "write_rule",
]
