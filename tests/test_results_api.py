"""The results API on a real listener (the app ``evalhouse serve`` runs, on a free port):
every route, API keys, errors, the OpenAPI document, the SDK's ``compare`` and the CLI going
through a running server."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from test_results_seed import T0, Row, clear, results_database, seed

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.config import AggregateScore
from evalhouse.errors import EvalhouseError
from evalhouse.evaluators.results import Results
from evalhouse.instrumentation._compare import compare as sdk_compare
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app
from evalhouse.surfaces.cli import main as cli_main
from evalhouse.surfaces.serve import SERVER_FILE

KEY = "results-key"
AGGREGATES = '{"overall": {"method": "min", "scores": ["accuracy", "safety"]}}'
ROUTES = [
    "/api/experiments",
    "/api/experiments/trend",
    "/api/experiments/{id}",
    "/api/experiments/{id}/rows",
    "/api/experiments/{id}/trials",
    "/api/compare",
    "/api/benchmark",
    "/api/experiments/{id}/export",
    "/api/experiments/{id}/trainloop",
]


def _rows(shift: float) -> list[Row]:
    return [
        Row(
            f"r{i}",
            {"q": i},
            f"answer {i}",
            scores={"accuracy": 0.5 + 0.05 * i, "safety": 0.9 - shift - 0.01 * i},
            metadata={"topic": "a" if i % 2 else "b"},
            task_duration_ms=100.0 + i,
            seconds=i,
        )
        for i in range(6)
    ]


def same(a: Any, b: Any) -> bool:
    """Equal JSON, floats within 1e-9 (ClickHouse may add in another order each time)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a == pytest.approx(b, rel=1e-9, abs=1e-12)
    return bool(a == b)


class Api:
    def __init__(self, base: str, store: Store) -> None:
        self.base = base
        self.store = store

    def get(self, path: str, key: str | None = KEY) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(self.base + path)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def json(self, path: str) -> Any:
        status, _, body = self.get(path)
        assert status == 200, body
        return json.loads(body)


@pytest.fixture(scope="module")
def api(chdb_dsn: str) -> Iterator[Api]:
    with results_database(chdb_dsn) as store, pytest.MonkeyPatch.context() as patch:
        clear(store)
        seed(store, "base", _rows(0.0), name="nightly", metadata={"model": "m1"})
        seed(
            store,
            "cand",
            _rows(0.5),
            name="nightly",
            metadata={"model": "m2"},
            start=T0 + timedelta(hours=1),
        )
        # The routes take aggregate scores from the settings in force, as `serve` does.
        patch.setenv("EVALHOUSE_AGGREGATE_SCORES", AGGREGATES)
        app = api_app(store, ApiKeys(frozenset({KEY})))
        server = AsgiServer.start(app, "127.0.0.1", 0, "API")
        try:
            yield Api(f"http://127.0.0.1:{server.port}", store)
        finally:
            server.stop()


def test_every_route_answers_with_its_keys(api: Api) -> None:
    listed = api.json("/api/experiments?name=nightly&meta.model=m2")
    assert listed["total"] == 1 and listed["experiments"][0]["experiment_id"] == "cand"
    trend = api.json("/api/experiments/trend?name=nightly")
    assert [run["experiment_id"] for run in trend["runs"]] == ["base", "cand"]
    assert trend["trend"]["safety"]["direction"] == "declining"
    summary = api.json("/api/experiments/nightly?group_by=metadata.topic")
    assert summary["experiment"]["experiment_id"] == "cand"
    assert {g["key"] for g in summary["group_by"]["groups"]} == {"a", "b"}
    assert set(summary) >= {"experiment", "scores", "metrics", "cost", "spans", "errors"}
    rows = api.json("/api/experiments/cand/rows?sort=score:accuracy&order=desc&limit=2")
    assert [r["row_id"] for r in rows["rows"]] == ["r5", "r4"] and rows["total"] == 6
    assert "score:overall" in rows["columns"]
    trials = api.json("/api/experiments/cand/trials")
    assert len(trials["inputs"]) == 6 and not any(i["flaky"] for i in trials["inputs"])
    compared = api.json("/api/compare?candidate=cand")
    assert compared["baseline"]["experiment_id"] == "base"
    assert compared["scores"]["safety"]["verdict"] == "regressed"
    assert compared["scores"]["overall"]["verdict"] == "regressed"  # the aggregate score
    bench = api.json("/api/benchmark?dataset=support&by=metadata.model")
    assert bench["best_overall"] == "m1"
    trainloop = api.json("/api/experiments/cand/trainloop")
    assert trainloop["suites"]["nightly"]["events_processed"] == 6
    status, headers, body = api.get("/api/experiments/cand/export?format=csv&fields=row_id,trial")
    assert status == 200
    assert headers["content-disposition"] == 'attachment; filename="nightly-cand.csv"'
    assert body.decode().splitlines()[:2] == ["row_id,trial", "r0,0"]


