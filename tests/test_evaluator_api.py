"""Retrospective scoring and repricing over the HTTP API, and ``evalhouse score`` /
``evalhouse reprice`` going through a running ``evalhouse serve`` that holds the data dir."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import ServeProcess, run_cli, wait_for
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from test_evaluator_daemon import experiment
from test_evaluator_spans import Trace, eval_root, evaluate, write

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.errors import ExperimentAmbiguous
from evalhouse.evaluators import resolve_experiment
from evalhouse.store import Store
from evalhouse.surfaces._api_evaluator import score_request
from evalhouse.surfaces.api import api_app

KEY = "evaluator-key"


class Api:
    def __init__(self, base: str) -> None:
        self.base = base

    def post(self, path: str, body: Any, key: str | None = KEY) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST")
        request.add_header("Content-Type", "application/json")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.fixture
def api(store: Store) -> Iterator[Api]:
    """The real API app on a free port over a store holding experiment exp-1 (4 rows)."""
    write(store, *experiment(4, []))
    evaluate(store)
    server = AsgiServer.start(api_app(store, ApiKeys(frozenset({KEY}))), "127.0.0.1", 0, "API")
    try:
        yield Api(f"http://127.0.0.1:{server.port}")
    finally:
        server.stop()


def stored_scores(store: Store) -> list[tuple[str, float]]:
    rows = store.query(
        "SELECT row_id, value FROM scores FINAL WHERE scorer = 'exact_match' ORDER BY row_id"
    )
    return [(row[0], row[1]) for row in rows]


def test_score_route_scores_an_experiment_once_and_rescore_replaces(api: Api, store: Store) -> None:
    status, report = api.post("/api/experiments/exp-1/score", {"scorers": ["exact_match"]})
    assert status == 200, report
    assert report == {"experiment_id": "exp-1-id", "rows": 4, "runs": 4, "skipped": 0, "errors": 0}
    # Rows 0 and 2 answered "yes" as expected; 1 and 3 "no".
    expected = [("row-0", 1.0), ("row-1", 0.0), ("row-2", 1.0), ("row-3", 0.0)]
    assert stored_scores(store) == expected
    status, again = api.post("/api/experiments/exp-1-id/score", {"scorers": ["exact_match"]})
    assert (status, again["runs"], again["skipped"]) == (200, 0, 4)
    body = {"scorers": ["exact_match"], "where": "row_id = 'row-1'", "rescore": True}
    status, rescored = api.post("/api/experiments/exp-1/score", body)
    assert (status, rescored["rows"], rescored["runs"], rescored["skipped"]) == (200, 1, 1, 0)
    assert stored_scores(store) == expected  # replaced, not added


def test_reprice_route_recomputes_every_row(api: Api) -> None:
    status, report = api.post("/api/experiments/exp-1/reprice", {})
    assert status == 200, report
    assert (report["experiment_id"], report["rows"]) == ("exp-1-id", 4)
    assert report["price_data_version"].startswith("genai-prices")
    assert isinstance(report["previous_versions"], list)


def test_routes_need_the_api_key(api: Api, store: Store) -> None:
    status, answer = api.post("/api/experiments/exp-1/score", {"scorers": ["exact_match"]}, None)
    assert status == 401 and "API key" in answer["error"]
    status, answer = api.post("/api/experiments/exp-1/reprice", {}, "wrong")
    assert status == 401
    assert stored_scores(store) == []


_BAD_BODIES = [
    (b"not json", "body must be JSON"),
    ({"scorers": []}, "'scorers' must be a non-empty list"),
    ({"scorers": "exact_match"}, "'scorers' must be a non-empty list"),
    ({"scorers": ["exact_match"], "where": 3}, "'where' must be a string"),
    ({"scorers": ["exact_match"], "rescore": "yes"}, "'rescore' must be true or false"),
    ({"scorers": ["exact_match"], "wher": "1"}, "unknown field(s) wher"),
]


def test_a_bad_score_body_is_a_400_naming_the_fix(api: Api, store: Store) -> None:
    # One server for all the cases: each is refused before the store is touched.
    for body, message in _BAD_BODIES:
        status, answer = api.post("/api/experiments/exp-1/score", body)
        assert status == 400 and message in answer["error"], (body, answer)
        assert '"scorers": ["exact_match", ...]' in answer["error"]
    assert stored_scores(store) == []


def test_a_bad_where_is_a_400_an_unknown_experiment_a_404_and_nothing_is_scored(
    api: Api, store: Store
) -> None:
    body = {"scorers": ["exact_match"], "where": "no_such_column > 1"}
    status, answer = api.post("/api/experiments/exp-1/score", body)
    assert status == 400 and "no_such_column" in answer["error"]
    # One resolver and one error table for every route: an unknown experiment is a 404 with
    # the results API's message (it was a 400 reading "no experiment 'nope' ..." here).
    status, answer = api.post("/api/experiments/nope/score", {"scorers": ["exact_match"]})
    assert status == 404 and "no experiment with id or name 'nope'" in answer["error"]
    status, answer = api.post("/api/experiments/nope/reprice", {})
    assert status == 404 and "no experiment with id or name 'nope'" in answer["error"]
    assert stored_scores(store) == []


def test_a_name_several_runs_share_is_a_409_listing_them_and_an_id_picks_one(
    api: Api, store: Store
) -> None:
    rerun = Trace()
    eval_root(
        rerun, experiment="exp-1", row_id="row-0", **{"evalhouse.experiment.id": "exp-1-rerun"}
    )
    write(store, rerun)
    evaluate(store)
    for action, body in (("score", {"scorers": ["exact_match"]}), ("reprice", {})):
        status, answer = api.post(f"/api/experiments/exp-1/{action}", body)
        assert status == 409, answer
        assert "2 experiment runs are named 'exp-1'" in answer["error"]
        assert "exp-1-id (started 20" in answer["error"]
        assert "exp-1-rerun (started 20" in answer["error"]
        assert "pass the id" in answer["error"]
    assert stored_scores(store) == []
    with pytest.raises(ExperimentAmbiguous) as raised:
        resolve_experiment(store, "exp-1", exactly_one=True)
    assert {run_id for run_id, _ in raised.value.runs} == {"exp-1-id", "exp-1-rerun"}
    # Where one run is enough (results), the name means the latest run of that name.
    assert resolve_experiment(store, "exp-1").id == "exp-1-rerun"
    assert [run_id for run_id, _ in raised.value.runs] == ["exp-1-rerun", "exp-1-id"]
    status, report = api.post("/api/experiments/exp-1-rerun/score", {"scorers": ["exact_match"]})
    assert (status, report["experiment_id"], report["rows"]) == (200, "exp-1-rerun", 1)


@pytest.mark.parametrize(
    ("where", "refusal"),
    [
        ("1) OR (1", "Unmatched parentheses"),  # would have escaped the experiment filter
        ("`file`('/etc/hostname') != ''", "function file() is not allowed"),
        ("row_id IN (SELECT row_id FROM experiment_rows)", "subqueries are not allowed"),
    ],
)
def test_a_where_cannot_escape_the_experiment_or_read_files(
    api: Api, store: Store, where: str, refusal: str
) -> None:
    body = {"scorers": ["exact_match"], "where": where}
    status, answer = api.post("/api/experiments/exp-1/score", body)
    assert status == 400 and refusal in answer["error"], answer
    assert stored_scores(store) == []


def test_score_request_reads_the_optional_fields() -> None:
    assert score_request({"scorers": ["a", "b"]}) == (["a", "b"], None, False)
    assert score_request({"scorers": ["a"], "where": "", "rescore": True}) == (["a"], None, True)


# --- the CLI through a running serve ---------------------------------------------------------


def _send_rows(grpc_port: int, answers: list[str]) -> None:
    """Experiment rows from an app's own OpenTelemetry SDK, over OTLP/gRPC with the key."""
    provider = TracerProvider(resource=Resource.create({"service.name": "qa-app"}))
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{grpc_port}", insecure=True, headers={"authorization": f"Bearer {KEY}"}
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("qa")
    for i, answer in enumerate(answers):
        root = {
            "evalhouse.span.purpose": "eval",
            "evalhouse.experiment.name": "qa-api",
            "evalhouse.experiment.id": "qa-api-1",
            "evalhouse.dataset.row_id": f"r{i}",
            "evalhouse.input": json.dumps(f"question {i}"),
            "evalhouse.expected": json.dumps("Paris"),
            "evalhouse.output": json.dumps(answer),
        }
        chat = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 2,
        }
        with (
            tracer.start_as_current_span("eval", attributes=root),
            tracer.start_as_current_span("task", attributes={"evalhouse.span.purpose": "task"}),
            tracer.start_as_current_span("chat gpt-4o-mini", attributes=chat),
        ):
            pass
    provider.shutdown()


