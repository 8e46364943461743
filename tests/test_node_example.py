"""examples/node and the Node snippet of docs/wire-contract.md, run against `evalhouse serve`.

A Node.js app with the OpenTelemetry JS SDK only (no evalhouse code) must produce experiment
rows: one eval root, one task, one LLM and one scorer span per dataset row, with the
contract attributes read back from ClickHouse exactly as sent. The example is installed with
``npm ci`` into a git-ignored cache, reinstalled only when its package files change.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, ServeProcess, free_port, wait_for

EXAMPLE = ROOT / "examples" / "node"
DOC = ROOT / "docs" / "wire-contract.md"
CACHE = ROOT / "tests" / "artifacts" / "node-example"
PACKAGE_FILES = ("package.json", "package-lock.json")
SOURCES = ("experiment.mjs", "dataset.json")
API_KEY = "node-example-key"
EXPERIMENT = "node-example"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not installed; install Node.js >= 20.6 to run examples/node",
)


def _install_stamp() -> str:
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update((EXAMPLE / name).read_bytes())
    node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    digest.update(node.stdout.encode())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def node_example() -> Path:
    """A copy of examples/node with its dependencies installed by ``npm ci``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stamp_file = CACHE / ".installed"
    stamp = _install_stamp()
    if not stamp_file.exists() or stamp_file.read_text() != stamp:
        shutil.rmtree(CACHE / "node_modules", ignore_errors=True)
        for name in PACKAGE_FILES:
            shutil.copy2(EXAMPLE / name, CACHE / name)
        installed = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=CACHE,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if installed.returncode != 0:
            pytest.fail(f"npm ci in {CACHE} failed ({installed.returncode}): {installed.stderr}")
        stamp_file.write_text(stamp)
    for name in SOURCES:
        shutil.copy2(EXAMPLE / name, CACHE / name)
    return CACHE


def run_node(
    directory: Path, script: str, endpoint: str, **otel: str
) -> subprocess.CompletedProcess[str]:
    # The developer's own OTEL_* settings must not redirect the example.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
    env.update({f"OTEL_{key.upper()}": value for key, value in otel.items()})
    return subprocess.run(
        ["node", script], cwd=directory, env=env, capture_output=True, text=True, timeout=120
    )


def sql_rows(server: ServeProcess, query: str) -> list[dict[str, Any]]:
    output = server.cli("sql", "--format", "JSONEachRow", query).stdout
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def doc_blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```$", DOC.read_text("utf-8"), flags=re.S | re.M)


def doc_query(title: str) -> str:
    for block in doc_blocks("sql"):
        if block.splitlines()[0] == f"-- {title}":
            return block
    raise AssertionError(f"docs/wire-contract.md has no ```sql block titled {title!r}")


