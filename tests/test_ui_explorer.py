"""The production pages in Debian's Chromium (Playwright): traces, a trace, sessions, a session,
usage. The store holds production traces sent by the OTel SDK and the official OpenAI
instrumentation through a real collector (``tests/explorer_seed.py``); each test uses a page
the way a person would and checks what it shows against the HTTP API. Screenshots go to
tests/artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from explorer_seed import LONG, SeededExplorer, seeded_explorer
from test_ui_browser import overflow
from ui_helpers import chromium, open_page, page_of, screenshot

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def seeded(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeededExplorer]:
    with seeded_explorer(chdb_dsn, template_database, tmp_path_factory.mktemp("explorer")) as ui:
        yield ui


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Any, seeded: SeededExplorer) -> Iterator[Any]:
    # Bad filters below are answered 400 on purpose (the browser logs them).
    with page_of(browser, seeded.url, expected=("400",)) as opened:
        yield opened


def api(seeded: SeededExplorer, path: str, **params: Any) -> Any:
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{seeded.url}{path}?{query}", timeout=30) as response:
        return json.loads(response.read())


def listed(page: Any, table: str = "#traces-table", key: str = "data-trace") -> list[str]:
    ids: list[str] = page.eval_on_selector_all(
        f"{table} tbody tr", f"(rows) => rows.map((row) => row.getAttribute('{key}'))"
    )
    return ids


def settled(page: Any) -> None:
    """Wait until the list's page has arrived."""
    page.wait_for_selector("#pager:not([data-state=loading])")


def scroll_to_the_end(page: Any) -> None:
    """Scroll to the list's end until every page has come (each scroll loads the next)."""
    for _ in range(20):
        page.locator("#pager").scroll_into_view_if_needed()
        page.wait_for_timeout(50)
        settled(page)
        if page.locator("#pager[data-state=done]").count():
            return
    pytest.fail("the list never reached its end")


def params(page: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query))


def all_traces(seeded: SeededExplorer, **query: Any) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = api(seeded, "/api/traces", limit=1000, **query)["traces"]
    return traces


def test_landing_page_is_the_trace_list_and_experiments_stay_reachable(
    page: Any, seeded: SeededExplorer
) -> None:
    open_page(page, "/")
    assert urllib.parse.urlparse(page.url).path == "/traces"
    assert page.locator("nav a.active").inner_text() == "Traces"
    settled(page)
    shown = listed(page)
    assert len(shown) == 50  # one page
    assert seeded.traces["experiment"] not in shown  # production by default
    assert shown[:3] == [seeded.traces[k] for k in ("refund-3", "refund-2", "refund-1")]
    page.click("nav a[data-nav=experiments]")
    page.wait_for_selector("#experiments-table")
    assert "explorer-ui" in page.locator("#experiments-table").inner_text()


def test_scrolling_loads_every_trace_once(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, "/traces")
    settled(page)
    assert len(listed(page)) == 50
    page.click("#load-more")
    page.wait_for_function("document.querySelectorAll('#traces-table tbody tr').length === 100")
    settled(page)
    # The last page comes by scrolling to the end, as a reader would.
    scroll_to_the_end(page)
    shown = listed(page)
    assert len(shown) == len(set(shown)) == seeded.production
    assert set(shown) == {row["trace_id"] for row in all_traces(seeded)}
    assert "all of this window" in page.locator("#page-status").inner_text()