def _cli(server: ServeProcess, *args: str, key: str | None = KEY) -> Any:
    env = {"EVALHOUSE_API_KEYS": key} if key else {}
    return run_cli(*args, "--data-dir", str(server.data_dir), check=False, env=env)


def _sql(server: ServeProcess, query: str) -> list[dict[str, Any]]:
    result = _cli(server, "sql", "--format", "JSONEachRow", query)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line]


def _count(server: ServeProcess, source: str) -> int:
    return int(_sql(server, f"SELECT count() AS n FROM {source}")[0]["n"])


@pytest.mark.slow
def test_score_and_reprice_go_through_the_running_serve(serve: Any) -> None:
    server = serve(
        env={
            "EVALHOUSE_API_KEYS": KEY,
            "EVALHOUSE_EVALUATOR_QUIET_SECONDS": "0.3",
            "EVALHOUSE_EVALUATOR_POLL_SECONDS": "0.2",
        }
    )
    _send_rows(server.grpc_port, ["Paris", "Lyon", "Paris"])
    wait_for(lambda: _count(server, "experiment_rows") == 3, timeout=30)

    # serve holds the data dir, so the command asks it over the API: same report as offline.
    scored = _cli(server, "score", "qa-api", "--scorer", "exact_match")
    assert scored.returncode == 0, scored.stderr
    assert (
        scored.stdout == "experiment qa-api-1: 3 rows, 3 scorer runs (0 errors), 0 already scored\n"
    )
    values = _sql(
        server,
        "SELECT row_id, value, error, source FROM scores FINAL "
        "WHERE experiment_id = 'qa-api-1' AND scorer = 'exact_match' ORDER BY row_id",
    )
    assert [(v["row_id"], v["value"], v["error"], v["source"]) for v in values] == [
        ("r0", 1, "", "experiment"),
        ("r1", 0, "", "experiment"),
        ("r2", 1, "", "experiment"),
    ]
    again = _cli(server, "score", "qa-api-1", "--scorer", "exact_match", "--where", "row_id = 'r1'")
    assert again.stdout == (
        "experiment qa-api-1: 1 rows, 0 scorer runs (0 errors), 1 already scored "
        "(use --rescore to replace them)\n"
    )

    repriced = _cli(server, "reprice", "qa-api")
    assert repriced.returncode == 0, repriced.stderr
    assert repriced.stdout.startswith("experiment qa-api-1: 3 rows repriced with genai-prices")

    # The key is enforced; a bad --where is one clear line; neither stored anything.
    no_key = _cli(server, "score", "qa-api", "--scorer", "contains", key=None)
    assert no_key.returncode == 1
    assert no_key.stderr.startswith("evalhouse score: missing or wrong API key")
    bad = _cli(server, "score", "qa-api", "--scorer", "contains", "--where", "nope ==")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.startswith("evalhouse score: ") and bad.stderr.count("\n") == 1
    assert _count(server, "scores WHERE scorer = 'contains'") == 0
    assert server.stop() == 0
