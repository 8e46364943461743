"""Production traces for the explorer's browser tests, sent the way apps send them.

Three services, each its own OpenTelemetry SDK ``TracerProvider`` exporting over OTLP/gRPC
with the SDK's own exporter; the official OpenAI instrumentation (through ``evalhouse.init``
and the real ``openai`` client against ``tests/fake_openai.py``) for the live turns of a
support conversation, with the tool call and its result in the history it sends; OTel GenAI,
OpenInference and Vercel AI SDK attributes as those libraries set them; an unpriced model, a
failing tool; feedback scores through ``evalhouse.feedback``; 64 small classification traces
spread over the last 20 hours and a session of 60 turns, so that the lists, the session view
and the usage charts have pages to turn. The evaluator (the real daemon, run until idle)
writes the trace rows.
"""

from __future__ import annotations

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
from conftest import clone_database, collector_settings, wait_for
from fake_openai import Usage, fake_openai
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.config import load_settings
from evalhouse.evaluators import Evaluator
from evalhouse.instrumentation import force_flush
from evalhouse.store import Store
from evalhouse.surfaces.api import api_app

BULK = 64  # classification traces, one every ~18 minutes over the last 20 hours
LONG = 60  # turns of the long session, one every 5 minutes over the last 6 hours
MINUTE_NS = 60 * 1_000_000_000


@dataclass
class SeededExplorer:
    """The in-process API + UI over a store of production traces; what the tests look for."""

    url: str
    store: Store
    traces: dict[str, str] = field(default_factory=dict)  # label -> trace id
    production: int = 0  # production traces in the last 24 hours

    def sql(self, query: str, **parameters: Any) -> list[tuple[Any, ...]]:
        return self.store.query(query, parameters or None)


def _hex(span: Any) -> str:
    return format(span.get_span_context().trace_id, "032x")


class _Sender:
    """A service: its own TracerProvider with the SDK's OTLP/gRPC exporter."""

    def __init__(self, endpoint: str, service: str) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
        )
        self.tracer = self.provider.get_tracer("tests.explorer_ui")
        self.sent = 0

    @contextmanager
    def span(
        self,
        name: str,
        attributes: dict[str, Any],
        *,
        start_ns: int | None = None,
        ms: float | None = None,
        error: str | None = None,
    ) -> Iterator[Any]:
        """A span, current inside the block; backdated when ``start_ns`` is given."""
        self.sent += 1
        span = self.tracer.start_span(name, attributes=attributes, start_time=start_ns)
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            yield span
        finally:
            otel_context.detach(token)
            end = start_ns + int((ms or 1) * 1_000_000) if start_ns is not None else None
            if error:
                span.record_exception(RuntimeError(error), timestamp=end)
                span.set_status(Status(StatusCode.ERROR, error))
            span.end(end_time=end)

    def close(self) -> None:
        self.provider.force_flush()
        self.provider.shutdown()


def _parts(*parts: dict[str, Any]) -> list[dict[str, Any]]:
    return list(parts)


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _genai_chat(
    model: str,
    provider: str,
    messages: list[dict[str, Any]],
    output: list[dict[str, Any]],
    tokens: tuple[int, int],
    system: str | None = None,
) -> dict[str, Any]:
    """A model call's attributes in the OTel GenAI conventions (latest, messages captured)."""
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
        "gen_ai.usage.input_tokens": tokens[0],
        "gen_ai.usage.output_tokens": tokens[1],
        "gen_ai.input.messages": json.dumps(messages),
        "gen_ai.output.messages": json.dumps(output),
    }
    if system:
        attributes["gen_ai.system_instructions"] = json.dumps([_text(system)])
    return attributes


LOOKUP_CALL = {
    "type": "tool_call",
    "id": "call_1",
    "name": "lookup_order",
    "arguments": {"order_id": "1042"},
}
LOOKUP_RESULT = '{"order_id": "1042", "status": "delivered", "paid_usd": 59.9}'


