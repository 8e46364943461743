"""The SDK's public surface, and `import evalhouse` staying light."""

from __future__ import annotations

import json
import subprocess
import sys

import evalhouse
import evalhouse.instrumentation
from evalhouse.scoring import Score


def test_top_level_names_are_the_sdk_entry_points() -> None:
    assert sorted(evalhouse.__all__) == sorted(
        [
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
    )
    for name in evalhouse.__all__:
        assert getattr(evalhouse, name) is not None
    assert evalhouse.Score is Score
    assert evalhouse.run_experiment is evalhouse.instrumentation.run_experiment
    assert set(evalhouse.__all__) <= set(dir(evalhouse))


def test_instrumentation_exports_exactly_its_public_names() -> None:
    public = {
        name
        for name in vars(evalhouse.instrumentation)
        if not name.startswith("_")
        and name != "annotations"  # from __future__
        and not isinstance(getattr(evalhouse.instrumentation, name), type(sys))
    }
    assert set(evalhouse.instrumentation.__all__) == public


def _modules_after(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_importing_evalhouse_and_the_sdk_never_loads_the_server_side() -> None:
    heavy = ("chdb", "clickhouse_connect", "starlette", "uvicorn", "pydantic", "grpc")
    server = (
        "evalhouse.store",
        "evalhouse.collector",
        "evalhouse.evaluators",
        "evalhouse.surfaces",
    )

    bare = _modules_after("import evalhouse")
    assert not {m for m in bare if m.startswith(("opentelemetry", *heavy, *server))}

    sdk = _modules_after(
        "import evalhouse\n"
        "evalhouse.init, evalhouse.run_experiment, evalhouse.task, evalhouse.ExperimentResult"
    )
    assert "evalhouse.instrumentation._runner" in sdk
    assert not {m for m in sdk if m.startswith((*heavy, *server))}