def test_filter_chips_change_the_rows_and_the_address_and_history_restores_them(
    page: Any, seeded: SeededExplorer
) -> None:
    open_page(page, "/traces")
    settled(page)
    page.fill("#filter-input", "model:gpt-4o")
    page.press("#filter-input", "Enter")
    settled(page)
    assert params(page)["filter"] == "model:gpt-4o"
    assert set(listed(page)) == {seeded.traces["rag-1"], seeded.traces["rag-2"]}
    assert page.locator(".filter-chip").inner_text().startswith("model:gpt-4o")
    # Click the chip: it excludes instead.
    page.click(".filter-chip .chip-text")
    settled(page)
    assert params(page)["filter"] == "-model:gpt-4o"
    expected = {row["trace_id"] for row in all_traces(seeded, filter="-model:gpt-4o")}
    assert len(expected) == seeded.production - 2
    scroll_to_the_end(page)
    assert set(listed(page)) == expected
    page.click(".filter-chip .chip-remove")
    settled(page)
    assert "filter" not in params(page)
    # A value in a row filters by itself: the error status.
    error_row = page.locator(f"tr[data-trace='{seeded.traces['error']}']")
    error_row.locator("[data-filter='status:error']").click()
    settled(page)
    assert params(page)["filter"] == "status:error"
    assert listed(page) == [seeded.traces["error"]]
    assert "errored" in (page.locator("#traces-table tbody tr").get_attribute("class") or "")

    page.go_back()
    settled(page)
    assert "filter" not in params(page) and len(listed(page)) == 50
    page.go_forward()
    settled(page)
    assert listed(page) == [seeded.traces["error"]]
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    settled(page)
    assert listed(page) == [seeded.traces["error"]]
    assert page.locator(".filter-chip").count() == 1

    page.fill("#filter-input", "bogus:1")
    page.press("#filter-input", "Enter")
    error = page.locator("#traces-message .notice-error")
    error.wait_for()
    assert "bogus" in error.inner_text()
    screenshot(page, "explorer-traces-bad-filter")


def test_sql_mode_text_search_and_time_range(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, "/traces")
    settled(page)
    page.click("#sql-toggle")
    page.fill("#where-input", "total_tokens > 1000")
    page.click("#where-apply")
    settled(page)
    assert params(page)["where"] == "total_tokens > 1000"
    assert listed(page) == [seeded.traces["rag-2"]]  # 1,040 tokens; nothing else passes 1,000
    page.fill("#where-input", "no_such_column = 1")
    page.click("#where-apply")
    error = page.locator("#traces-message .notice-error")
    error.wait_for()
    assert "no_such_column" in error.inner_text()
    open_page(page, "/traces")
    settled(page)
    page.fill("#trace-search", "sso")  # case-insensitive, inputs and outputs
    page.wait_for_url(re.compile(r"q=sso"))
    settled(page)
    assert listed(page) == [seeded.traces["rag-2"]]
    page.fill("#trace-search", "")
    page.wait_for_url(re.compile(r"/traces$"))
    settled(page)
    page.select_option("#time-range", "1h")
    settled(page)
    assert params(page)["since"] == "1h"
    recent = {seeded.traces[k] for k in ("refund-1", "refund-2", "refund-3", "error", "vercel")}
    assert set(listed(page)) == recent
    # A custom range, in the browser's time zone: 100 to 80 minutes ago (the RAG turns...).
    page.select_option("#time-range", "custom")
    for field, minutes in (("#range-from", 100), ("#range-to", 80)):
        local = page.evaluate(
            "(m) => { const d = new Date(Date.now() - m * 60000);"
            " return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16); }",
            minutes,
        )
        page.fill(field, local)
    page.click("#range-apply")
    settled(page)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", params(page)["until"])
    window = {key: params(page)[key] for key in ("since", "until")}
    expected = {row["trace_id"] for row in all_traces(seeded, **window)}
    assert {seeded.traces["rag-1"], seeded.traces["rag-2"]} < expected
    assert set(listed(page)) == expected
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.locator("#time-range").input_value() == "custom"
    # Experiment rows are traces too, one choice away.
    page.select_option("#time-range", "24h")
    settled(page)
    page.select_option("#trace-kind", "experiment")
    settled(page)
    assert listed(page) == [seeded.traces["experiment"]]


def column_values(page: Any, key: str) -> list[str]:
    index = page.evaluate(
        "(key) => [...document.querySelectorAll('#traces-table thead th')]"
        ".findIndex((th) => th.dataset.sort === key)",
        key,
    )
    values: list[str] = page.eval_on_selector_all(
        f"#traces-table tbody tr td:nth-child({index + 1})",
        "(cells) => cells.map((c) => c.innerText.trim())",
    )
    return values