def _refund_session(support: _Sender, now: int, traces: dict[str, str]) -> None:
    """Turn 1 of session s-refund-1042 (alice): a model call asking for a tool, the tool, a
    model call answering with its result; OTel GenAI attributes, backdated ten minutes."""
    start = now - 10 * MINUTE_NS
    root_attributes = {
        "session.id": "s-refund-1042",
        "user.id": "alice@example.com",
        "evalhouse.tags": "refunds,web",
    }
    with support.span("support-turn", root_attributes, start_ns=start, ms=2400) as root:
        question = [
            {"role": "user", "parts": [_text("I want a refund for order 1042, it arrived broken.")]}
        ]
        with support.span(
            "chat gpt-4o-mini",
            _genai_chat(
                "gpt-4o-mini",
                "openai",
                question,
                [{"role": "assistant", "parts": [LOOKUP_CALL], "finish_reason": "tool_calls"}],
                (180, 22),
                system="You are the support agent of Acme. Use tools to look orders up.",
            ),
            start_ns=start + 5_000_000,
            ms=700,
        ):
            pass
        with support.span(
            "execute_tool lookup_order",
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": "lookup_order",
                "gen_ai.tool.call.id": "call_1",
                "gen_ai.tool.call.arguments": json.dumps({"order_id": "1042"}),
                "gen_ai.tool.call.result": LOOKUP_RESULT,
            },
            start_ns=start + 720_000_000,
            ms=180,
        ):
            pass
        history = [
            *question,
            {"role": "assistant", "parts": [LOOKUP_CALL]},
            {
                "role": "tool",
                "parts": [
                    {"type": "tool_call_response", "id": "call_1", "response": LOOKUP_RESULT}
                ],
            },
        ]
        with support.span(
            "chat gpt-4o-mini",
            _genai_chat(
                "gpt-4o-mini",
                "openai",
                history,
                [
                    {
                        "role": "assistant",
                        "parts": [
                            _text(
                                "Sorry about that! Order 1042 was delivered broken; "
                                "I have issued a refund of $59.90."
                            )
                        ],
                    }
                ],
                (260, 31),
                system="You are the support agent of Acme. Use tools to look orders up.",
            ),
            start_ns=start + 910_000_000,
            ms=1400,
        ):
            pass
        traces["refund-1"] = _hex(root)


def _live_turns(support: _Sender, traces: dict[str, str]) -> int:
    """Turns 2 and 3 of s-refund-1042 through the real openai client, instrumented by the
    official OpenAI instrumentation; turn 2's history holds the tool call and its result."""
    replies = iter(
        ["The refund reaches your card in 3 to 5 days.", "You're welcome, have a nice day!"]
    )
    sent = 0
    with (
        fake_openai(reply=lambda body: next(replies), usage=Usage(310, 14)) as llm,
        openai.OpenAI(base_url=llm.base_url, api_key="test") as client,
    ):
        history: list[Any] = [
            {"role": "system", "content": "You are the support agent of Acme."},
            {"role": "user", "content": "I want a refund for order 1042, it arrived broken."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup_order", "arguments": '{"order_id": "1042"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": LOOKUP_RESULT},
            {"role": "assistant", "content": "I have issued a refund of $59.90."},
        ]
        for turn, question in enumerate(["When will I get the money?", "Thanks!"], start=2):
            history.append({"role": "user", "content": question})
            attributes = {"session.id": "s-refund-1042", "user.id": "alice@example.com"}
            with support.span("support-turn", attributes) as root:
                answer = client.chat.completions.create(model="gpt-4o-mini", messages=history)
                sent += 1  # the chat span the instrumentation adds
            history.append({"role": "assistant", "content": answer.choices[0].message.content})
            traces[f"refund-{turn}"] = _hex(root)
            time.sleep(0.01)  # turns start in order
    return sent


def _rag_session(support: _Sender, now: int, traces: dict[str, str]) -> None:
    """Session s-rag-7 (bob): two OpenInference turns, provided costs, a retriever tool."""
    for turn, (question, answer) in enumerate(
        [
            ("Which plan fits a team of 12?", "The Team plan: up to 25 seats."),
            ("Does it include SSO?", "Yes, SSO is part of the Team plan."),
        ]
    ):
        start = now - (90 - 3 * turn) * MINUTE_NS
        with support.span(
            "rag-agent",
            {
                "openinference.span.kind": "AGENT",
                "session.id": "s-rag-7",
                "user.id": "bob",
                "tag.tags": ["rag"],
                "input.value": question,
                "output.value": answer,
            },
            start_ns=start,
            ms=1800,
        ) as root:
            with support.span(
                "search_docs",
                {
                    "openinference.span.kind": "TOOL",
                    "tool.name": "search_docs",
                    "input.value": question,
                },
                start_ns=start + 10_000_000,
                ms=120,
            ):
                pass
            with support.span(
                "ChatOpenAI",
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": 900 + 100 * turn,
                    "llm.token_count.completion": 40,
                    "llm.cost.total": 0.0125,
                    "llm.input_messages.0.message.role": "system",
                    "llm.input_messages.0.message.content": "Answer from the docs only.",
                    "llm.input_messages.1.message.role": "user",
                    "llm.input_messages.1.message.content": question,
                    "llm.output_messages.0.message.role": "assistant",
                    "llm.output_messages.0.message.content": answer,
                },
                start_ns=start + 150_000_000,
                ms=1500,
            ):
                pass
        traces[f"rag-{turn + 1}"] = _hex(root)


