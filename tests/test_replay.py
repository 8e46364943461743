"""Replay end to end: production calls recorded by ``evalhouse.init()`` (the real ``openai``
client, the official GenAI instrumentation, content capture on) against a local
OpenAI-compatible server, plus OpenInference and OpenLLMetry recordings built with the OTel
SDK, go through a real collector into the store; ``POST /api/replays`` replays them on two
models served by another local server (one answering worse) while the evaluator daemon runs
in-process; the result is read from ``GET /api/replays/{id}``.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import psutil
import pytest
from conftest import clone_database, collector_settings, wait_for
from fake_openai import FakeOpenAI, fake_openai
from online_helpers import call
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from ui_helpers import chromium, open_page, page_of, screenshot

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator, recorded_request
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app

SYSTEM = "You are a geography assistant. Answer with the city only."
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_country",
        "description": "Look a country up by number",
        "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}},
    },
}


def capital(i: int) -> str:
    return f"City{i}"


def asked(body: dict[str, Any]) -> int:
    text = " ".join(str(m.get("content") or "") for m in body["messages"])
    return int(re.search(r"country number (\d+)", text).group(1))  # type: ignore[union-attr]


def replay_reply(body: dict[str, Any]) -> str:
    """gpt-4o-mini answers as recorded; gpt-4.1-nano gets most answers wrong."""
    i = asked(body)
    if body["model"] == "gpt-4.1-nano" and i % 5:
        return f"Town{i}"
    return capital(i)


@dataclass
class Env:
    store: Store
    api: str
    grpc: str
    recorded: FakeOpenAI
    replay: FakeOpenAI

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return call(self.api, method, path, body)


@pytest.fixture(scope="module")
def env(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("replay")
    store = clone_database(chdb_dsn, template_database, f"replay_{uuid.uuid4().hex[:10]}")
    with (
        fake_openai(reply=lambda body: capital(asked(body)), count_tokens=True) as recorded,
        fake_openai(reply=replay_reply, count_tokens=True) as replay,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name in ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "EVALHOUSE_JUDGE_MODEL"):
            patch.delenv(name, raising=False)
        patch.setenv("OPENAI_API_KEY", "test")
        patch.setenv("EVALHOUSE_API_URL", "http://127.0.0.1:9")
        collector = Collector(collector_settings(folder / "collector"), store)
        addresses = collector.start()
        port = int(addresses.grpc.rsplit(":", 1)[1])
        settings = load_settings(
            data_dir=folder / "data",
            grpc_port=port,
            explorer_quiet_seconds=0,
            evaluator_poll_seconds=0.2,
        )
        server = AsgiServer.start(
            api_app(store, ApiKeys(frozenset()), settings), "127.0.0.1", 0, "API"
        )
        evaluator = Evaluator(settings, store)
        evaluator.start()
        tracing = evalhouse.init(endpoint=f"http://127.0.0.1:{port}", service_name="support-bot")
        assert tracing.error is None and "openai" in tracing.instrumented
        try:
            yield Env(store, f"http://127.0.0.1:{server.port}", addresses.grpc, recorded, replay)
        finally:
            evaluator.stop()
            server.stop()
            collector.stop()
            evalhouse.init(exporter=InMemorySpanExporter())


def record_genai(env: Env, tag: str, numbers: range) -> None:
    """Production calls through the real client: system instructions, a tool definition, a
    tool call and its result in the history."""
    tracer = trace.get_tracer("tests.replay")
    with openai.OpenAI(base_url=env.recorded.base_url, api_key="test") as client:
        for i in numbers:
            with tracer.start_as_current_span("handle", attributes={"evalhouse.tags": tag}):
                client.chat.completions.create(
                    model="gpt-4o",
                    temperature=0.2,
                    max_tokens=50,
                    tools=[TOOL],
                    messages=[
                        {"role": "system", "content": SYSTEM},
                        {"role": "user", "content": f"What is the capital of country number {i}?"},
                        {
                            "role": "assistant",
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": f"call_{i}",
                                    "type": "function",
                                    "function": {
                                        "name": "lookup_country",
                                        "arguments": json.dumps({"n": i}),
                                    },
                                }
                            ],
                        },
                        {
                            "role": "tool",
                            "tool_call_id": f"call_{i}",
                            "content": f"country {i}: see atlas",
                        },
                    ],
                )


def record_dialects(tag: str) -> None:
    """An OpenInference call, an OpenLLMetry call and a call recorded without content."""
    tracer = trace.get_tracer("tests.replay.dialects")
    question = "What is the capital of country number 7?"
    spans = {
        "openinference": {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o",
            "llm.provider": "openai",
            "llm.token_count.prompt": 30,
            "llm.token_count.completion": 2,
            "llm.invocation_parameters": json.dumps({"temperature": 0.3, "max_tokens": 40}),
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "OpenInference system text.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": question,
            "llm.input_messages.2.message.role": "assistant",
            "llm.input_messages.2.message.tool_calls.0.tool_call.id": "oi_1",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.name": "lookup_country",
            "llm.input_messages.2.message.tool_calls.0.tool_call.function.arguments": '{"n": 7}',
            "llm.input_messages.3.message.role": "tool",
            "llm.input_messages.3.message.tool_call_id": "oi_1",
            "llm.input_messages.3.message.content": "country 7: see atlas",
            "llm.tools.0.tool.json_schema": json.dumps(TOOL),
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "City7",
        },
        "openllmetry": {
            "gen_ai.system": "openai",
            "llm.request.type": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.prompt_tokens": 30,
            "gen_ai.usage.completion_tokens": 2,
            "gen_ai.prompt.0.role": "system",
            "gen_ai.prompt.0.content": "OpenLLMetry system text.",
            "gen_ai.prompt.1.role": "user",
            "gen_ai.prompt.1.content": question,
            "llm.request.functions.0.name": "lookup_country",
            "llm.request.functions.0.description": "Look a country up by number",
            "llm.request.functions.0.parameters": json.dumps(TOOL["function"]["parameters"]),  # type: ignore[index]
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "City7",
        },
        "no-content": {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 30,
            "gen_ai.usage.output_tokens": 2,
        },
    }
    for name, attributes in spans.items():
        with (
            tracer.start_as_current_span("handle", attributes={"evalhouse.tags": tag}),
            tracer.start_as_current_span(f"{name} call", attributes=attributes),
        ):
            pass


def flushed(env: Env, at_least: int) -> None:
    assert trace.get_tracer_provider().force_flush()  # type: ignore[attr-defined]
    wait_for(lambda: env.store.query("SELECT count() FROM otel_traces")[0][0] >= at_least, 60)


def summarized(env: Env, tag: str, traces: int) -> None:
    wait_for(
        lambda: (
            env.store.query(
                "SELECT count() FROM trace_summaries FINAL WHERE has(tags, {t:String})", {"t": tag}
            )[0][0]
            >= traces
        ),
        60,
    )


def replayed(env: Env, body: dict[str, Any]) -> dict[str, Any]:
    status, started = env.call("POST", "/api/replays", body)
    assert status == 202, started
    seen: list[str] = []

    def done() -> Any:
        code, progress = env.call("GET", f"/api/replays/{started['id']}")
        assert code == 200, progress
        seen.append(progress["state"])
        return progress if progress["state"] in ("done", "failed") else None

    progress = wait_for(done, timeout=120, interval=0.2)
    assert progress["state"] == "done", progress
    assert progress["models"], progress
    return dict(progress)


def spent_tokens(env: Env, experiment_id: str) -> tuple[int, int, float]:
    row = env.store.query(
        "SELECT sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM experiment_rows "
        "WHERE experiment_id = {e:String}",
        {"e": experiment_id},
    )[0]
    return int(row[0]), int(row[1]), float(row[2])


def test_replay_compares_two_models_with_the_recorded_baseline(env: Env) -> None:
    record_genai(env, "replay-main", range(1, 31))
    flushed(env, 60)
    summarized(env, "replay-main", 30)
    fields = {
        "filter": "tag:replay-main",
        "since": "1h",
        "models": ["openai:gpt-4o-mini", "openai:gpt-4.1-nano"],
    }
    code, estimate = env.call("POST", "/api/replays/estimate", fields)
    assert code == 200, estimate
    assert estimate["cohort"] == {"calls": 30, "replayable": 30, "not_replayable": {}}

    progress = replayed(
        env, {**fields, "base_url": env.replay.base_url, "name": "main", "concurrency": 8}
    )
    result = progress["result"]
    assert result["cohort"]["replayable"] == 30
    assert result["dataset"]["name"] == "replay-main"
    ids = result["experiments"]
    assert set(ids) == {"openai:gpt-4o-mini", "openai:gpt-4.1-nano"}

    # The replayed requests: system instructions, the tool and the tool call history intact.
    sent = [b for b in env.replay.requests if b["model"] == "gpt-4o-mini"]
    assert len(sent) == 30
    first = sent[0]
    assert first["messages"][0] == {"role": "system", "content": SYSTEM}
    assert first["tools"] == [TOOL]
    call_message = first["messages"][2]
    assert call_message["tool_calls"][0]["function"]["name"] == "lookup_country"
    assert call_message["tool_calls"][0]["id"] == first["messages"][3]["tool_call_id"]
    assert first["temperature"] == 0.2 and first["max_tokens"] == 50

    # Baseline and both experiments have rows with tokens and costs.
    baseline = result["baseline_experiment"]
    b_in, b_out, b_cost = spent_tokens(env, baseline)
    assert b_in > 0 and b_out > 0 and b_cost > 0
    for label, experiment_id in ids.items():
        tokens_in, tokens_out, cost = spent_tokens(env, experiment_id)
        assert tokens_in > 0 and tokens_out > 0 and cost > 0, label
        # Each replayed call counts once, on the model asked: the replay traces its calls
        # itself, and the openai instrumentation of this process (it recorded the calls) adds
        # a child span that the leaf rule counts instead, never both.
        [(calls,)] = env.store.query(
            "SELECT sum(llm_calls) FROM experiment_rows WHERE experiment_id = {e:String}",
            {"e": experiment_id},
        )
        [(models,)] = env.store.query(
            "SELECT groupUniqArray(LlmRequestModel) FROM otel_traces "
            "WHERE LlmOperation = 'chat' AND TraceId IN "
            "(SELECT trace_id FROM experiment_rows WHERE experiment_id = {e:String})",
            {"e": experiment_id},
        )
        assert calls == 30 and models == [label.split(":", 1)[1]], (label, calls, models)
        # The dry run's estimate is within 20% of what the replay spent.
        guess = estimate["models"][label]["cost_usd"]
        assert abs(guess - cost) <= 0.2 * cost, (label, guess, cost)
        assert cost < b_cost  # both are cheaper than the recorded gpt-4o

    good = result["compare"]["openai:gpt-4o-mini"]["scores"]["matches_recorded"]
    bad = result["compare"]["openai:gpt-4.1-nano"]["scores"]["matches_recorded"]
    assert good["verdict"] != "regressed" and good["candidate_mean"] == 1.0
    assert bad["verdict"] == "regressed", bad
    bench = result["benchmark"]
    assert {g["key"] for g in bench["groups"]} == {"recorded", "gpt-4o-mini", "gpt-4.1-nano"}
    assert bench["best_value"] == "gpt-4o-mini"
    assert bench["savings_vs_recorded_per_1000_calls_usd"]["gpt-4o-mini"] > 0


def test_every_dialect_reaches_the_replayed_request_and_unrecorded_calls_are_counted(
    env: Env,
) -> None:
    record_dialects("replay-dialects")
    flushed(env, 6)
    summarized(env, "replay-dialects", 3)
    before = len(env.replay.requests)
    progress = replayed(
        env,
        {
            "filter": "tag:replay-dialects",
            "since": "1h",
            "models": ["openai:gpt-4o-mini"],
            "base_url": env.replay.base_url,
            "name": "dialects",
        },
    )
    cohort = progress["result"]["cohort"]
    assert cohort["calls"] == 3 and cohort["replayable"] == 2
    assert list(cohort["not_replayable"].values()) == [1]
    assert "content capture" in next(iter(cohort["not_replayable"]))
    sent = {b["messages"][0]["content"]: b for b in env.replay.requests[before:]}
    inference = sent["OpenInference system text."]
    assert inference["tools"] == [TOOL] and inference["temperature"] == 0.3
    assert inference["messages"][2]["tool_calls"][0]["id"] == "oi_1"
    assert inference["messages"][3] == {
        "role": "tool",
        "tool_call_id": "oi_1",
        "content": "country 7: see atlas",
    }
    openllmetry = sent["OpenLLMetry system text."]
    assert openllmetry["tools"] == [TOOL]


def test_a_budget_stops_the_replay_and_says_how_far_it_got(env: Env) -> None:
    # The main cohort costs about $0.0001 a call on gpt-4o-mini: a cap of a few calls' worth.
    code, estimate = env.call(
        "POST",
        "/api/replays/estimate",
        {"filter": "tag:replay-main", "since": "1h", "models": ["openai:gpt-4o-mini"]},
    )
    assert code == 200
    per_call = estimate["models"]["openai:gpt-4o-mini"]["cost_usd"] / 30
    progress = replayed(
        env,
        {
            "filter": "tag:replay-main",
            "since": "1h",
            "models": ["openai:gpt-4o-mini", "openai:gpt-4.1-nano"],
            "base_url": env.replay.base_url,
            "name": "budget",
            "concurrency": 2,
            "budget_usd": per_call * 6.5,
        },
    )
    budget = progress["result"]["budget"]
    assert budget["stopped"] and "stopped at the" in budget["message"]
    assert "not replayed: openai:gpt-4.1-nano" in budget["message"]
    assert 4 <= budget["replayed"]["openai:gpt-4o-mini"] <= 10
    assert budget["spent_usd"] <= per_call * 8


def replay_processes() -> list[psutil.Process]:
    """This server's replay processes (spawned by multiprocessing)."""
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if "spawn_main" in " ".join(child.cmdline())
    ]