def test_columns_sort_on_the_server_and_unknown_cost_sorts_last(
    page: Any, seeded: SeededExplorer
) -> None:
    open_page(page, "/traces")
    settled(page)
    for order in ("desc", "asc"):
        page.click("th[data-sort=duration_ms] button")
        page.wait_for_function(
            "(order) => new URLSearchParams(location.search).get('order') === order"
            " || (order === 'desc' && location.search.includes('sort=duration_ms'))",
            arg=order,
        )
        settled(page)
        expected = api(seeded, "/api/traces", sort="duration_ms", order=order, limit=50)
        assert listed(page) == [row["trace_id"] for row in expected["traces"]]
        arrow = "▼" if order == "desc" else "▲"
        assert arrow in page.locator("th[data-sort=duration_ms]").inner_text()
    page.click("th[data-sort=cost_usd] button")
    settled(page)
    assert params(page)["sort"] == "cost_usd"
    shown = listed(page)
    assert shown[0] == seeded.traces["rag-1"] or shown[0] == seeded.traces["rag-2"]  # $0.0125
    # Unknown cost is "unknown", never $0, and sorts after every known cost.
    costs = column_values(page, "cost_usd")
    assert not any(c.startswith("$0\n") or c == "$0" for c in costs)
    page.click("th[data-sort=error_count] button")
    settled(page)
    assert listed(page)[0] == seeded.traces["error"]
    # A text column sorts the loaded rows, and says so.
    page.click("th[data-sort=service_name] button")
    settled(page)
    assert page.locator("#sort-note").is_visible()
    services = column_values(page, "service_name")
    assert services == sorted(services) and services[0] == "billing-api"
    screenshot(page, "explorer-traces-sorted")


def test_trace_page_shows_tree_chat_tool_calls_and_totals(
    page: Any, seeded: SeededExplorer
) -> None:
    trace_id = seeded.traces["refund-1"]
    open_page(page, "/traces")
    settled(page)
    page.locator(f"tr[data-trace='{trace_id}'] td.num").first.click()  # not a value: the row
    page.wait_for_url(f"**/traces/{trace_id}")
    page.wait_for_selector("body[data-ready=true]")
    row = all_traces(seeded, filter="session:s-refund-1042")[-1]
    assert row["trace_id"] == trace_id
    totals = page.locator("#trace-totals").inner_text()
    assert f"{row['total_tokens']}" in totals and f"{row['input_tokens']} in" in totals
    assert "inferred" in page.locator("#trace-cost").inner_text()
    kinds = [r.get_attribute("data-kind") for r in page.locator(".wf-row").all()]
    assert kinds == ["span", "llm", "tool", "llm"]
    page.click(".wf-row[data-kind=tool]")
    tool = page.locator("#tool-block").inner_text()
    assert "lookup_order" in tool and '"delivered"' in tool
    page.locator(".wf-row[data-kind=llm]").first.click()
    first_call = page.locator("#span-chat")
    assert first_call.locator(".chat-system").count() == 1
    assert re.search(r"calls tool\s+lookup_order", first_call.locator(".chat-answer").inner_text())
    assert "$" in page.locator("#span-cost").inner_text()
    screenshot(page, "explorer-trace")

    page.click("#trace-tabs a[data-view=chat]")
    assert params(page)["view"] == "chat"
    cards = page.locator("#chat-view .call-card")
    assert cards.count() == 2
    second = cards.nth(1)
    assert "3 earlier messages" in second.locator("details.earlier summary").inner_text()
    assert second.locator(".chat-tool .tool-result").count() == 1
    assert "refund of $59.90" in second.locator(".chat-answer").inner_text()
    page.reload()
    page.wait_for_selector("#chat-view .call-card")  # the view is part of the link
    screenshot(page, "explorer-trace-conversation")


