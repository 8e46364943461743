"""The embedded engine gives the memory of a finished query back to the system."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

MIB = 2**20

# One query that allocates a few hundred MiB inside the engine and frees it, then the process
# idles for a second and runs a trivial query (jemalloc purges on allocator activity).
SCRIPT = """
    import time
    from evalhouse.store import Store

    def anon():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) * 1024 for l in status if l.startswith("RssAnon"))

    store = Store("chdb://{data}")
    store.query("SELECT 1")
    before = anon()
    store.query("SELECT length(groupArray(number)) FROM numbers(30000000)")
    held = anon()
    time.sleep(1.5)
    store.query("SELECT 1")
    print(before, held, anon())
"""


def _memory(tmp_path: Path, env: dict[str, str]) -> tuple[int, int, int]:
    clean = {k: v for k, v in os.environ.items() if k != "JE_MALLOC_CONF"}
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT.format(data=tmp_path / "ch"))],
        capture_output=True,
        text=True,
        timeout=120,
        env={**clean, **env},
    )
    assert result.returncode == 0, result.stderr
    before, held, after = (int(v) for v in result.stdout.split())
    return before, held, after


@pytest.mark.slow
def test_freed_engine_memory_goes_back_to_the_system_within_a_second(tmp_path: Path) -> None:
    before, held, after = _memory(tmp_path, {})
    assert held - before > 200 * MIB  # the query did allocate
    assert after - before < 64 * MIB, (before // MIB, held // MIB, after // MIB)


@pytest.mark.slow
def test_an_allocator_setting_of_the_users_own_wins(tmp_path: Path) -> None:
    # jemalloc's own 5 s: the freed pages are still held after a second.
    before, held, after = _memory(tmp_path, {"JE_MALLOC_CONF": "dirty_decay_ms:5000"})
    assert held - before > 200 * MIB
    assert after - before > 200 * MIB, (before // MIB, held // MIB, after // MIB)
