"""An ``evalhouse eval`` session: defaults for the experiments a file runs, and their results.

``evalhouse eval FILE`` runs the file inside :func:`collecting`; every ``run_experiment`` call
made meanwhile (in this context, or a thread that copied it) takes the session's baseline and
API URL unless it passes its own, and appends its result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class EvalSession:
    """What ``evalhouse eval`` hands the experiments an eval file runs: the baseline to compare
    with, where the API is, and the results it prints (see :func:`collecting`)."""

    baseline: str | None = None
    api_url: str | None = None
    summary_timeout: float | None = None
    results: list[Any] = field(default_factory=list)


_current: ContextVar[EvalSession | None] = ContextVar("evalhouse_eval_session", default=None)


def current() -> EvalSession | None:
    return _current.get()


@contextmanager
def collecting(session: EvalSession) -> Iterator[EvalSession]:
    token = _current.set(session)
    try:
        yield session
    finally:
        _current.reset(token)