def _vercel_trace(web: _Sender, now: int, traces: dict[str, str]) -> None:
    """The Vercel AI SDK's spans (carol, session s-web-3) on a model no price is known for."""
    start = now - 45 * MINUTE_NS
    usage = {"ai.usage.promptTokens": 40, "ai.usage.completionTokens": 5}
    model = {"ai.model.id": "house-model-9", "ai.model.provider": "acme.chat"}
    with (
        web.span(
            "ai.generateText",
            {
                "ai.operationId": "ai.generateText",
                "ai.telemetry.metadata.sessionId": "s-web-3",
                "ai.telemetry.metadata.userId": "carol",
                **model,
                **usage,
            },
            start_ns=start,
            ms=650,
        ) as root,
        web.span(
            "ai.generateText.doGenerate",
            {
                "ai.operationId": "ai.generateText.doGenerate",
                **model,
                **usage,
                "ai.prompt.messages": json.dumps(
                    [
                        {
                            "role": "user",
                            "content": [{"type": "text", "text": "Translate 'hello' to French"}],
                        }
                    ]
                ),
                "ai.response.text": "Bonjour",
            },
            start_ns=start + 20_000_000,
            ms=600,
        ),
    ):
        pass
    traces["vercel"] = _hex(root)


def _failing_checkout(billing: _Sender, now: int, traces: dict[str, str]) -> None:
    """A checkout (dave) whose card charge fails: a model call, then a tool span in error."""
    start = now - 30 * MINUTE_NS
    with billing.span(
        "checkout-agent",
        {"session.id": "s-checkout-9", "user.id": "dave", "langfuse.trace.tags": "payments"},
        start_ns=start,
        ms=3100,
        error="charge failed",
    ) as root:
        with billing.span(
            "chat claude-3-5-haiku",
            _genai_chat(
                "claude-3-5-haiku-20241022",
                "anthropic",
                [{"role": "user", "parts": [_text("Charge my saved card for the order.")]}],
                [
                    {
                        "role": "assistant",
                        "parts": [
                            {
                                "type": "tool_call",
                                "id": "t1",
                                "name": "charge_card",
                                "arguments": {"amount_usd": 42},
                            }
                        ],
                    }
                ],
                (220, 25),
            ),
            start_ns=start + 5_000_000,
            ms=900,
        ):
            pass
        with billing.span(
            "execute_tool charge_card",
            {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "charge_card"},
            start_ns=start + 950_000_000,
            ms=2000,
            error="card declined: insufficient funds",
        ):
            pass
    traces["error"] = _hex(root)


def _bulk(support: _Sender, billing: _Sender, now: int) -> None:
    """Classification traces over the last 20 hours: two models, five users, two services."""
    for i in range(BULK):
        start = now - (20 * 60 - i * 18) * MINUTE_NS - 2 * MINUTE_NS
        sender = support if i % 2 else billing
        model, provider = (
            ("gpt-4o-mini", "openai") if i % 3 else ("claude-3-5-haiku-20241022", "anthropic")
        )
        ms = 200 + (i * 37) % 900
        ticket = f"Ticket {i}: my invoice shows the wrong amount"
        with (
            sender.span(
                "classify-ticket",
                {"user.id": f"u-{i % 5}", "ticket": i},
                start_ns=start,
                ms=ms + 20,
            ),
            sender.span(
                f"chat {model}",
                _genai_chat(
                    model,
                    provider,
                    [{"role": "user", "parts": [_text(ticket)]}],
                    [{"role": "assistant", "parts": [_text("billing" if i % 4 else "shipping")]}],
                    (100 + 7 * i, 2 + i % 9),
                ),
                start_ns=start + 10_000_000,
                ms=ms,
            ),
        ):
            pass


