"""ExperimentResult: format, pandas, progress, and what the server adds (metrics, baseline).

The server side is the real results API (in process) over a real chDB database, with rows
written into the evaluator's tables as the daemon writes them (``test_results_seed``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_results_seed import T0, Row, seed
from test_sdk_support import memory_spans

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.errors import EvalhouseError
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app

DATA = [{"input": "france", "expected": "Paris"}, {"input": "japan", "expected": "Tokyo"}]


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    yield from memory_spans(monkeypatch)


def _serve_api(store: Store) -> Iterator[tuple[str, Store]]:
    server = AsgiServer.start(api_app(store, ApiKeys(frozenset())), "127.0.0.1", 0, "API")
    yield f"http://127.0.0.1:{server.port}", store
    server.stop()


@pytest.fixture
def api(store: Store) -> Iterator[tuple[str, Store]]:
    """The results API over a migrated store, where rows are seeded as the daemon writes them."""
    yield from _serve_api(store)


@pytest.fixture
def unmigrated_api(bare_store: Store) -> Iterator[tuple[str, Store]]:
    yield from _serve_api(bare_store)


def add_row(
    store: Store,
    experiment_id: str,
    row_id: str,
    tokens: tuple[int, int],
    score: float,
    cost: float | None = 0.002,
) -> None:
    """One computed row of the experiment "capitals", as the evaluator daemon stores it."""
    row = Row(
        row_id,
        input=row_id,
        task_duration_ms=40.0,
        llm_duration_ms=30.0,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cost_usd=cost,
        cost_provenance="inferred" if cost is not None else "unknown",
        scores={"faithfulness": score},
    )
    seed(store, experiment_id, [row], name="capitals")


def seed_run(store: Store, experiment_id: str, name: str, exact: float, start: datetime) -> None:
    """A finished earlier run with one row scoring ``exact``."""
    seed(
        store,
        experiment_id,
        [Row("r1", input="q", scores={"exact": exact})],
        name=name,
        start=start,
    )


def answer(country: str) -> str:
    return {"france": "Paris", "japan": "Kyoto"}[country]


def exact(output: Any, expected: Any) -> bool:
    return bool(output == expected)


def test_format_pandas_and_progress(
    spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    result = evalhouse.run_experiment("capitals", DATA, answer, scorers=[exact], trials=2)
    assert capsys.readouterr().err == ""  # not a terminal: no progress bar

    text = result.format()
    assert text.splitlines()[0] == f"Experiment capitals ({result.experiment_id})"
    assert "4 rows (2 inputs x 2 trials), 0 errored" in text
    assert "exact  0.500  (4 scored)" in text
    assert "Metrics: unavailable (cannot reach the evalhouse API" in text
    assert f"View: {result.url}" in text and result.url.endswith(
        f"/experiments/{result.experiment_id}"
    )
    frame = result.to_pandas()
    assert list(frame["trial"]) == [0, 1, 0, 1]
    assert list(frame["score.exact"]) == [1.0, 1.0, 0.0, 0.0]
    assert list(frame["output"]) == ["Paris", "Paris", "Kyoto", "Kyoto"]

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if pandas were not installed
    with pytest.raises(EvalhouseError, match="pip install pandas"):
        result.to_pandas()


def test_progress_bar_on_request(
    spans: InMemorySpanExporter, capsys: pytest.CaptureFixture[str]
) -> None:
    evalhouse.run_experiment("capitals", DATA, answer, progress=True)
    err = capsys.readouterr().err
    assert err.startswith("\rcapitals [") and "2/2 rows" in err and err.endswith("\n")


def test_server_metrics_wait_for_the_daemon_then_report(
    spans: InMemorySpanExporter, api: tuple[str, Store]
) -> None:
    url, store = api
    add_row(store, "exp-1", "r1", (100, 20), 0.5)
    # The daemon finishes the second row a moment after the run ends.
    later = threading.Timer(1.0, add_row, (store, "exp-1", "r2", (50, 10), 1.0))
    later.start()
    started = time.monotonic()
    result = evalhouse.run_experiment(
        "capitals", DATA, answer, api_url=url, summary_timeout=20, experiment_id="exp-1"
    )
    later.join()

    assert 0.9 < time.monotonic() - started < 10
    summary = result.summary
    assert summary.status == "ready", summary.message
    assert (summary.rows, summary.input_tokens, summary.output_tokens) == (2, 150, 30)
    assert summary.total_tokens == 180 and summary.avg_task_duration_ms == 40.0
    assert summary.cost_usd == pytest.approx(0.004) and summary.cost_provenance == ("inferred",)
    assert summary.scores == {"faithfulness": 0.75}
    assert "tokens 180 (in 150, out 30); cost $0.004000 (inferred)" in result.format()

    pending = evalhouse.run_experiment(
        "capitals", DATA, answer, api_url=url, summary_timeout=0.6, experiment_id="exp-2"
    )
    assert pending.summary.status == "pending"
    assert "had 0 of 2 rows after 0.6 s" in pending.summary.message
    assert "Metrics: pending" in pending.format()

    add_row(store, "exp-3", "r1", (1, 1), 1.0)
    add_row(store, "exp-3", "r2", (1, 1), 1.0, cost=None)  # a model without a known price
    unpriced = evalhouse.run_experiment(
        "capitals", DATA, answer, api_url=url, summary_timeout=5, experiment_id="exp-3"
    )
    assert unpriced.summary.status == "ready" and unpriced.summary.cost_usd is None
    assert unpriced.summary.unpriced_rows == 1
    assert "cost unknown (no price for 1 of 2 rows)" in unpriced.format()


def test_server_without_experiment_tables_is_reported_not_fatal(
    spans: InMemorySpanExporter, unmigrated_api: tuple[str, Store]
) -> None:
    url, _ = unmigrated_api
    result = evalhouse.run_experiment(
        "capitals", DATA, answer, scorers=[exact], api_url=url, baseline="capitals"
    )

    assert result.summary.status == "unavailable"
    assert "no experiment tables" in result.summary.message
    assert "run 'evalhouse migrate'" in result.summary.message
    assert result.baseline is not None and result.baseline.status == "unavailable"
    assert result.regressions == []


def test_without_the_server_a_drop_is_a_drop_never_a_regression(
    spans: InMemorySpanExporter, api: tuple[str, Store]
) -> None:
    """The daemon has not computed this run: the means only, called a drop, saying why."""
    url, store = api
    seed_run(store, "old", "capitals", 0.1, T0)
    seed_run(store, "latest", "capitals", 0.9, T0 + timedelta(days=31))
    seed_run(store, "unrelated", "other", 0.0, T0 + timedelta(days=59))
    broken = [Row("r1", input="q", error="401 invalid api key")]  # failed whole: skipped
    seed(store, "broken", broken, name="capitals", start=T0 + timedelta(days=40))

    result = evalhouse.run_experiment(
        "capitals", DATA, answer, scorers=[exact], api_url=url, baseline="capitals",
        summary_timeout=0,
    )  # fmt: skip
    missing = evalhouse.run_experiment(
        "capitals", DATA, answer, scorers=[exact], api_url=url, baseline="no-such-experiment",
        summary_timeout=0,
    )  # fmt: skip

    assert result.baseline is not None and result.baseline.status == "means_only"
    assert result.baseline.experiment_id == "latest"
    (comparison,) = result.baseline.scores
    assert (comparison.mean, comparison.baseline_mean) == (0.5, 0.9)
    assert comparison.delta == pytest.approx(-0.4) and comparison.dropped
    assert comparison.verdict is None and not comparison.regressed
    assert result.regressions == [] and result.baseline.drops == ["exact"]
    text = result.format()
    assert "baseline 0.900 (-0.400)  drop" in text and "REGRESSED" not in text
    assert "no significance test (the server has not computed this run yet)" in text
    assert "drop in the mean of exact" in text
    assert missing.baseline is not None and missing.baseline.status == "not_found"
    assert "no earlier run 'no-such-experiment'" in missing.format()


def _seed_candidate(store: Store, experiment_id: str, exact: list[float], hours: int) -> None:
    """The rows the daemon computes for a run of DATA-like inputs q0..qN (exact scores)."""
    rows = [
        Row(f"r{i}", input=f"q{i}", scores={"exact": value}, task_duration_ms=40.0)
        for i, value in enumerate(exact)
    ]
    seed(store, experiment_id, rows, name="gate", start=T0 + timedelta(hours=hours))


TEN = [{"input": f"q{i}", "expected": "right"} for i in range(10)]


def test_the_summary_prints_the_servers_verdict_with_its_p_value(
    spans: InMemorySpanExporter, api: tuple[str, Store]
) -> None:
    """1 row of 10 worse than the previous run: a drop of 0.1 that is not significant. The
    SDK says what `evalhouse compare` says for the same pair, p-value included."""
    url, store = api
    _seed_candidate(store, "gate-1", [1.0] * 10, hours=0)
    _seed_candidate(store, "gate-2", [1.0] * 9 + [0.0], hours=1)

    def one_wrong(question: str) -> str:
        return "wrong" if question == "q9" else "right"

    result = evalhouse.run_experiment(
        "gate", TEN, one_wrong, scorers=[exact], api_url=url, baseline="gate",
        experiment_id="gate-2", summary_timeout=5,
    )  # fmt: skip

    baseline = result.baseline
    assert baseline is not None and baseline.status == "compared", baseline
    assert baseline.experiment_id == "gate-1"
    assert baseline.reason == "the previous run of 'gate' (same name)"
    (comparison,) = baseline.scores
    server = result.compare("gate")["scores"]["exact"]
    assert comparison.verdict == server["verdict"] == "no significant change"
    assert comparison.p_value == pytest.approx(server["p_value"]) == pytest.approx(0.343, abs=1e-3)
    assert result.regressions == []
    text = result.format()
    assert "baseline 1.000 (-0.100, p=0.343)  no significant change" in text
    assert "REGRESSED" not in text and "no significant regression at alpha 0.05" in text


def test_the_previous_run_skips_runs_whose_rows_all_errored(
    spans: InMemorySpanExporter, api: tuple[str, Store]
) -> None:
    url, store = api
    _seed_candidate(store, "good-run", [1.0] * 10, hours=0)
    broken = [Row(f"r{i}", input=f"q{i}", error="401 invalid api key") for i in range(10)]
    seed(store, "broken-run", broken, name="gate", start=T0 + timedelta(hours=1))
    _seed_candidate(store, "new-run", [1.0] * 10, hours=2)

    result = evalhouse.run_experiment(
        "gate", TEN, lambda q: "right", scorers=[exact], api_url=url, baseline="gate",
        experiment_id="new-run", summary_timeout=5,
    )  # fmt: skip
    pinned = evalhouse.run_experiment(
        "gate", TEN, lambda q: "right", scorers=[exact], api_url=url, baseline="broken-run",
        experiment_id="new-run", summary_timeout=5,
    )  # fmt: skip

    assert result.baseline is not None and result.baseline.experiment_id == "good-run"
    assert "skipped 1 later run whose rows all errored: broken-run (10 of 10 rows errored)" in (
        result.baseline.reason
    )
    assert "skipped 1 later run whose rows all errored" in result.format()
    assert pinned.baseline is not None and pinned.baseline.experiment_id == "broken-run"
    assert pinned.baseline.reason.startswith("pinned by id (every row of it errored")
