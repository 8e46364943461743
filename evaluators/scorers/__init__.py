"""The scorer library: built-in heuristics, an LLM judge and adapters, behind one registry.

Every scorer here is called through :func:`evalhouse.scoring.run_scorer`, by the experiment
runner and the evaluator daemon alike; :func:`resolve_scorer` turns a name from a row's
``evalhouse.scorers`` attribute or the project configuration into one. Heuristic scorers
are plain sync callables (``run_scorer`` runs them in a thread); the LLM judge is async.

>>> import asyncio
>>> from evalhouse.scoring import run_scorer
>>> scorer = resolve_scorer("normalized_match")
>>> asyncio.run(run_scorer(scorer, input="q", output=" PARIS ", expected="paris"))[0].value
1.0
"""

from __future__ import annotations

from evalhouse.evaluators.scorers._json import JsonDiff, JsonSchema, JsonValid
from evalhouse.evaluators.scorers._judge import DEFAULT_JUDGE_MODEL, JudgeError, LlmJudge
from evalhouse.evaluators.scorers._registry import BUILTIN_SCORERS, UnknownScorer, resolve_scorer
from evalhouse.evaluators.scorers._similarity import Levenshtein, ListOverlap, NumericCloseness
from evalhouse.evaluators.scorers._text import Contains, ExactMatch, NormalizedMatch, Regex
from evalhouse.evaluators.scorers._values import InvalidScorerOptions, MissingExpected

__all__ = [
    "BUILTIN_SCORERS",
    "DEFAULT_JUDGE_MODEL",
    "Contains",
    "ExactMatch",
    "InvalidScorerOptions",
    "JsonDiff",
    "JsonSchema",
    "JsonValid",
    "JudgeError",
    "Levenshtein",
    "ListOverlap",
    "LlmJudge",
    "MissingExpected",
    "NormalizedMatch",
    "NumericCloseness",
    "Regex",
    "UnknownScorer",
    "resolve_scorer",
]
