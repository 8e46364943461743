"""GET /api/traces/{trace_id} and the UI's routes: spans over OTLP into a real collector, read
back through a real API server on loopback."""

from __future__ import annotations

import json
import os
import re
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import ROOT, wait_for
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from otlp_builders import any_value, span, trace_request
from test_collector_receivers import grpc_export

from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.evaluators import input_messages, output_messages
from evalhouse.evaluators._cost import Usage, span_cost
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app

UI = ROOT / "surfaces" / "ui"


@pytest.fixture
def api(store: Store) -> Iterator[Callable[..., str]]:
    """Start API servers on ``store``; returns a function giving a server's base URL."""
    servers: list[AsgiServer] = []

    def start(keys: frozenset[str] = frozenset()) -> str:
        server = AsgiServer.start(api_app(store, ApiKeys(keys)), "127.0.0.1", 0, "API")
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"

    yield start
    for server in servers:
        server.stop()


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    status, _, body = get(url, headers)
    return status, json.loads(body)


START = 1_750_000_000_000_000_000  # 2025-06-15: prices of that day


def experiment_trace(trace_id: bytes) -> Any:
    """An experiment row in three dialects, with a wrapper model span and an orphan."""
    ids = {name: os.urandom(8) for name in ("root", "task", "wrapper", "leaf", "oi", "scorer")}

    def child(name: str, parent: str, attrs: dict[str, Any], offset_ms: int, ms: int) -> Any:
        return span(
            name,
            attrs,
            trace_id=trace_id,
            span_id=ids[name],
            parent_span_id=ids[parent],
            start_ns=START + offset_ms * 1_000_000,
            duration_ns=ms * 1_000_000,
        )

    usage = {"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100}
    spans = [
        span(
            "eval",
            {
                "evalhouse.span.purpose": "eval",
                "evalhouse.experiment.name": "traces-ui",
                "evalhouse.experiment.id": "exp-traces-1",
                "evalhouse.dataset.row_id": "row-7",
                "evalhouse.input": json.dumps({"country": "France"}),
                "evalhouse.output": json.dumps("Paris"),
            },
            trace_id=trace_id,
            span_id=ids["root"],
            start_ns=START,
            duration_ns=900_000_000,
        ),
        child("task", "root", {"evalhouse.span.purpose": "task"}, 5, 700),
        # A framework span reporting the usage of the model call under it: not counted.
        child(
            "wrapper",
            "task",
            {"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o", **usage},
            10,
            500,
        ),
        child(
            "leaf",
            "wrapper",
            {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o",
                "gen_ai.system_instructions": json.dumps(
                    [{"type": "text", "content": "Be brief."}]
                ),
                "gen_ai.input.messages": json.dumps(
                    [{"role": "user", "parts": [{"type": "text", "content": "Capital of France?"}]}]
                ),
                "gen_ai.output.messages": json.dumps(
                    [
                        {
                            "role": "assistant",
                            "parts": [
                                {"type": "text", "content": "Paris"},
                                {"type": "tool_call", "name": "lookup", "arguments": {"q": "x"}},
                            ],
                        }
                    ]
                ),
                **usage,
            },
            20,
            400,
        ),
        child(
            "oi",
            "task",
            {
                "openinference.span.kind": "LLM",
                "llm.model_name": "claude-3-5-haiku",
                "llm.token_count.prompt": 50,
                "llm.token_count.completion": 5,
                "llm.cost.total": 0.25,
                "llm.input_messages.0.message.role": "user",
                "llm.input_messages.0.message.content": "Say hi",
                "llm.output_messages.0.message.role": "assistant",
                "llm.output_messages.0.message.content": "hi",
            },
            550,
            100,
        ),
        child(
            "scorer",
            "root",
            {
                "evalhouse.span.purpose": "scorer",
                "evalhouse.score.name": "exact",
                "evalhouse.score.value": 1.0,
            },
            720,
            20,
        ),
        span("late child", {}, trace_id=trace_id, parent_span_id=os.urandom(8), start_ns=START),
    ]
    request = trace_request(spans)
    task_span = request.resource_spans[0].scope_spans[0].spans[1]
    event = task_span.events.add(name="retry", time_unix_nano=START + 6_000_000)
    event.attributes.extend([KeyValue(key="attempt", value=any_value(2))])
    return request


def test_trace_has_every_span_with_purpose_tokens_cost_and_messages(
    start_collector: Any, store: Store, api: Callable[..., str]
) -> None:
    _, addresses = start_collector()
    trace_id = os.urandom(16)
    grpc_export(addresses.grpc, experiment_trace(trace_id).SerializeToString())
    wait_for(lambda: store.query("SELECT count() FROM otel_traces")[0][0] == 7)

    status, body = get_json(f"{api()}/api/traces/{trace_id.hex().upper()}")

    assert status == 200
    assert body["trace_id"] == trace_id.hex()
    spans = {s["name"]: s for s in body["spans"]}
    assert len(spans) == 7 and body["orphans"] == 1 and spans["late child"]["orphan"]
    assert body["experiment"] == {
        "id": "exp-traces-1",
        "name": "traces-ui",
        "row_id": "row-7",
        "trial": 0,
    }
    assert body["root_span_id"] == spans["eval"]["span_id"]
    assert body["duration_ms"] == pytest.approx(900.0)
    assert [spans[n]["purpose"] for n in ("eval", "task", "scorer", "leaf")] == [
        "eval",
        "task",
        "scorer",
        "",
    ]
    assert spans["eval"]["input"] == {"country": "France"} and spans["eval"]["output"] == "Paris"
    assert float(spans["scorer"]["attributes"]["evalhouse.score.value"]) == 1.0
    assert spans["task"]["events"][0]["name"] == "retry"
    assert spans["task"]["events"][0]["attributes"] == {"attempt": "2"}
    assert spans["task"]["llm"] is None

    leaf = spans["leaf"]["llm"]
    expected = span_cost(
        provider="openai",
        request_model="gpt-4o",
        response_model="",
        usage=Usage(input_tokens=1000, output_tokens=100),
        provided_usd=None,
        at=datetime.fromtimestamp((START + 20_000_000) / 1e9, UTC),
    )
    assert expected.usd and expected.usd > 0
    assert leaf["cost_usd"] == pytest.approx(expected.usd)
    assert leaf["cost_provenance"] == "inferred"
    assert (leaf["input_tokens"], leaf["output_tokens"], leaf["counted"]) == (1000, 100, True)
    assert spans["wrapper"]["llm"]["counted"] is False  # its usage is the leaf's, counted once
    assert spans["leaf"]["input_messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    assert spans["leaf"]["output_messages"] == [
        {"role": "assistant", "content": 'Paris\n→ lookup({"q": "x"})'}
    ]

    oi = spans["oi"]["llm"]
    assert (oi["cost_usd"], oi["cost_provenance"], oi["operation"]) == (0.25, "provided", "chat")
    assert spans["oi"]["input_messages"] == [{"role": "user", "content": "Say hi"}]
    assert spans["oi"]["output_messages"] == [{"role": "assistant", "content": "hi"}]


def test_unknown_and_malformed_trace_ids_are_explained(api: Callable[..., str]) -> None:
    base = api()
    status, body = get_json(f"{base}/api/traces/{'ab' * 16}")
    assert status == 404 and "no span of trace" in body["error"]
    status, body = get_json(f"{base}/api/traces/not-a-trace")
    assert status == 400 and "not a trace id" in body["error"] and "hex" in body["error"]


def test_trace_api_needs_the_key_but_pages_and_assets_do_not(api: Callable[..., str]) -> None:
    base = api(frozenset({"s3cret"}))
    status, body = get_json(f"{base}/api/traces/{'ab' * 16}")
    assert status == 401 and "API key" in body["error"]
    status, body = get_json(f"{base}/api/traces/{'ab' * 16}", {"x-api-key": "s3cret"})
    assert status == 404
    status, _, html = get(f"{base}/traces/{'ab' * 16}")
    assert status == 200 and b'<main id="app"' in html
    script = re.search(rb'src="(/ui/[0-9a-f]+/app\.js)"', html)
    assert script is not None
    status, headers, _ = get(base + script.group(1).decode())
    assert status == 200 and headers["content-type"].startswith("text/javascript")


def test_pages_assets_and_unknown_paths(api: Callable[..., str]) -> None:
    base = api()
    for path in ("/", "/experiments/abc", "/compare?baseline=a&candidate=b", "/benchmark"):
        status, headers, html = get(base + path)
        assert status == 200 and headers["content-type"].startswith("text/html"), path
    html = get(base + "/")[2].decode()
    css = re.search(r'href="(/ui/[0-9a-f]+/app\.css)"', html)
    assert css is not None
    status, headers, content = get(base + css.group(1))
    assert status == 200 and headers["content-type"].startswith("text/css") and content
    # Cached for good (the URL changes with the content), revalidated by ETag.
    assert "immutable" in headers["cache-control"]
    assert get(base + css.group(1), {"If-None-Match": headers["etag"]})[0] == 304
    status, _, text = get(base + "/ui/abc/nothing.js")
    assert status == 404 and b"no UI asset" in text
    status, headers, _ = get(base + "/no/such/page")
    assert status == 404 and headers["content-type"].startswith("text/html")
    status, body = get_json(base + "/api/no-such-endpoint")
    assert status == 404 and "no API endpoint" in body["error"]


def test_assets_load_nothing_from_the_network_and_ship_in_the_wheel() -> None:
    names = sorted(path.name for path in UI.iterdir() if path.is_file())
    assert {"index.html", "app.js", "app.css", "charts.js", "trace.js"} <= set(names)
    for name in names:
        text = (UI / name).read_text()
        # The SVG namespace URI is an identifier, never fetched.
        urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}[^\s\"'`)]*", text))
        assert urls <= {"http://www.w3.org/2000/svg"}, (name, urls)
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["evalhouse.surfaces.ui"]
    suffixes = {pattern.rsplit(".", 1)[-1] for pattern in patterns}
    assert all(name.rsplit(".", 1)[-1] in suffixes for name in names), (names, patterns)


def test_messages_in_older_and_other_dialects() -> None:
    openllmetry = {
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "Be brief.",
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Hi",
        "gen_ai.completion.0.role": "assistant",
        "gen_ai.completion.0.content": "Hello",
    }
    assert input_messages(openllmetry) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert output_messages(openllmetry) == [{"role": "assistant", "content": "Hello"}]
    vercel = {
        "ai.prompt.messages": json.dumps(
            [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]}]
        ),
        "ai.response.text": "Sunny",
    }
    assert input_messages(vercel) == [{"role": "user", "content": "Weather?"}]
    assert output_messages(vercel) == [{"role": "assistant", "content": "Sunny"}]
    events = [
        {
            "name": "gen_ai.content.prompt",
            "time_ns": 0,
            "attributes": {"gen_ai.prompt": json.dumps([{"role": "user", "content": "Q"}])},
        }
    ]
    assert input_messages({}, events) == [{"role": "user", "content": "Q"}]
    assert input_messages({"gen_ai.input.messages": "not json"}) == [
        {"role": "", "content": "not json"}
    ]
    assert output_messages({}) == []
