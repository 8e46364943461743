"""``evalhouse experiments ...`` on the store directly: readable tables, ``--json`` equal to
the API's answers, exports written to files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from test_results_seed import T0, Row, clear, results_database, seed

from evalhouse.evaluators.results import Results
from evalhouse.store import Store
from evalhouse.surfaces.cli import main as cli_main


def _rows(model_cost: float, drift: float) -> list[Row]:
    return [
        Row(
            f"r{i}",
            {"q": i % 3},
            f"out {i}",
            scores={"accuracy": 0.9 - drift - 0.1 * (i % 3)},
            metadata={"topic": ["billing", "orders", "account"][i % 3]},
            trial=i // 3,
            cost_usd=model_cost,
            task_duration_ms=100.0 * (i + 1),
            seconds=i,
        )
        for i in range(6)
    ]


@pytest.fixture(scope="module")
def shared(chdb_dsn: str) -> Iterator[Store]:
    with results_database(chdb_dsn) as store:
        clear(store)
        seed(store, "run-a", _rows(0.01, 0.0), name="nightly", metadata={"model": "big"})
        seed(
            store,
            "run-b",
            _rows(0.001, 0.2),
            name="nightly",
            metadata={"model": "small"},
            start=T0 + timedelta(hours=1),
        )
        unstable = _rows(0.01, 0.0)
        unstable[3].scores["accuracy"] = 0.1  # q0's second trial disagrees with its first
        seed(store, "run-c", unstable, name="flaky", start=T0 + timedelta(hours=2))
        yield store


def cli(
    capsys: pytest.CaptureFixture[str], store: Store, *args: str, code: int = 0
) -> tuple[str, str]:
    dsn = f"{store.dsn}?database={store.database}"
    assert cli_main([*args, "--clickhouse", dsn]) == code
    captured = capsys.readouterr()
    return captured.out, captured.err


def test_list_and_trend_print_tables(shared: Store, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, shared, "experiments", "list", "--name", "nightly")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["created", "name", "id", "dataset"]
    assert [line.split()[3] for line in lines[2:4]] == ["run-b", "run-a"]
    assert lines[-1] == "2 of 2 experiments"
    out, _ = cli(capsys, shared, "experiments", "list", "--meta", "model=small", "--json")
    assert [e["experiment_id"] for e in json.loads(out)["experiments"]] == ["run-b"]
    out, _ = cli(capsys, shared, "experiments", "trend", "nightly")
    assert "accuracy: declining (-0.2000 vs the previous run)" in out
    _, err = cli(capsys, shared, "experiments", "list", "--meta", "model", code=1)
    assert "write KEY=VALUE" in err


def test_show_prints_scores_metrics_cost_and_groups(
    shared: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = cli(capsys, shared, "experiments", "show", "nightly", "--group-by", "topic")
    assert out.startswith("Experiment nightly (run-b)")
    assert 'metadata {"model": "small"}' in out
    score_line = next(line for line in out.splitlines() if line.startswith("accuracy"))
    mean = Results(shared).summary("run-b")["scores"]["accuracy"]["mean"]
    assert score_line.split()[1] == f"{mean:.3f}"
    assert "Cost: total $0.006000, per row $0.001000" in out
    assert "Group metadata.topic = billing (2 rows)" in out
    out, _ = cli(capsys, shared, "experiments", "show", "run-a", "--json", "--where", "trial = 0")
    body = json.loads(out)
    assert body["rows"] == 3 and body["where"] == "trial = 0"


def test_trials_flags_the_unstable_input(shared: Store, capsys: pytest.CaptureFixture[str]) -> None:
    out, _ = cli(capsys, shared, "experiments", "trials", "run-a")
    lines = out.splitlines()
    assert "FLAKY" not in out  # same score in both trials of every input
    # Issue 17: no "shown by this filter" when there is no filter.
    assert lines[-1] == "0 flaky of 3 inputs"
    out, _ = cli(capsys, shared, "experiments", "trials", "run-c", "--flaky")
    assert "FLAKY" in out and out.splitlines()[-1] == "1 flaky of 1 inputs"
    out, _ = cli(capsys, shared, "experiments", "trials", "run-a", "--where", "trial = 0")
    assert out.splitlines()[-1] == "0 flaky of 3 inputs matching --where trial = 0"


def test_benchmark_prints_groups_and_savings(
    shared: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = cli(capsys, shared, "experiments", "benchmark", "--dataset", "support")
    assert "Best overall: big; best value (score per $): small" in out
    assert "Choosing small over big saves $0.009000 per row (90.0%)" in out
    out, _ = cli(capsys, shared, "experiments", "benchmark", "--dataset", "support", "--trainloop")
    assert json.loads(out)["comparison"]["best_value"] == "small"


def test_exports_are_written_to_files(
    shared: Store, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "rows.csv"
    _, err = cli(
        capsys, shared, "experiments", "export", "run-a", "--format", "csv", "-o", str(target)
    )
    assert f"to {target}" in err
    table = list(csv.DictReader(io.StringIO(target.read_text())))
    assert [row["row_id"] for row in table] == [f"r{i}" for i in range(6)]
    out, _ = cli(
        capsys,
        shared,
        "experiments",
        "export",
        "run-a",
        "--format",
        "jsonl",
        "--fields",
        "row_id,trial",
        "-o",
        "-",
    )
    assert json.loads(out.splitlines()[0]) == {"row_id": "r0", "trial": 0}
    trainloop = tmp_path / "tl.json"
    cli(
        capsys,
        shared,
        "experiments",
        "export",
        "run-a",
        "--format",
        "trainloop",
        "-o",
        str(trainloop),
    )
    assert json.loads(trainloop.read_text())["suites"]["nightly"]["events_processed"] == 6
    _, err = cli(capsys, shared, "experiments", "export", "nope", "-o", "-", code=1)
    assert "no experiment with id or name 'nope'" in err


def test_a_missing_data_directory_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["experiments", "list", "--data-dir", str(tmp_path / "none")]) == 1
    assert "start 'evalhouse serve' there first" in capsys.readouterr().err


def test_output_into_a_closed_pipe_ends_quietly() -> None:
    """``evalhouse ... | head`` stops when head has read enough: like other Unix tools, no
    "[Errno 32] Broken pipe" and exit 0."""
    process = subprocess.Popen(
        [sys.executable, "-m", "evalhouse.surfaces.cli", "experiments", "compare", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first write
    with process.stderr:
        err = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert err == b""
