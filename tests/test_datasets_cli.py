"""``evalhouse datasets``: on the store directly, and through a running ``evalhouse serve``."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServeProcess, run_cli

from evalhouse.instrumentation._datasets import dataset, list_datasets

CSV = (
    "id,input,expected,topic\n"
    'r1,"Where is my order, please?",Tracking link,orders\n'
    "r2,Refund window?,30 days,billing\n"
)
JSONL = (
    '{"id": "r2", "input": "Refund window?", "expected": "30 days (EU: 14)"}\n'
    '{"id": "r3", "input": {"lang": "de", "q": "Hallo?"}, "metadata": {"topic": "i18n"}}\n'
)


def _jsonl(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line]


@pytest.mark.slow
def test_push_list_show_on_the_store_directly(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    (tmp_path / "support.csv").write_text(CSV)
    (tmp_path / "more.jsonl").write_text(JSONL)

    empty = run_cli("datasets", "list", *data, check=False)
    assert empty.returncode == 1
    assert "no evalhouse data in" in empty.stderr

    pushed = run_cli(
        "datasets", "push", "support", str(tmp_path / "support.csv"), *data, "--description", "v1"
    )
    assert pushed.stdout.strip() == "dataset support version 1: 2 rows pushed, 2 rows in all"
    pushed = run_cli("datasets", "push", "support", str(tmp_path / "more.jsonl"), *data)
    assert pushed.stdout.strip() == "dataset support version 2: 2 rows pushed, 3 rows in all"

    listing = run_cli("datasets", "list", *data).stdout.splitlines()
    assert listing[0].split() == ["NAME", "VERSION", "ROWS", "VERSIONS", "UPDATED", "DESCRIPTION"]
    assert listing[1].split()[:4] == ["support", "2", "3", "2"]
    assert listing[1].endswith("v1")

    latest = _jsonl(run_cli("datasets", "show", "support", *data, "--format", "jsonl").stdout)
    assert latest == [
        {
            "id": "r1",
            "input": "Where is my order, please?",
            "expected": "Tracking link",
            "metadata": {"topic": "orders"},
        },
        {"id": "r2", "input": "Refund window?", "expected": "30 days (EU: 14)", "metadata": None},
        {
            "id": "r3",
            "input": {"lang": "de", "q": "Hallo?"},
            "expected": None,
            "metadata": {"topic": "i18n"},
        },
    ]
    table = run_cli("datasets", "show", "support", "--version", "1", "--limit", "1", *data).stdout
    lines = table.splitlines()
    assert lines[0] == "dataset support version 1: 2 rows (v1)"
    assert lines[1].split() == ["ID", "INPUT", "EXPECTED", "METADATA"]
    assert lines[2].startswith("r1  ") and "Where is my order, please?" in lines[2]
    assert lines[3] == "... 1 more rows (--limit, or --format jsonl for all)"

    history = run_cli("datasets", "versions", "support", *data).stdout.splitlines()
    assert [line.split()[:3] for line in history[1:]] == [["1", "2", "2"], ["2", "3", "2"]]
    assert "csv" in history[1] and "jsonl" in history[2]

    (tmp_path / "bad.jsonl").write_text('{"input": 1}\n{"input": 2,\n')
    bad = run_cli("datasets", "push", "support", str(tmp_path / "bad.jsonl"), *data, check=False)
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1
    assert "bad.jsonl line 2 is not valid JSON" in bad.stderr
    missing = run_cli("datasets", "show", "nope", *data, check=False)
    assert missing.returncode == 1
    assert "no dataset named 'nope'" in missing.stderr
    history = run_cli("datasets", "versions", "support", *data).stdout.splitlines()
    assert len(history) == 3  # the bad push left no version


@pytest.mark.slow
def test_commands_go_through_the_running_server_and_its_api_key(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    env = {"EVALHOUSE_API_KEYS": "k3y"}
    server = serve(env=env)
    (tmp_path / "support.csv").write_text(CSV)

    # serve holds the data directory: these only work through its API (with the key).
    refused = server.cli("datasets", "list", check=False)
    assert refused.returncode == 1
    assert "API key" in refused.stderr
    pushed = run_cli(
        "datasets",
        "push",
        "support",
        str(tmp_path / "support.csv"),
        "--data-dir",
        str(server.data_dir),
        env=env,
    )
    assert "version 1: 2 rows pushed" in pushed.stdout

    api = f"http://127.0.0.1:{server.ui_port}"
    qa = dataset("support", api_url=api, api_key="k3y")
    qa.append([{"id": "r9", "input": "from the SDK"}], description="sdk push")
    [info] = list_datasets(api_url=api, api_key="k3y")
    assert (info.name, info.version, info.rows, info.description) == (
        "support",
        2,
        3,
        "sdk push",
    )
    shown = run_cli(
        "datasets",
        "show",
        "support",
        "--format",
        "jsonl",
        "--data-dir",
        str(server.data_dir),
        env=env,
    )
    assert [row["id"] for row in _jsonl(shown.stdout)] == ["r1", "r2", "r9"]
