"""`evalhouse eval FILE...`: what it runs, what it prints, and its exit codes."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, wait_for
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_results_seed import T0
from test_runner_results import seed_run
from test_sdk_support import by_purpose, finished, memory_spans

from evalhouse.asgi import AsgiServer
from evalhouse.collector._auth import ApiKeys
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app
from evalhouse.surfaces.cli import main

EXPERIMENT = """
import evalhouse

def exact(output, expected):
    return output == expected

evalhouse.run_experiment(
    "{name}",
    [{{"input": "france", "expected": "Paris"}}, {{"input": "japan", "expected": "Tokyo"}}],
    lambda country: {{"france": "Paris", "japan": "Kyoto"}}[country],
    scorers=[exact],
)
"""


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


def test_runs_files_and_prints_each_summary(
    spans: InMemorySpanExporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module_level = write(tmp_path, "module_level.py", EXPERIMENT.format(name="module-level"))
    guarded = write(
        tmp_path,
        "guarded.py",
        """
        import evalhouse
        from helper import double  # a neighbour module, importable as with `python FILE`

        if __name__ == "__main__":
            evalhouse.run_experiment("guarded", [{"input": 2}], double)
        """,
    )
    write(tmp_path, "helper.py", "def double(x):\n    return 2 * x\n")
    functions = write(
        tmp_path,
        "functions.py",
        """
        import evalhouse

        def eval_sync():
            evalhouse.run_experiment("from-function", [{"input": 1}], lambda x: x)

        async def eval_async():
            await evalhouse.run_experiment_async("from-async-function", [{"input": 1}], str)

        def eval_needs_argument(x):
            raise AssertionError("functions with required parameters are not called")

        def helper_not_an_eval():
            raise AssertionError("only eval_* functions are called")
        """,
    )

    code = main(["eval", str(module_level), str(guarded), str(functions)])

    out = capsys.readouterr().out
    assert code == 0
    for name in ("module-level", "guarded", "from-function", "from-async-function"):
        assert f"Experiment {name} (" in out
    assert "exact  0.500  (2 scored)" in out
    assert len(by_purpose(finished(spans), "eval")) == 5


def test_a_failing_file_exits_2_and_the_others_still_run(
    spans: InMemorySpanExporter, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = write(tmp_path, "broken.py", "import evalhouse\n\n1 / 0\n")
    syntax = write(tmp_path, "syntax.py", "def oops(:\n")
    empty = write(tmp_path, "empty.py", "x = 1\n")
    good = write(tmp_path, "good.py", EXPERIMENT.format(name="still-runs"))

    code = main(
        ["eval", str(broken), str(syntax), str(empty), str(tmp_path / "missing.py"), str(good)]
    )

    captured = capsys.readouterr()
    assert code == 2
    assert "Experiment still-runs (" in captured.out
    errors = captured.err.splitlines()
    assert (
        f"evalhouse eval: {broken} failed: ZeroDivisionError: division by zero (line 3)" in errors
    )
    assert any(line.startswith(f"evalhouse eval: {syntax} failed: SyntaxError") for line in errors)
    assert any(line.endswith("(line 1)") and str(syntax) in line for line in errors)
    assert (
        f"evalhouse eval: {empty} ran no experiment: call evalhouse.run_experiment(...) in it, "
        "or define functions named eval_*"
    ) in errors
    assert f"evalhouse eval: {tmp_path / 'missing.py'}: no such file" in errors


@pytest.fixture
def api(store: Store) -> Iterator[tuple[str, Store]]:
    server = AsgiServer.start(api_app(store, ApiKeys(frozenset())), "127.0.0.1", 0, "API")
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()


def test_baseline_drop_exits_1_and_no_drop_exits_0(
    spans: InMemorySpanExporter,
    api: tuple[str, Store],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, store = api
    seed_run(store, "good-run", "capitals", 0.9, T0)
    seed_run(store, "poor-run", "weak", 0.2, T0)
    eval_file = write(tmp_path, "capitals.py", EXPERIMENT.format(name="capitals"))

    dropped = main(["eval", str(eval_file), "--baseline", "capitals", "--api-url", url])
    captured = capsys.readouterr()
    improved = main(["eval", str(eval_file), "--baseline", "weak", "--api-url", url])
    later = capsys.readouterr()

    assert dropped == 1
    assert "REGRESSED" in captured.out
    assert "has not computed this run's rows, so a drop in mean counts" in captured.err
    assert "scores regressed against baseline capitals: capitals: exact" in captured.err
    assert improved == 0 and "no score dropped" in later.out
    assert "regressed against" not in later.err


@pytest.mark.slow
def test_eval_command_sends_its_spans_over_otlp(
    start_collector: Callable[..., Any], store: Store, tmp_path: Path
) -> None:
    _, addresses = start_collector()
    eval_file = write(tmp_path, "otlp_eval.py", EXPERIMENT.format(name="over-otlp"))

    result = run_cli(
        "eval",
        str(eval_file),
        "--endpoint",
        addresses.grpc,
        "--summary-timeout",
        "0",
        env={"EVALHOUSE_API_URL": "http://127.0.0.1:9"},
    )

    assert "Experiment over-otlp (" in result.stdout
    wait_for(lambda: store.query("SELECT count() FROM otel_traces")[0][0] >= 6)
    rows = store.query("SELECT Purpose, count() FROM otel_traces GROUP BY Purpose ORDER BY Purpose")
    assert [tuple(row) for row in rows] == [("eval", 2), ("scorer", 2), ("task", 2)]


REGRESSION = """
import evalhouse

CAPITALS = {{"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Chile": "Santiago",
            "Kenya": "Nairobi", "Egypt": "Cairo", "Spain": "Madrid", "Italy": "Rome",
            "Cuba": "Havana", "Iran": "Tehran"}}
WRONG = {wrong}


def exact(output, expected):
    return output == expected


evalhouse.run_experiment(
    "capitals-gate",
    [{{"input": country, "expected": city}} for country, city in CAPITALS.items()],
    lambda country: "?" if country in WRONG else CAPITALS[country],
    scorers=[exact],
    summary_timeout=60,
)
"""


@pytest.mark.slow
def test_baseline_gate_uses_the_significance_test_of_the_server(
    serve: Callable[..., Any], tmp_path: Path
) -> None:
    server = serve()
    env = {
        "EVALHOUSE_API_URL": f"http://127.0.0.1:{server.ui_port}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.grpc_port}",
    }
    good = write(tmp_path, "good.py", REGRESSION.format(wrong="()"))
    one_wrong = write(tmp_path, "one_wrong.py", REGRESSION.format(wrong='("Peru",)'))
    many_wrong = write(
        tmp_path,
        "many_wrong.py",
        REGRESSION.format(wrong='("Peru", "Chile", "Kenya", "Cuba", "Iran", "Egypt")'),
    )

    assert run_cli("eval", str(good), env=env).returncode == 0
    # One row worse out of ten: a drop in mean, but not a significant one.
    small = run_cli("eval", str(one_wrong), "--baseline", "capitals-gate", env=env, check=False)
    assert small.returncode == 0, small.stderr
    assert "regressed against" not in small.stderr
    # Five more rows wrong than the previous run: a significant regression (p < 0.05), exit 1.
    large = run_cli("eval", str(many_wrong), "--baseline", "capitals-gate", env=env, check=False)
    assert large.returncode == 1, large.stdout + large.stderr
    assert "scores regressed against baseline capitals-gate: capitals-gate: exact" in large.stderr