def _long_session(web: _Sender, now: int) -> None:
    """Session s-long-1 (erin): LONG turns of a chat widget, one every five minutes, values on
    the root span only (no model call): more turns than a page of the session view."""
    for turn in range(LONG):
        start = now - (6 * 60 - 5 * turn) * MINUTE_NS
        attributes = {
            "session.id": "s-long-1",
            "user.id": "erin",
            "input.value": f"question {turn + 1}",
            "output.value": f"answer {turn + 1}",
        }
        with web.span("widget-turn", attributes, start_ns=start, ms=40 + turn):
            pass


def _experiment_row(support: _Sender, traces: dict[str, str]) -> None:
    """An experiment row: kind 'experiment', left out of the production pages."""
    with (
        support.span(
            "eval",
            {
                "evalhouse.span.purpose": "eval",
                "evalhouse.experiment.name": "explorer-ui",
                "evalhouse.experiment.id": "exp-explorer-ui",
                "evalhouse.dataset.row_id": "r1",
                "evalhouse.input": json.dumps("2+2"),
                "evalhouse.output": json.dumps("4"),
            },
        ) as root,
        support.span("task", {"evalhouse.span.purpose": "task"}),
    ):
        pass
    traces["experiment"] = _hex(root)


@contextmanager
def seeded_explorer(dsn: str, template: str, tmp_path: Path) -> Iterator[SeededExplorer]:
    """Every scenario above, summarized, behind an in-process API and UI."""
    store = clone_database(dsn, template, f"explorer_ui_{uuid.uuid4().hex[:10]}")
    collector = Collector(collector_settings(tmp_path / "collector"), store)
    addresses = collector.start()
    endpoint = f"http://{addresses.grpc}"
    server = AsgiServer.start(api_app(store, ApiKeys(frozenset())), "127.0.0.1", 0, "UI")
    url = f"http://127.0.0.1:{server.port}"
    saved = os.environ.get("EVALHOUSE_API_URL")
    os.environ["EVALHOUSE_API_URL"] = url
    senders = {name: _Sender(endpoint, name) for name in ("support-bot", "billing-api", "web-shop")}
    try:
        tracing = evalhouse.init(endpoint=endpoint)
        assert tracing.error is None and "openai" in tracing.instrumented
        traces: dict[str, str] = {}
        now = time.time_ns()
        support, billing, web = senders["support-bot"], senders["billing-api"], senders["web-shop"]
        _bulk(support, billing, now)
        _rag_session(support, now, traces)
        _vercel_trace(web, now, traces)
        _failing_checkout(billing, now, traces)
        _long_session(web, now)
        _refund_session(support, now, traces)
        instrumented = _live_turns(support, traces)
        _experiment_row(support, traces)
        force_flush()
        for sender in senders.values():
            sender.close()
        sent = instrumented + sum(sender.sent for sender in senders.values())
        wait_for(lambda: store.query("SELECT count() FROM otel_traces")[0][0] >= sent, 60)
        # Feedback from the app's users, through the SDK and the HTTP API.
        assert evalhouse.feedback("helpful", value=1, trace_id=traces["refund-1"])
        assert evalhouse.feedback("helpful", value=0, trace_id=traces["error"])
        settings = load_settings(
            data_dir=tmp_path / "evaluator",
            evaluator_quiet_seconds=0,
            evaluator_poll_seconds=0.1,
            explorer_quiet_seconds=0,
        )
        evaluator = Evaluator(settings, store)
        try:
            # A thread of its own: Playwright's sync API keeps an event loop in this one.
            with ThreadPoolExecutor(1) as pool:
                pool.submit(evaluator.run_until_idle, 120).result()
        finally:
            evaluator.close()
        production = BULK + 2 + 1 + 1 + 3 + LONG
        summarized = store.query("SELECT count() FROM traces WHERE kind = 'production'")[0][0]
        assert summarized == production, f"{summarized} of {production} traces summarized"
        # One more trace once the evaluator has stopped: stored, not summarized yet (as in the
        # seconds after an app's last span).
        late = _Sender(endpoint, "support-bot")
        with late.span("late-turn", {"session.id": "s-late"}) as root:
            pass
        late.close()
        traces["pending"] = _hex(root)
        query = "SELECT count() FROM otel_traces WHERE TraceId = {id:String}"
        wait_for(lambda: store.query(query, {"id": traces["pending"]})[0][0] == 1, 30)
        yield SeededExplorer(url=url, store=store, traces=traces, production=production)
    finally:
        evalhouse.init(exporter=InMemorySpanExporter())
        if saved is None:
            os.environ.pop("EVALHOUSE_API_URL", None)
        else:
            os.environ["EVALHOUSE_API_URL"] = saved
        server.stop()
        collector.stop()
