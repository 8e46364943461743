"""The evaluator daemon: rebuilds experiment runs from stored traces, computes metrics, scores;
the trace reader the trace page uses, with the same rules as the experiment rows; and the
one rule saying which run an experiment id or name means (:func:`resolve_experiment`).

Reads only the store; meets the collector through the tables, never by import.

>>> from evalhouse.config import load_settings
>>> evaluator = Evaluator(load_settings(data_dir="/tmp/eh"))   # doctest: +SKIP
>>> evaluator.run_until_idle()                                 # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.evaluators._daemon import Evaluator
from evalhouse.evaluators._experiments import Experiment, resolve_experiment
from evalhouse.evaluators._messages import input_messages, output_messages
from evalhouse.evaluators._retro import (
    RepriceReport,
    ScoreReport,
    reprice_experiment,
    score_experiment,
)
from evalhouse.evaluators._trace_view import normalise_trace_id, read_trace
from evalhouse.evaluators._tree import MODEL_CALLS

__all__ = [
    "MODEL_CALLS",
    "Evaluator",
    "Experiment",
    "RepriceReport",
    "ScoreReport",
    "input_messages",
    "normalise_trace_id",
    "output_messages",
    "read_trace",
    "reprice_experiment",
    "resolve_experiment",
    "score_experiment",
]
