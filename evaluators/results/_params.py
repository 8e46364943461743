"""What a results parameter means to a caller that holds only text (a query string, a flag).

Each results function declares its parameters once, in its own signature: the type and the
default are Python's, the rest rides along in ``Annotated[..., Param(...)]``. The HTTP API
(``surfaces/_api_experiments.py``) reads the signature to parse and check a request and to
write the OpenAPI document, so there is no second table to drift from the function. A
parameter without a ``Param`` (``trials``' ``tolerance``) is for Python callers only.

>>> def page(results, limit: Annotated[int, Param("Page size.", low=1)] = 100): ...
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

__all__ = ["PASS_THRESHOLD", "Alpha", "ExperimentRef", "Param", "PassThreshold", "Where"]


@dataclass(frozen=True)
class Param:
    """How a parameter is offered over the API.

    ``help`` describes it; ``low`` / ``high`` bound a number (inclusive); ``choices`` lists
    the accepted texts. ``name`` is its name on the wire when that differs from Python's
    (``format`` for ``fmt``); ``path`` puts it in the URL (``{id}``); ``prefix`` gathers
    every parameter starting with it into one mapping (``meta.<key>=<value>``).
    """

    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()
    name: str | None = None
    path: bool = False
    prefix: str | None = None


# A score at least this high "passes" (TrainLoop's passed / total).
PASS_THRESHOLD = 0.5

ExperimentRef = Annotated[
    str, Param("Experiment id, or name (its latest run).", name="id", path=True)
]
Where = Annotated[
    str | None,
    Param(
        "SQL boolean over experiment_rows columns, run read-only, e.g. scores['accuracy'] < 0.5."
    ),
]
Alpha = Annotated[
    float | None,
    Param("Significance level, in (0, 1) (default from settings, 0.05).", low=0, high=1),
]
PassThreshold = Annotated[float, Param("A score at least this passes.", low=0, high=1)]