def test_node_example_exits_non_zero_when_no_collector_listens(node_example: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    result = run_node(node_example, "experiment.mjs", closed, exporter_otlp_timeout="3000")
    assert result.returncode == 1
    assert "could not export the spans" in result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr


@pytest.mark.slow
def test_node_example_spans_become_experiment_rows(
    serve: Any, node_example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serve and `evalhouse sql` both read the key from the environment.
    monkeypatch.setenv("EVALHOUSE_API_KEYS", API_KEY)
    server = serve()
    endpoint = f"http://127.0.0.1:{server.grpc_port}"

    refused = run_node(node_example, "experiment.mjs", endpoint)
    assert refused.returncode == 1
    assert "UNAUTHENTICATED" in refused.stderr

    headers = f"authorization=Bearer%20{API_KEY}"
    result = run_node(node_example, "experiment.mjs", endpoint, exporter_otlp_headers=headers)
    assert result.returncode == 0, result.stderr
    sent = {row["trace_id"]: row for row in map(json.loads, result.stdout.splitlines())}
    dataset = json.loads((EXAMPLE / "dataset.json").read_text())
    items = {item["id"]: item for item in dataset}
    assert len(dataset) == 3
    assert sorted(row["row_id"] for row in sent.values()) == sorted(items)

    # 4 spans per row, and nothing from the refused run.
    count = "SELECT toString(count()) AS spans FROM otel_traces"
    wait_for(lambda: sql_rows(server, count) == [{"spans": "12"}], timeout=30)
    spans = sql_rows(
        server,
        "SELECT TraceId, SpanId, ParentSpanId, SpanName, SpanKind, StatusCode, Purpose, "
        "ExperimentName, ExperimentId, RowId, Trial, LlmOperation, LlmProvider, "
        "LlmRequestModel, InputTokens, OutputTokens, SpanAttributes FROM otel_traces",
    )
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for span in spans:
        by_trace[span["TraceId"]].append(span)
    assert set(by_trace) == set(sent)

    experiment_ids = set()
    for trace_id, row in sent.items():
        item = items[row["row_id"]]
        trace = by_trace[trace_id]
        assert len(trace) == 4
        assert all(span["StatusCode"] == "STATUS_CODE_UNSET" for span in trace)
        (root,) = [s for s in trace if s["ParentSpanId"] == ""]
        (task,) = [s for s in trace if s["Purpose"] == "task"]
        assert task["ParentSpanId"] == root["SpanId"]
        (llm,) = [s for s in trace if s["ParentSpanId"] == task["SpanId"]]
        (scorer,) = [s for s in trace if s["Purpose"] == "scorer"]

        attributes = root["SpanAttributes"]
        assert (root["Purpose"], root["ExperimentName"]) == ("eval", EXPERIMENT)
        assert (root["RowId"], root["Trial"]) == (item["id"], 0)
        assert str(uuid.UUID(root["ExperimentId"])) == root["ExperimentId"]
        experiment_ids.add(root["ExperimentId"])
        assert attributes["evalhouse.dataset.name"] == "node-example-questions"
        assert json.loads(attributes["evalhouse.input"]) == item["input"]
        assert json.loads(attributes["evalhouse.expected"]) == item["expected"]
        assert json.loads(attributes["evalhouse.metadata"]) == item["metadata"]
        assert json.loads(attributes["evalhouse.output"]) == row["output"]
        assert json.loads(attributes["evalhouse.experiment.metadata"])["model"] == "gpt-4o-mini"

        assert json.loads(task["SpanAttributes"]["evalhouse.input"]) == item["input"]
        assert json.loads(task["SpanAttributes"]["evalhouse.output"]) == row["output"]

        assert llm["SpanName"] == "chat gpt-4o-mini"
        assert (llm["SpanKind"], llm["Purpose"]) == ("SPAN_KIND_CLIENT", "")
        assert (llm["LlmOperation"], llm["LlmProvider"]) == ("chat", "openai")
        assert llm["LlmRequestModel"] == "gpt-4o-mini"
        assert row["input_tokens"] > 0 and row["output_tokens"] > 0
        assert int(llm["InputTokens"]) == row["input_tokens"]
        assert int(llm["OutputTokens"]) == row["output_tokens"]

        assert scorer["ParentSpanId"] == root["SpanId"]
        assert scorer["SpanAttributes"]["evalhouse.score.name"] == "exact_match"
        exact = 1.0 if row["output"] == item["expected"] else 0.0
        assert float(scorer["SpanAttributes"]["evalhouse.score.value"]) == exact == row["score"]
    assert len(experiment_ids) == 1

    # The SQL of docs/wire-contract.md finds the same rows.
    (experiment_id,) = experiment_ids
    doc_rows = sql_rows(server, doc_query("experiment rows"))
    assert [(r["experiment_id"], r["row_id"], r["trial"]) for r in doc_rows] == [
        (experiment_id, row_id, 0) for row_id in sorted(items)
    ]
    assert {r["trace_id"] for r in doc_rows} == set(sent)
    doc_spans = sql_rows(server, doc_query("spans of an experiment"))
    assert len(doc_spans) == 12
    model_calls = [s for s in doc_spans if s["operation"] == "chat"]
    assert sorted(int(s["input_tokens"]) for s in model_calls) == sorted(
        row["input_tokens"] for row in sent.values()
    )
    doc_scores = sql_rows(server, doc_query("scores of an experiment"))
    expected_scores = sorted((row["row_id"], "exact_match", row["score"]) for row in sent.values())
    assert [(r["row_id"], r["scorer"], r["score"]) for r in doc_scores] == expected_scores

    # The Node snippet of the doc runs as written and produces one more row.
    (snippet,) = [block for block in doc_blocks("js") if "provider.shutdown()" in block]
    (node_example / "snippet.mjs").write_text(snippet)
    ran = run_node(node_example, "snippet.mjs", endpoint, exporter_otlp_headers=headers)
    assert ran.returncode == 0, ran.stderr
    snippet_spans = (
        "SELECT Purpose AS purpose, LlmOperation AS operation, toString(InputTokens) AS tokens, "
        "SpanAttributes['evalhouse.score.value'] AS score FROM otel_traces WHERE TraceId IN "
        "(SELECT TraceId FROM otel_traces WHERE ExperimentName = 'node-snippet') "
        "ORDER BY purpose"
    )
    wait_for(lambda: len(sql_rows(server, snippet_spans)) == 4, timeout=30)
    assert sql_rows(server, snippet_spans) == [
        {"purpose": "", "operation": "chat", "tokens": "12", "score": ""},
        {"purpose": "eval", "operation": "", "tokens": "0", "score": ""},
        {"purpose": "scorer", "operation": "", "tokens": "0", "score": "1"},
        {"purpose": "task", "operation": "", "tokens": "0", "score": ""},
    ]
