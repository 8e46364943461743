"""Replay: recorded production model calls sent again to other models, scored against the
recorded answers and compared with the recorded run (``docs/replay.md``).

A cohort of recorded calls (the explorer's filter, a ``where``, a window) becomes a dataset
version, a *recorded* experiment built from the original calls (the baseline) and one
experiment per model whose task re-issues each request (system instructions, tools and
parameters intact) through the provider's client. The evaluator computes every row's tokens,
latency and cost the same way; the result is the benchmark across them and each model's
paired comparison with the baseline. ``evalhouse replay`` and ``/api/replays`` are thin
layers over :func:`run_replay`, :func:`estimate` and :class:`Replays`.

>>> from evalhouse.replay import ReplaySpec, estimate, select_cohort
>>> spec = ReplaySpec.from_json({"filter": "tag:support", "models": ["openai:gpt-4o-mini"]})
>>> estimate(select_cohort(store, spec), spec)["models"]      # doctest: +SKIP
{'openai:gpt-4o-mini': {'calls': 40, 'input_tokens': 9120, ..., 'cost_usd': 0.0021}}
"""

from __future__ import annotations

from evalhouse.replay._cohort import Call, Cohort, select_cohort
from evalhouse.replay._estimate import estimate
from evalhouse.replay._jobs import Replays
from evalhouse.replay._requests import Answer, Caller
from evalhouse.replay._run import (
    ExperimentRunner,
    Progress,
    Replayer,
    checked_cohort,
    replay_targets,
    run_replay,
)
from evalhouse.replay._scorer import DEFAULT_SCORER, matches_recorded
from evalhouse.replay._spec import REPLAY_USAGE, ReplaySpec, Target, parse_target

__all__ = [
    "DEFAULT_SCORER",
    "REPLAY_USAGE",
    "Answer",
    "Call",
    "Caller",
    "Cohort",
    "ExperimentRunner",
    "Progress",
    "ReplaySpec",
    "Replayer",
    "Replays",
    "Target",
    "checked_cohort",
    "estimate",
    "matches_recorded",
    "parse_target",
    "replay_targets",
    "run_replay",
    "select_cohort",
]
