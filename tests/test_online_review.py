"""Review queues: filled from production traces (the real OpenTelemetry SDK and ``openai``
client against a local OpenAI-compatible server), claimed by reviewers through the HTTP API,
and worked through in the browser (Debian's Chromium under Playwright) with the keyboard.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest
from fake_openai import fake_openai
from online_helpers import Online, call, online, stored_spans, summarize_all
from opentelemetry import trace
from ui_helpers import chromium, page_of

import evalhouse

QUESTIONS = ["Where is the Louvre?", "What is the capital of Peru?", "How tall is Everest?"]


@pytest.fixture(scope="module")
def served(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Online]:
    answers = iter(["In Paris.", "Lima.", "8,849 metres."] * 3)
    with (
        fake_openai(reply=lambda body: next(answers)) as llm,
        pytest.MonkeyPatch.context() as patch,
        online(chdb_dsn, template_database, tmp_path_factory.mktemp("review")) as env,
    ):
        for name in (
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "OTEL_SEMCONV_STABILITY_OPT_IN",
        ):
            patch.delenv(name, raising=False)
        tracing = evalhouse.init(endpoint=env.grpc, service_name="support-bot")
        assert tracing.error is None and "openai" in tracing.instrumented
        tracer = trace.get_tracer("tests.review")
        with openai.OpenAI(base_url=llm.base_url, api_key="test") as client:
            for question in QUESTIONS:
                with tracer.start_as_current_span("answer", attributes={"evalhouse.tags": "rev"}):
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": question}]
                    )
        assert tracing.force_flush()
        stored_spans(env.store, 2 * len(QUESTIONS))
        assert summarize_all(env.store) >= len(QUESTIONS)
        yield env


CONFIGS = [
    {"name": "helpful", "type": "boolean"},
    {"name": "tone", "type": "categorical", "categories": ["rude", "neutral", "kind"]},
    {"name": "accuracy", "type": "numeric", "min": 0, "max": 5},
]


def make_queue(served: Online, name: str) -> dict[str, Any]:
    status, body = call(
        served.api,
        "POST",
        "/api/queues",
        {"name": name, "filter": "tag:rev", "since": "1h", "score_configs": CONFIGS},
    )
    assert status == 201, body
    return dict(body)


def test_reviewers_claim_distinct_items_and_scores_are_checked(served: Online) -> None:
    queue = make_queue(served, "api-queue")
    assert queue["progress"] == {"total": 3, "done": 0, "skipped": 0, "in_review": 0, "open": 3}
    code, _again = call(
        served.api, "POST", "/api/queues", {"name": "api-queue", "score_configs": CONFIGS}
    )
    assert code == 409
    _, ana = call(served.api, "GET", "/api/queues/api-queue/next", reviewer="ana")
    _, bob = call(served.api, "GET", "/api/queues/api-queue/next", reviewer="bob")
    assert ana["item"]["trace_id"] != bob["item"]["trace_id"]
    # Asking again gives back the item one holds.
    _, ana_again = call(served.api, "GET", "/api/queues/api-queue/next", reviewer="ana")
    assert ana_again["item"]["trace_id"] == ana["item"]["trace_id"]
    assert ana_again["progress"]["in_review"] == 2
    path = f"/api/queues/api-queue/items/{ana['item']['trace_id']}"
    code, body = call(served.api, "POST", path, {"reviewer": "bob", "scores": {"helpful": True}})
    assert code == 409 and "ana is reviewing" in body["error"]
    for bad, message in [
        ({"tone": "sarcastic"}, "one of rude, neutral, kind"),
        ({"accuracy": 9}, "outside 0 .. 5"),
        ({"helpful": "yes"}, "send true or false"),
        ({"speed": 1}, "unknown score(s) speed"),
    ]:
        code, body = call(served.api, "POST", path, {"reviewer": "ana", "scores": bad})
        assert code == 400 and message in body["error"], body
    code, body = call(
        served.api,
        "POST",
        path,
        {"reviewer": "ana", "scores": {"helpful": True, "tone": "kind", "accuracy": 4.5}},
    )
    assert code == 200 and body["state"] == "done"
    assert body["progress"]["done"] == 1
    rows = served.store.query_dicts(
        "SELECT name, value, label, source, author FROM scores FINAL "
        "WHERE trace_id = {t:String} ORDER BY name",
        {"t": ana["item"]["trace_id"]},
    )
    assert [(r["name"], r["value"], r["label"], r["source"], r["author"]) for r in rows] == [
        ("accuracy", 4.5, "", "human", "ana"),
        ("helpful", 1.0, "yes", "human", "ana"),
        ("tone", None, "kind", "human", "ana"),
    ]


def test_a_review_queue_is_worked_through_in_the_browser(served: Online) -> None:
    make_queue(served, "support-week")
    with chromium() as browser, page_of(browser, served.api) as page:
        page.goto("/review")
        page.wait_for_selector("body[data-ready=true]")
        assert "support-week" in page.locator("#queues-table").inner_text()
        page.goto("/review/support-week")
        page.fill("input[name=reviewer]", "carol")
        page.click("form.review-name button[type=submit]")
        page.wait_for_selector("body[data-ready=true]")
        seen = []
        for step in range(3):
            trace_id = page.locator("#review-trace").get_attribute("data-trace-id")
            seen.append(trace_id)
            conversation = page.locator("#review-trace .chat").inner_text()
            assert any(q in conversation for q in QUESTIONS), conversation
            assert "response" in conversation.lower()  # the answer, marked as the model's
            if step == 1:
                page.keyboard.press("s")  # skip this one
            else:
                page.keyboard.press("y")
                page.keyboard.press("3")
                page.fill("input[name=score-accuracy]", "4")
                page.fill("textarea[name=comment]", f"checked {step}")
                page.locator("textarea[name=comment]").press("Control+Enter")
            if step < 2:
                page.wait_for_function(
                    "id => document.querySelector('#review-trace')?.dataset.traceId !== id",
                    arg=trace_id,
                )
        page.wait_for_selector("main[data-state=empty]")
        assert "1 skipped" in page.locator("#review-progress").inner_text()
    assert len(set(seen)) == 3
    rows = served.store.query_dicts(
        "SELECT trace_id, name, value, label, explanation, author FROM scores FINAL "
        "WHERE source = 'human' AND author = 'carol' ORDER BY trace_id, name"
    )
    assert {r["trace_id"] for r in rows} == {seen[0], seen[2]}
    assert {(r["name"], r["value"], r["label"]) for r in rows} == {
        ("helpful", 1.0, "yes"),
        ("tone", None, "kind"),
        ("accuracy", 4.0, ""),
    }
    _, queue = call(served.api, "GET", "/api/queues/support-week")
    assert queue["progress"] == {"total": 3, "done": 2, "skipped": 1, "in_review": 0, "open": 0}