def test_the_official_instrumentation_turn_shows_its_tool_history(
    page: Any, seeded: SeededExplorer
) -> None:
    open_page(page, f"/traces/{seeded.traces['refund-2']}?view=chat")
    chat = page.locator("#chat-view .call-card").first
    roles = [m.get_attribute("data-role") for m in chat.locator(".chat-message").all()]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user", "assistant"]
    assert "lookup_order" in chat.locator(".has-tool-call .tool-call").inner_text()
    assert "3 to 5 days" in chat.locator(".chat-answer").inner_text()


def test_failed_and_unpriced_traces(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, f"/traces/{seeded.traces['error']}")
    assert "error" in page.locator("#trace-status").inner_text()
    assert page.locator("#trace-failures li").count() == 2
    # It opens on where the failure began, with the exception event.
    details = page.locator("#span-details").inner_text()
    assert "execute_tool charge_card" in details and "card declined" in details
    assert "exception" in details
    assert page.locator(".wf-row.failed").count() == 2
    screenshot(page, "explorer-trace-error")
    open_page(page, f"/traces/{seeded.traces['vercel']}")
    cost = page.locator("#trace-cost").inner_text()
    assert "unknown" in cost and "$" not in cost
    open_page(page, "/traces?filter=user%3Acarol")
    settled(page)
    assert "unknown" in page.locator("#traces-table tbody td.cost-cell").inner_text()
    open_page(page, f"/traces/{seeded.traces['rag-1']}")
    assert "provided" in page.locator("#trace-cost").inner_text()


def test_a_trace_not_summarized_yet_opens_without_totals(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, f"/traces/{seeded.traces['pending']}")
    assert page.locator("h1").inner_text() == "late-turn"
    assert "appear once the trace is complete" in page.locator("#trace-totals").inner_text()
    assert page.locator(".wf-row").count() == 1


def test_sessions_and_a_session_read_like_the_conversation(
    page: Any, seeded: SeededExplorer
) -> None:
    open_page(page, "/sessions")
    settled(page)
    expected = api(seeded, "/api/sessions")["sessions"]
    assert listed(page, "#sessions-table", "data-session") == [s["session_id"] for s in expected]
    assert len(expected) == 5
    screenshot(page, "explorer-sessions")
    page.click("#sessions-table [data-filter='user:bob']")
    settled(page)
    assert params(page)["filter"] == "user:bob"
    assert listed(page, "#sessions-table", "data-session") == ["s-rag-7"]
    page.go_back()
    settled(page)
    page.click("a[href='/sessions/s-refund-1042']")
    page.wait_for_selector("body[data-ready=true]")
    settled(page)
    detail = api(seeded, "/api/sessions/s-refund-1042")
    turns = page.locator("article.turn")
    assert turns.count() == 3
    for i, trace in enumerate(detail["traces"]):
        turn = turns.nth(i)
        assert turn.get_attribute("data-trace") == trace["trace_id"]
        assert turn.locator(".bubble-user").inner_text().endswith(trace["input_preview"])
        assert turn.locator(".bubble-assistant").inner_text().endswith(trace["output_preview"])
        assert f"{trace['total_tokens']} tokens" in turn.locator(".turn-tokens").inner_text()
        assert "inferred" in turn.locator(".turn-cost").inner_text()
    assert "10 min later" in page.locator("#conversation").inner_text()
    assert re.search(r"TURNS\s+3", page.locator("#session-totals").inner_text())
    turns.nth(0).locator(".turn-toggle").click()
    calls = turns.nth(0).locator(".turn-calls .turn-call")
    calls.first.wait_for()
    assert calls.count() == 2
    assert re.search(r"calls tool\s+lookup_order", calls.first.inner_text())
    screenshot(page, "explorer-session")
    page.click("#session-traces")
    page.wait_for_url(re.compile(r"/traces\?"))
    settled(page)
    assert params(page)["filter"] == "session:s-refund-1042"
    assert len(listed(page)) == 3