def test_a_killed_replay_process_fails_the_replay_and_the_server_replays_again(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The calls go out from a child process (surfaces/_replay_child.py): killing it fails
    that replay with its exit code, and the next replay works."""
    monkeypatch.setattr(env.replay, "delay_seconds", 0.5)
    body = {
        "filter": "tag:replay-main",
        "since": "1h",
        "models": ["openai:gpt-4o-mini"],
        "base_url": env.replay.base_url,
        "name": "killed",
        "concurrency": 1,
    }
    status, started = env.call("POST", "/api/replays", body)
    assert status == 202, started
    path = f"/api/replays/{started['id']}"

    def replaying() -> Any:
        progress = env.call("GET", path)[1]
        return (
            progress["state"] == "replaying"
            and progress["models"]["openai:gpt-4o-mini"]["done"] >= 1
            and replay_processes()
        )

    children = wait_for(replaying, timeout=60, interval=0.1)
    assert len(children) == 1, children
    children[0].kill()
    failed = wait_for(lambda: (p := env.call("GET", path)[1])["state"] == "failed" and p, 30)
    assert "the replay's process ended (exit code -9)" in failed["error"], failed
    assert "start the replay again" in failed["error"]
    monkeypatch.setattr(env.replay, "delay_seconds", 0.0)
    again = replayed(env, {**body, "name": "after-kill", "concurrency": 4})
    assert again["models"]["openai:gpt-4o-mini"] == {"done": 30, "total": 30, "errors": 0}
    assert wait_for(lambda: not replay_processes(), timeout=20, interval=0.1)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"filter": "tag:replay-main", "models": ["gpt-4o-mini"]}, "give PROVIDER:MODEL"),
        ({"filter": "tag:nothing-here", "models": ["openai:gpt-4o-mini"]}, "empty cohort"),
        ({"filter": "colour:red", "models": ["openai:gpt-4o-mini"]}, "unknown key 'colour'"),
        ({"where": "no_such_column = 1", "models": ["openai:gpt-4o-mini"]}, "invalid where"),
        ({"filter": "tag:replay-main", "models": []}, "name at least one model"),
        ({"filter": "tag:replay-main", "models": ["openai:x"], "scorers": ["nope"]}, "scorer nope"),
        ({"filter": "tag:replay-main", "models": ["openai:house-9"], "budget_usd": 1}, "no price"),
        ({"modles": ["openai:x"]}, "unknown field(s) modles"),
    ],
)
def test_bad_input_gets_a_clear_error(env: Env, body: dict[str, Any], message: str) -> None:
    code, answer = env.call("POST", "/api/replays", body)
    assert code == 400 and message in answer["error"], answer


def test_an_unknown_replay_id_is_a_404(env: Env) -> None:
    code, answer = env.call("GET", "/api/replays/nope")
    assert code == 404 and "no replay with id" in answer["error"]


def test_recorded_requests_read_every_dialect() -> None:
    vercel = {
        "ai.prompt.messages": json.dumps(
            [
                {"role": "system", "content": "Vercel system."},
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Hi"},
                        {"type": "image", "image": "https://x/y.png"},
                    ],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool-call", "toolCallId": "v1", "toolName": "f", "args": {"a": 1}}
                    ],
                },
                {
                    "role": "tool",
                    "content": [
                        {
                            "type": "tool-result",
                            "toolCallId": "v1",
                            "toolName": "f",
                            "result": {"ok": True},
                        }
                    ],
                },
            ]
        ),
        "ai.prompt.tools": json.dumps(
            [json.dumps({"type": "function", "name": "f", "parameters": {"type": "object"}})]
        ),
        "ai.settings.temperature": "0.5",
    }
    request, why = recorded_request(vercel)
    assert why == "" and request is not None
    assert request["messages"][1]["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "image", "url": "https://x/y.png"},
    ]
    assert request["messages"][2]["tool_calls"] == [
        {"id": "v1", "name": "f", "arguments": '{"a": 1}'}
    ]
    assert request["messages"][3]["tool_call_id"] == "v1"
    assert request["tools"] == [{"name": "f", "parameters": {"type": "object"}}]
    assert request["params"] == {"temperature": 0.5}
    genai = {
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be brief."}]),
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": "Hi"}]}]
        ),
        "gen_ai.output.type": "json",
    }
    request, _ = recorded_request(genai)
    assert request is not None and request["system"] == "Be brief."
    assert request["params"] == {"response_format": {"type": "json_object"}}
    events = [
        {
            "name": "gen_ai.content.prompt",
            "attributes": {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Old"}])},
        }
    ]
    assert recorded_request({}, events)[0]["messages"] == [{"role": "user", "content": "Old"}]  # type: ignore[index]


def test_the_command_refuses_bad_input_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from evalhouse.surfaces.cli import main

    assert main(["replay", "--filter", "tag:x", "--model", "gpt-4o-mini"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give PROVIDER:MODEL" in err


def test_a_replay_started_from_the_traces_page_shows_its_benchmark_and_verdicts(
    env: Env,
) -> None:
    record_genai(env, "replay-ui", range(200, 210))
    flushed(env, 20)
    summarized(env, "replay-ui", 10)
    with chromium() as browser, page_of(browser, env.api) as page:
        open_page(page, "/traces?filter=tag%3Areplay-ui")
        page.click("#replay-link")
        page.wait_for_selector("[data-testid=cohort-calls]")
        assert page.locator("[data-testid=cohort-calls]").inner_text() == "10"
        assert page.locator("input[name=filter]").input_value() == "tag:replay-ui"
        page.fill("input[name=models]", "openai:gpt-4o-mini, openai:gpt-4.1-nano")
        page.fill("input[name=base_url]", env.replay.base_url)
        page.click("[data-testid=estimate-button]")
        page.wait_for_selector("[data-testid=estimate] tbody tr >> nth=1")
        estimated = page.locator("[data-testid=estimate] tbody").inner_text()
        assert "gpt-4o-mini" in estimated and "gpt-4.1-nano" in estimated
        page.click("button[type=submit]")
        page.wait_for_url("**/replays/*")
        page.wait_for_function(
            "document.querySelector('[data-testid=replay-state]')?.innerText === 'done'",
            timeout=90_000,
        )
        groups = page.locator("[data-testid=benchmark] tbody tr").all_inner_texts()
        assert len(groups) == 3 and any(g.startswith("recorded") for g in groups)
        cards = {
            card.locator("h2").inner_text(): card.locator("[data-testid=verdict]").all_inner_texts()
            for card in page.locator("[data-testid=comparison]").all()
        }
        assert set(cards) == {"openai:gpt-4o-mini vs recorded", "openai:gpt-4.1-nano vs recorded"}
        assert "regressed" in cards["openai:gpt-4.1-nano vs recorded"]
        assert "regressed" not in cards["openai:gpt-4o-mini vs recorded"]
        savings = page.locator("[data-testid=savings]").inner_text()
        assert "gpt-4o-mini saves $" in savings and "per 1,000 calls" in savings
        nano = page.locator("[data-testid=comparison]").nth(1)
        assert nano.locator("tr[data-metric=cost_usd] [data-testid=metric-verdict]").count() == 1
        screenshot(page, "replay-result")
