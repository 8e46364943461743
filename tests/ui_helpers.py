"""Browser tests of the web UI: Debian's Chromium driven by Playwright, and a seeded server.

Playwright never downloads a browser here: it launches ``/usr/bin/chromium`` (installed by
``scripts/test`` with apt). When Chromium is missing the browser tests FAIL with a message
saying how to install it; they are never skipped.

The seed is a real experiment run: ``evalhouse.run_experiment`` with a task calling the real
``openai`` client (against ``tests/fake_openai.py``), instrumented by the official OTel OpenAI
instrumentation, spans over OTLP/gRPC to an in-process collector, rows and scores computed by
the real evaluator, the API and UI served in-process over the same chDB store.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import ROOT, collector_settings, wait_for
from fake_openai import Usage, fake_openai
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator
from evalhouse.store import Store, migrate
from evalhouse.surfaces.api import api_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = ROOT / "tests" / "artifacts" / "screenshots"

CAPITALS = {
    "France": ("Paris", "europe"),
    "Japan": ("Tokyo", "asia"),
    "Peru": ("Lima", "americas"),
    "Kenya": ("Nairobi", "africa"),
    "Canada": ("Ottawa", "americas"),
    "Australia": ("Canberra", "oceania"),
    "Brazil": ("Brasília", "americas"),
    "Egypt": ("Cairo", "africa"),
}
# What each model answers where it differs from the right capital.
WRONG = {
    "gpt-4o-mini": {"Australia": "Sydney", "Canada": "Toronto"},
    "gpt-4o": {"Brazil": "Rio de Janeiro", "Kenya": "The capital of Kenya is Nairobi."},
}


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright; fails (never skips) when it is not installed."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the web UI browser tests need Debian's Chromium. Install "
            "it with 'apt-get install -y chromium' (scripts/test does this when it can)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def page_of(
    browser: Any, base_url: str, *, expected: tuple[str, ...] = (), width: int = 1440
) -> Iterator[Any]:
    """A fresh browser context and page ``width`` pixels wide; uncaught script errors fail the
    test, and so do console errors (failed requests) unless they contain one of ``expected``."""
    context = browser.new_context(
        base_url=base_url, accept_downloads=True, viewport={"width": width, "height": 900}
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda message: errors.append(message.text) if message.type == "error" else None,
    )
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
    # 401 answers are how the UI learns it needs a key: the browser logs them, they are fine.
    real = [e for e in errors if not any(part in e for part in ("401", *expected))]
    assert not real, f"the page logged errors: {real}"


def open_page(page: Any, path: str) -> float:
    """Open ``path`` and wait until the UI has rendered its data; seconds taken."""
    started = time.perf_counter()
    page.goto(path)
    page.wait_for_selector("body[data-ready=true]")
    return time.perf_counter() - started


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    # From the top, so the sticky header sits where a reader sees it.
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class SeededUi:
    """The in-process server over a store holding three runs of the ``capitals`` experiment."""

    url: str
    store: Store
    experiments: dict[str, str]  # label -> experiment id
    servers: list[AsgiServer] = field(default_factory=list)

    def serve(self, keys: frozenset[str] = frozenset()) -> str:
        """Another API + UI server on the same store (API keys, say); its base URL."""
        server = AsgiServer.start(api_app(self.store, ApiKeys(keys)), "127.0.0.1", 0, "UI")
        self.servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    def sql(self, query: str, **parameters: Any) -> list[tuple[Any, ...]]:
        return self.store.query(query, parameters or None)


def _reply(model: str, counter: itertools.count[int]) -> Any:
    def reply(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        country = next(name for name in CAPITALS if name in question)
        # gpt-4o is flaky on Brazil: right on every other call (trials disagree).
        if model == "gpt-4o" and country == "Brazil" and next(counter) % 2:
            return CAPITALS[country][0]
        return WRONG[model].get(country, CAPITALS[country][0])

    return reply


def _run(label: str, model: str, trials: int) -> str:
    counter = itertools.count()
    usage = Usage(prompt_tokens=24, completion_tokens=6)
    with (
        fake_openai(reply=_reply(model, counter), usage=usage) as llm,
        openai.OpenAI(base_url=llm.base_url, api_key="test") as client,
    ):

        def task(country: str) -> str:
            if country == "Atlantis":
                raise ValueError("no capital for Atlantis: it is not a country")
            answer = client.chat.completions.create(
                model=model,
                messages=[
                    {"role": "system", "content": "Answer with the city name only."},
                    {"role": "user", "content": f"What is the capital of {country}?"},
                ],
            )
            return answer.choices[0].message.content or ""

        def exact(output: Any, expected: Any) -> float:
            return 1.0 if output == expected else 0.0

        def mentions(output: Any, expected: Any) -> float:
            return 1.0 if isinstance(output, str) and expected in output else 0.0

        def concise(input: Any, output: Any) -> float:
            if input == "Egypt":
                raise RuntimeError("judge unavailable: rate limited")
            return 1.0 if len(str(output)) <= 12 else 0.0

        data: list[dict[str, Any]] = [
            {"id": country, "input": country, "expected": city, "metadata": {"region": region}}
            for country, (city, region) in CAPITALS.items()
        ]
        data.append({"id": "Atlantis", "input": "Atlantis", "expected": "?", "metadata": {}})
        result = evalhouse.run_experiment(
            "capitals",
            data,
            task,
            scorers=[exact, mentions, concise],
            metadata={"model": model, "run": label},
            dataset="capitals",
            trials=trials,
            summary_timeout=0,
            progress=False,
        )
    assert not result.warnings, result.warnings
    return result.experiment_id


@contextmanager
def seeded_ui(chdb_dsn: str, tmp_path: Path) -> Iterator[SeededUi]:
    """Three real runs of one experiment, evaluated, behind an in-process API and UI."""
    store = Store(chdb_dsn, database=f"ui_{uuid.uuid4().hex[:12]}")
    migrate(store)
    collector = Collector(collector_settings(tmp_path / "collector"), store)
    addresses = collector.start()
    saved = {name: os.environ.get(name) for name in ("EVALHOUSE_API_URL",)}
    servers: list[AsgiServer] = []
    try:
        api = AsgiServer.start(api_app(store, ApiKeys(frozenset())), "127.0.0.1", 0, "UI")
        servers.append(api)
        url = f"http://127.0.0.1:{api.port}"
        os.environ["EVALHOUSE_API_URL"] = url
        tracing = evalhouse.init(endpoint=f"http://{addresses.grpc}")
        assert tracing.error is None and "openai" in tracing.instrumented
        experiments = {
            "first": _run("first", "gpt-4o-mini", 1),
            "baseline": _run("baseline", "gpt-4o-mini", 1),
            "candidate": _run("candidate", "gpt-4o", 2),
        }
        roots = 9 + 9 + 18

        def all_stored() -> bool:
            # Each run flushed its spans; two writers store them in any order, so wait until
            # everything accepted is written, not only the roots.
            metrics = collector.metrics.snapshot()
            if metrics["written"] < metrics["accepted"]:
                return False
            query = "SELECT count() FROM otel_traces WHERE Purpose = 'eval'"
            return bool(store.query(query)[0][0] >= roots)

        wait_for(all_stored, timeout=30)
        settings = load_settings(
            data_dir=tmp_path / "evaluator", evaluator_quiet_seconds=0, evaluator_poll_seconds=0.1
        )
        evaluator = Evaluator(settings, store)
        try:
            # In a thread of its own: Playwright's sync API keeps an event loop running in
            # this one, and the evaluator runs its own loop.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(evaluator.run_until_idle, 120).result()
        finally:
            evaluator.close()
        rows = store.query("SELECT count() FROM experiment_rows")[0][0]
        assert rows == roots, f"evaluator computed {rows} of {roots} rows"
        yield SeededUi(url=url, store=store, experiments=experiments, servers=servers)
    finally:
        # Leave no exporter pointed at a collector that is about to stop.
        evalhouse.init(exporter=InMemorySpanExporter())
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for server in servers:
            server.stop()
        collector.stop()


def experiment_rows(seeded: SeededUi, experiment_id: str) -> list[dict[str, Any]]:
    """The experiment's rows as the SQL contract has them (what the UI must show)."""
    return seeded.store.query_dicts(
        "SELECT row_id, trial, trace_id, output, error, scores FROM experiment_rows "
        "WHERE experiment_id = {id:String} ORDER BY row_id, trial",
        {"id": experiment_id},
    )


def decode(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text