def test_a_long_session_opens_a_page_of_turns_at_a_time(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, "/sessions/s-long-1")
    settled(page)
    turns = page.locator("article.turn")
    assert turns.count() == 50
    assert "50 of 60 turns" in page.locator("#page-status").inner_text()
    scroll_to_the_end(page)
    assert turns.count() == LONG
    ids = listed(page, "#conversation", "data-trace") or [
        t.get_attribute("data-trace") for t in turns.all()
    ]
    assert len(set(ids)) == LONG
    assert turns.nth(LONG - 1).locator(".bubble-user").inner_text().endswith(f"question {LONG}")


def legend(page: Any, card: str) -> list[str]:
    names: list[str] = page.eval_on_selector_all(
        f"{card} .legend-item", "(items) => items.map((i) => i.innerText.trim())"
    )
    return names


def test_usage_groups_by_model_service_and_user(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, "/usage")
    page.wait_for_selector("#cost-table")
    buckets = api(seeded, "/api/usage", group_by="model", interval="30m")["buckets"]
    calls: dict[str, int] = {}
    for bucket in buckets:
        calls[bucket["group"]] = calls.get(bucket["group"], 0) + bucket["llm_calls"]
    table = {
        row.get_attribute("data-model"): row.locator("td").nth(1).inner_text()
        for row in page.locator("#cost-table tbody tr").all()
    }
    assert table == {model: str(n) for model, n in calls.items()}
    assert "unknown" in page.locator("#cost-table tr[data-model='house-model-9']").inner_text()
    assert page.locator("#usage-cost").inner_text().splitlines()[1].startswith("≥ $")
    assert set(legend(page, "#chart-cost")) == set(calls)
    assert page.locator("#chart-cost rect.bar").count() > 10
    assert page.locator("#chart-latency circle").count() > 10
    # The two thumbs of the seed (1 and 0) as the mean of their bucket, whatever the group.
    caption = page.locator("#chart-scores figcaption").inner_text()
    assert caption == "Score helpful (mean of the scored traces)"
    assert page.locator("#chart-scores circle").count() >= 1
    means = [b["scores"] for b in api(seeded, "/api/usage", interval="1d")["buckets"]]
    # Day buckets are UTC days: the two scored traces (seeded some minutes apart) share one,
    # unless the seed ran across midnight.
    days: dict[str, list[float]] = {}
    for name, value in (("refund-1", 1.0), ("error", 0.0)):
        row = api(seeded, f"/api/traces/{seeded.traces[name]}")["trace"]
        days.setdefault(row["start_time"][:10], []).append(value)
    expected = [{"helpful": sum(v) / len(v)} for _, v in sorted(days.items())]
    assert [m for m in means if m] == expected
    screenshot(page, "explorer-usage")

    page.select_option("#usage-group", "service")
    page.wait_for_function(
        "document.querySelector('#chart-tokens .legend')?.innerText.includes('web-shop')"
    )
    assert params(page)["group_by"] == "service"
    assert set(legend(page, "#chart-tokens")) == {"support-bot", "billing-api", "web-shop"}
    page.select_option("#usage-group", "user")
    page.wait_for_function(
        "document.querySelector('#chart-traces .legend')?.innerText.includes('other')"
    )
    users = {b["group"] for b in api(seeded, "/api/usage", group_by="user")["buckets"]}
    drawn = legend(page, "#chart-traces")
    # Six users drawn, the rest summed as "other".
    assert len(users) > 7 and drawn[-1] == f"other ({len(users) - 6})" and len(drawn) == 7
    page.select_option("#usage-group", "none")
    page.wait_for_function(
        "document.querySelector('#chart-latency .legend')?.innerText.includes('p99')"
    )
    assert legend(page, "#chart-latency") == ["p50", "p95", "p99"]
    page.go_back()
    page.wait_for_function("document.querySelector('#usage-group').value === 'user'")


