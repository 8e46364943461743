"""The default replay scorer: does the replayed answer say what the recorded one said?

Short answers (a label, a number, a name: up to 200 characters) match when equal after
normalising case, spacing and end punctuation; longer answers score their token-set
similarity (rapidfuzz), since two good paragraphs are rarely equal. When an LLM judge is
configured (``EVALHOUSE_JUDGE_MODEL``), the replay uses the ``correctness`` rubric judge
instead (:func:`default_scorer`). The evaluator daemon runs it as ``evalhouse.replay:
matches_recorded`` on the recorded baseline and on every replayed model alike.

>>> matches_recorded(" Paris. ", "paris")
1.0
>>> matches_recorded("Lyon", "Paris")
0.0
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["DEFAULT_SCORER", "JUDGE_SCORER", "default_scorer", "matches_recorded"]

DEFAULT_SCORER = "evalhouse.replay:matches_recorded"
JUDGE_SCORER = "llm_judge:correctness"
_SHORT = 200
_SPACES = re.compile(r"\s+")


def _normal(value: Any) -> str:
    text = value if isinstance(value, str) else "" if value is None else str(value)
    return _SPACES.sub(" ", text).strip().strip(".!?;:,\"'`").strip().casefold()


def matches_recorded(output: Any, expected: Any) -> float:
    """1.0 when the replayed ``output`` says what the recorded ``expected`` said (see the
    module's docstring), down to 0.0."""
    got, want = _normal(output), _normal(expected)
    if got == want:
        return 1.0
    if len(got) <= _SHORT and len(want) <= _SHORT:
        return 0.0
    from rapidfuzz import fuzz

    return round(fuzz.token_set_ratio(got, want) / 100.0, 4)


def default_scorer() -> str:
    """The scorer every replay runs: the rubric judge when one is configured, else
    :func:`matches_recorded`."""
    return JUDGE_SCORER if os.environ.get("EVALHOUSE_JUDGE_MODEL") else DEFAULT_SCORER
