"""`evalhouse eval FILE...`: what it runs, what it prints, and its exit codes."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli, wait_for
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_results_seed import T0, Row, seed
from test_sdk_support import by_purpose, finished, memory_spans

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
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


GATE = """
import evalhouse


def exact(output, expected):
    return output == expected


evalhouse.run_experiment(
    "gate",
    [{{"input": f"q{{i}}", "expected": "right"}} for i in range(10)],
    lambda question: "wrong" if int(question[1:]) >= {right} else "right",
    scorers=[exact],
    experiment_id="{experiment_id}",
)
"""


def _gate_run(store: Store, experiment_id: str, right: int, hours: int) -> None:
    """What the daemon computes for a run of GATE whose first ``right`` rows are right."""
    rows = [
        Row(f"r{i}", input=f"q{i}", scores={"exact": 1.0 if i < right else 0.0}) for i in range(10)
    ]
    seed(store, experiment_id, rows, name="gate", start=T0 + timedelta(hours=hours))


def test_the_gate_and_the_summary_give_the_servers_verdict(
    spans: InMemorySpanExporter,
    api: tuple[str, Store],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17: 1 row of 10 broken is a drop of 0.1 that is not significant (p=0.343): the
    summary says "no significant change" and the exit code is 0; 5 of 10 is a significant
    regression: REGRESSED in the summary, exit 1."""
    url, store = api
    _gate_run(store, "gate-1", right=10, hours=0)
    _gate_run(store, "gate-2", right=9, hours=1)
    _gate_run(store, "gate-3", right=5, hours=2)
    one = write(tmp_path, "one.py", GATE.format(right=9, experiment_id="gate-2"))
    five = write(tmp_path, "five.py", GATE.format(right=5, experiment_id="gate-3"))

    small = main(["eval", str(one), "--baseline", "gate", "--api-url", url])
    small_out = capsys.readouterr()
    large = main(["eval", str(five), "--baseline", "gate-1", "--api-url", url])
    large_out = capsys.readouterr()

    assert small == 0, small_out.err
    assert "baseline 1.000 (-0.100, p=0.343)  no significant change" in small_out.out
    assert "(gate-1; the previous run of 'gate' (same name))" in small_out.out
    assert "REGRESSED" not in small_out.out and "regressed" not in small_out.err
    assert large == 1
    assert "baseline 1.000 (-0.500, p=0.015)  REGRESSED" in large_out.out
    assert "(gate-1; pinned by id)" in large_out.out
    assert (
        "scores regressed significantly against baseline gate-1: gate: exact (-0.500, "
        "p=0.015)" in large_out.err
    )


def test_before_the_server_computed_the_run_a_drop_is_not_a_regression(
    spans: InMemorySpanExporter,
    api: tuple[str, Store],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, store = api
    _gate_run(store, "gate-1", right=10, hours=0)
    eval_file = write(tmp_path, "gate.py", GATE.format(right=9, experiment_id="not-computed"))

    code = main(["eval", str(eval_file), "--baseline", "gate", "--api-url", url,
                 "--summary-timeout", "0"])  # fmt: skip

    captured = capsys.readouterr()
    assert code == 3
    assert "baseline 1.000 (-0.100)  drop" in captured.out
    assert "no significance test (the server has not computed this run yet)" in captured.out
    assert "REGRESSED" not in captured.out and "regressed" not in captured.err
    assert "not checked against baseline gate: gate: the server has not computed" in captured.err


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
    assert "regressed" not in small.stderr
    assert "no significant change" in small.stdout and "REGRESSED" not in small.stdout
    # Five more rows wrong than the previous run: a significant regression (p < 0.05), exit 1.
    large = run_cli("eval", str(many_wrong), "--baseline", "capitals-gate", env=env, check=False)
    assert large.returncode == 1, large.stdout + large.stderr
    assert "REGRESSED" in large.stdout
    assert (
        "scores regressed significantly against baseline capitals-gate: capitals-gate: exact"
        in large.stderr
    )
