"""evalhouse: OpenTelemetry-native trace collector and evaluator for LLM applications.

The SDK's entry points are imported lazily (on first attribute access), so ``import
evalhouse`` stays light and never loads the server side.

>>> import evalhouse
>>> evalhouse.init()  # doctest: +SKIP
>>> result = evalhouse.run_experiment("capitals", data, task, scorers=[exact])  # doctest: +SKIP
>>> evalhouse.feedback("thumbs", value=1, trace_id=answer.trace_id)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from evalhouse.errors import EvalhouseError

if TYPE_CHECKING:
    from evalhouse.instrumentation import (
        Dataset,
        ExperimentResult,
        current_trace_id,
        dataset,
        feedback,
        init,
        run_experiment,
        run_experiment_async,
        scorer,
        task,
    )
    from evalhouse.scoring import Score

__all__ = [
    "Dataset",
    "EvalhouseError",
    "ExperimentResult",
    "Score",
    "__version__",
    "current_trace_id",
    "dataset",
    "feedback",
    "init",
    "run_experiment",
    "run_experiment_async",
    "scorer",
    "task",
]

__version__ = "0.1.0"

# Public name -> the module that defines it.
_LAZY = {
    "Dataset": "evalhouse.instrumentation",
    "ExperimentResult": "evalhouse.instrumentation",
    "current_trace_id": "evalhouse.instrumentation",
    "dataset": "evalhouse.instrumentation",
    "feedback": "evalhouse.instrumentation",
    "Score": "evalhouse.scoring",
    "init": "evalhouse.instrumentation",
    "run_experiment": "evalhouse.instrumentation",
    "run_experiment_async": "evalhouse.instrumentation",
    "scorer": "evalhouse.instrumentation",
    "task": "evalhouse.instrumentation",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'evalhouse' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
