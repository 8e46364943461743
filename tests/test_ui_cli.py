"""``evalhouse ui``: the API and web UI without the collector, as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import ServeProcess, free_port, run_cli, wait_for


def start_ui(*args: str, log: Path) -> subprocess.Popen[str]:
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "evalhouse.surfaces.cli", "ui", *args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "EVALHOUSE_API_KEYS": ""},
        )


def wait_ready(process: subprocess.Popen[str], log: Path) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            pytest.fail(f"evalhouse ui exited early:\n{log.read_text()}")
        return "Ctrl-C to stop." in log.read_text()

    wait_for(ready, timeout=90)


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGINT)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def test_ui_without_data_says_what_to_do(tmp_path: Path) -> None:
    result = run_cli("ui", "--data-dir", str(tmp_path / "empty"), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "no evalhouse data" in result.stderr and "evalhouse serve" in result.stderr


@pytest.mark.slow
def test_ui_serves_pages_and_api_and_lets_sql_through(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    run_cli("migrate", "--data-dir", str(data_dir))
    port = free_port()
    log = tmp_path / "ui.log"
    process = start_ui("--data-dir", str(data_dir), "--ui-port", str(port), log=log)
    try:
        wait_ready(process, log)
        base = f"http://127.0.0.1:{port}"
        assert f"UI   {base}/" in log.read_text()
        with urllib.request.urlopen(f"{base}/", timeout=10) as response:
            assert b'<main id="app"' in response.read()
        with urllib.request.urlopen(f"{base}/api/health", timeout=10) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        # The UI process owns the embedded store: `evalhouse sql` goes through its API.
        info = json.loads((data_dir / "server.json").read_text())
        assert info["api"] == base and info["pid"] == process.pid
        result = run_cli("sql", "--data-dir", str(data_dir), "--format", "CSV", "SELECT 41 + 1")
        assert result.stdout.strip() == "42"
        # A second UI on the same data directory is refused with the address of the first.
        second = run_cli("ui", "--data-dir", str(data_dir), check=False)
        assert second.returncode == 1 and base in second.stderr
    finally:
        code = stop(process)
    assert code == 0 and "stopped." in log.read_text()
    assert not (data_dir / "server.json").exists()


@pytest.mark.slow
def test_serve_answers_the_ui_on_its_ui_port(serve: Callable[..., ServeProcess]) -> None:
    server = serve()
    base = f"http://127.0.0.1:{server.ui_port}"
    with urllib.request.urlopen(f"{base}/experiments/any-id", timeout=10) as response:
        page = response.read().decode()
    assert response.headers["content-type"].startswith("text/html")
    script = re.search(r'src="(/ui/[0-9a-f]+/app\.js)"', page)
    assert script is not None
    with urllib.request.urlopen(base + script.group(1), timeout=10) as response:
        assert b"ROUTES" in response.read()
