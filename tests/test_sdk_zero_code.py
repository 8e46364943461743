"""Zero-code tracing: `evalhouse-instrument python app.py` and `opentelemetry-instrument`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import count, wait_for
from fake_openai import Usage, fake_openai

from evalhouse.store import Store

BIN = Path(sys.executable).parent

# An app that knows nothing of evalhouse or OpenTelemetry.
APP = """
import os
import openai

with openai.OpenAI(base_url=os.environ["FAKE_OPENAI"], api_key="test") as client:
    reply = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "capital of France?"}]
    )
print(reply.choices[0].message.content)
"""


def run_app(command: list[str], env: dict[str, str], cwd: Path) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "EVALHOUSE_"))}
    (cwd / "app.py").write_text(APP)
    result = subprocess.run(
        [*command, sys.executable, "app.py"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def llm_spans(store: Store) -> list[tuple[Any, ...]]:
    return [
        tuple(row)
        for row in store.query(
            "SELECT ServiceName, LlmOperation, LlmRequestModel, InputTokens, OutputTokens, "
            "SpanAttributes['gen_ai.input.messages'] FROM otel_traces"
        )
    ]


@pytest.mark.slow
def test_evalhouse_instrument_traces_an_unmodified_app(
    start_collector: Callable[..., Any], store: Store, tmp_path: Path
) -> None:
    _, addresses = start_collector()
    with fake_openai(reply=lambda body: "Paris", usage=Usage(21, 4)) as server:
        stdout = run_app(
            [
                str(BIN / "evalhouse-instrument"),
                "--endpoint",
                addresses.grpc,
                "--service-name",
                "zc",
            ],
            {"FAKE_OPENAI": server.base_url},
            tmp_path,
        )

    assert stdout.strip() == "Paris"
    wait_for(lambda: count(store) >= 1)
    ((service, operation, model, tokens_in, tokens_out, messages),) = llm_spans(store)
    assert (service, operation, model, tokens_in, tokens_out) == (
        "zc",
        "chat",
        "gpt-4o-mini",
        21,
        4,
    )
    assert "capital of France?" in messages  # content captured on the span by default


@pytest.mark.slow
def test_opentelemetry_instrument_uses_the_evalhouse_distro(
    start_collector: Callable[..., Any], store: Store, tmp_path: Path
) -> None:
    _, addresses = start_collector()
    env = {
        "OTEL_PYTHON_DISTRO": "evalhouse",
        "OTEL_PYTHON_CONFIGURATOR": "evalhouse",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"{addresses.http}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_SERVICE_NAME": "stock-hook",
        "EVALHOUSE_CAPTURE_CONTENT": "false",
    }
    with fake_openai(reply=lambda body: "Paris", usage=Usage(8, 2)) as server:
        stdout = run_app(
            [str(BIN / "opentelemetry-instrument")],
            {**env, "FAKE_OPENAI": server.base_url},
            tmp_path,
        )

    assert stdout.strip() == "Paris"
    wait_for(lambda: count(store) >= 1)
    assert llm_spans(store) == [("stock-hook", "chat", "gpt-4o-mini", 8, 2, "")]


def test_evalhouse_instrument_reports_a_missing_command(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(BIN / "evalhouse-instrument"), "no-such-program-xyz"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 127
    assert "command not found: no-such-program-xyz" in result.stderr