def test_api_answers_are_the_library_answers(api: Api) -> None:
    aggregates = {"overall": AggregateScore(method="min", scores=["accuracy", "safety"])}
    direct = Results(api.store, aggregates).compare("cand", "base")
    assert same(api.json("/api/compare?candidate=cand&baseline=base"), direct)
    assert same(api.json("/api/experiments/cand"), Results(api.store, aggregates).summary("cand"))


def test_api_keys_are_enforced(api: Api) -> None:
    for path in ("/api/experiments", "/api/compare?candidate=cand", "/api/openapi.json"):
        status, _, body = api.get(path, key=None)
        assert status == 401, path
        assert "API key" in json.loads(body)["error"]
        assert api.get(path, key="wrong")[0] == 401
    request = urllib.request.Request(api.base + "/api/experiments")
    request.add_header("x-api-key", KEY)
    with urllib.request.urlopen(request, timeout=60) as response:
        assert response.status == 200


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/api/experiments/nope", 404, "no experiment with id or name 'nope'"),
        ("/api/experiments/cand/rows?where=nosuch%20%3E%201", 400, "nosuch"),
        ("/api/experiments/cand/rows?where=1%3B%20DROP%20TABLE%20scores", 400, "';'"),
        ("/api/experiments/cand/rows?where=1)%20OR%20(1", 400, "Unmatched parentheses"),
        ("/api/experiments/cand/rows?limit=lots", 400, "limit='lots' must be an integer"),
        ("/api/experiments/cand/rows?order=up", 400, "one of asc, desc"),
        ("/api/experiments/cand?colour=red", 400, "unknown parameter 'colour'"),
        ("/api/experiments/cand?alpha=0", 400, "alpha=0: the significance level must be in"),
        ("/api/compare?candidate=cand&alpha=1", 400, "alpha=1: the significance level must"),
        ("/api/compare", 400, "needs the parameter candidate"),
        ("/api/compare?candidate=base", 400, "no earlier run"),
        ("/api/compare?candidate=cand&key=trace_id%20IN%20otel_traces", 400, "IN takes a list"),
        (
            "/api/compare?candidate=cand&key=%60file%60('/etc/hostname')",
            400,
            "function file() is not allowed",
        ),
        ("/api/experiments/cand/export?format=xlsx", 400, "format='xlsx' must be one of"),
        ("/api/benchmark", 400, "needs the parameter dataset"),
    ],
)
def test_errors_are_json_and_say_what_to_do(api: Api, path: str, status: int, message: str) -> None:
    got, headers, body = api.get(path)
    assert got == status
    assert headers["content-type"] == "application/json"
    assert message in json.loads(body)["error"]


def test_openapi_documents_every_route(api: Api) -> None:
    document = api.json("/api/openapi.json")
    assert document["openapi"].startswith("3.")
    for route in ROUTES:
        operation = document["paths"][route]["get"]
        assert operation["summary"] and "200" in operation["responses"]
    names = {p["name"] for p in document["paths"]["/api/compare"]["get"]["parameters"]}
    assert {"candidate", "baseline", "key", "where", "alpha"} <= names


def test_the_sdk_compares_through_the_api(api: Api) -> None:
    body = sdk_compare("cand", "base", api_url=api.base, api_key=KEY)
    assert body["scores"]["safety"]["verdict"] == "regressed"
    assert same(body, api.json("/api/compare?candidate=cand&baseline=base"))
    with pytest.raises(EvalhouseError, match="no experiment with id or name 'nope'"):
        sdk_compare("nope", api_url=api.base, api_key=KEY)


def test_the_cli_goes_through_a_running_server(
    api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What `evalhouse serve` leaves in its data directory; this process stands for it.
    (tmp_path / SERVER_FILE).write_text(json.dumps({"pid": os.getpid(), "api": api.base}))
    monkeypatch.setenv("EVALHOUSE_API_KEYS", KEY)
    data = ["--data-dir", str(tmp_path)]
    assert cli_main(["experiments", "list", *data, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["experiment_id"] for e in listed["experiments"]] == ["cand", "base"]
    assert cli_main(["compare", "base", "cand", *data, "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "REGRESSED" in out
    gate = ["compare", "base", "cand", *data, "--fail-on-regression", "--score", "accuracy"]
    assert cli_main(gate) == 0
    capsys.readouterr()
    target = tmp_path / "rows.jsonl"
    assert cli_main(["experiments", "export", "cand", *data, "-o", str(target)]) == 0
    assert len(target.read_text().splitlines()) == 6
    assert cli_main(["experiments", "show", "nope", *data]) == 1
    assert "no experiment with id or name 'nope'" in capsys.readouterr().err
