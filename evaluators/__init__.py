"""The evaluator daemon: rebuilds experiment runs from stored traces, computes metrics, scores.

Reads only the store; meets the collector through the tables, never by import.

>>> from evalhouse.config import load_settings
>>> evaluator = Evaluator(load_settings(data_dir="/tmp/eh"))   # doctest: +SKIP
>>> evaluator.run_until_idle()                                 # doctest: +SKIP
"""

from __future__ import annotations

from evalhouse.evaluators._daemon import Evaluator
from evalhouse.evaluators._retro import (
    RepriceReport,
    ScoreReport,
    reprice_experiment,
    score_experiment,
)

__all__ = [
    "Evaluator",
    "RepriceReport",
    "ScoreReport",
    "reprice_experiment",
    "score_experiment",
]