@pytest.mark.parametrize("width", [1280, 1920])
def test_explorer_pages_fit_their_cards(browser: Any, seeded: SeededExplorer, width: int) -> None:
    pages = {
        "traces": ("/traces", "#traces-card > .table-wrap"),
        "sessions": ("/sessions", "#sessions-card > .table-wrap"),
        "session": ("/sessions/s-refund-1042", ".conversation-card"),
        "trace": (f"/traces/{seeded.traces['refund-1']}", "#timeline-view .card"),
        "usage": ("/usage", "#usage-charts .card, #cost-by-model > .table-wrap"),
    }
    with page_of(browser, seeded.url, width=width) as page:
        for name, (path, boxes) in pages.items():
            open_page(page, path)
            page.wait_for_selector(boxes.split(",")[0])
            page.wait_for_timeout(100)
            assert overflow(page, boxes) == [], name
            assert page.evaluate("document.documentElement.scrollWidth") <= width, name
            screenshot(page, f"explorer-{name}-{width}")


def test_static_routes_answer_the_shell(seeded: SeededExplorer) -> None:
    for path in ("/traces", "/sessions", "/sessions/a/b", "/usage", "/experiments"):
        with urllib.request.urlopen(seeded.url + path, timeout=10) as response:
            assert response.status == 200 and b'id="app"' in response.read(), path


def post(seeded: SeededExplorer, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        seeded.url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_ticked_traces_and_one_trace_go_to_a_dataset(page: Any, seeded: SeededExplorer) -> None:
    open_page(page, "/traces?filter=session%3As-refund-1042")
    settled(page)
    ids = listed(page)
    assert len(ids) >= 2
    for trace_id in ids[:2]:
        page.check(f"#traces-table input.pick[data-trace='{trace_id}']")
    assert page.locator("#traces-dataset-open").inner_text() == "Add 2 selected to a dataset"
    assert "filter=session%3As-refund-1042" in page.get_attribute("#replay-link", "href")
    page.click("#traces-dataset-open")
    page.fill("#traces-dataset-name", "bad name!")
    page.click("#traces-dataset-send")
    assert "letters, digits" in page.locator("#traces-dataset .add-dataset-result").inner_text()
    page.fill("#traces-dataset-name", "refunds-from-ui")
    page.click("#traces-dataset-send")
    page.wait_for_selector("#traces-dataset .add-dataset-result.good-text")
    assert "to refunds-from-ui (version 1)" in page.locator("#traces-dataset").inner_text()
    rows = api(seeded, "/api/datasets/refunds-from-ui")["rows"]
    assert sorted(r["metadata"]["source_trace_id"] for r in rows) == sorted(ids[:2])

    # One trace from its own page: a second version with that trace added.
    open_page(page, f"/traces/{seeded.traces['refund-1']}")
    page.click("#trace-dataset-open")
    page.fill("#trace-dataset-name", "refunds-from-ui")
    page.click("#trace-dataset-send")
    page.wait_for_selector("#trace-dataset .add-dataset-result.good-text")
    assert "(version 2)" in page.locator("#trace-dataset").inner_text()


def test_scores_of_a_span_show_as_badges_with_who_gave_them(
    page: Any, seeded: SeededExplorer
) -> None:
    trace_id = seeded.traces["refund-1"]
    call = api(seeded, f"/api/traces/{trace_id}")["model_calls"][0]
    post(
        seeded,
        "/api/feedback",
        {
            "trace_id": trace_id,
            "span_id": call["span_id"],
            "name": "grounded",
            "value": 0.25,
            "comment": "cites a policy that does not exist",
            "author": "ana",
        },
    )
    scores = api(seeded, f"/api/traces/{trace_id}")["scores"]
    assert [
        (s["span_id"], s["name"], s["value"], s["source"], s["author"])
        for s in scores
        if s["name"] == "grounded"
    ] == [(call["span_id"], "grounded", 0.25, "human", "ana")]
    open_page(page, f"/traces/{trace_id}")
    badge = page.locator(f".wf-row[data-span='{call['span_id']}'] .stored-score")
    assert badge.inner_text() == "grounded 25%"
    assert "human · ana" in (badge.get_attribute("title") or "")
    page.click(f".wf-row[data-span='{call['span_id']}']")
    block = page.locator("#span-scores").inner_text()
    assert "grounded" in block and "cites a policy that does not exist" in block
