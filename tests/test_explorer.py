"""The production explorer, end to end: spans from the real OpenTelemetry SDK (the official
GenAI OpenAI instrumentation with messages captured, and OpenInference, Vercel AI SDK and
Langfuse attributes set as those libraries set them) go over OTLP/gRPC into a real collector
and store; the evaluator's summarizer writes the trace rows; the HTTP API answers on loopback.

One store is seeded for the whole module (the summaries, ranks and usage of ~2,100 traces),
so each test only asks questions.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import openai
import pytest
from conftest import clone_database, collector_settings, wait_for
from fake_openai import Usage, fake_openai
from online_helpers import summarize_all
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

import evalhouse
from evalhouse.asgi import AsgiServer
from evalhouse.auth import ApiKeys
from evalhouse.collector import Collector
from evalhouse.explorer import parse_filter
from evalhouse.store import SCORE_COLUMNS, ScoreRecord, Store
from evalhouse.surfaces.api import api_app

BIG_SESSION_TRACES = 2_100


def _emit(endpoint: str) -> int:
    """Every scenario's spans through the SDK; returns how many spans were sent."""
    tracing = evalhouse.init(endpoint=endpoint, service_name="shop-assistant")
    assert tracing.error is None and "openai" in tracing.instrumented
    tracer = trace.get_tracer("tests.explorer")
    sent = 0

    def span(name: str, attrs: dict[str, Any], *, error: bool = False) -> Any:
        nonlocal sent
        sent += 1
        handle = tracer.start_as_current_span(name, attributes=attrs)
        current = handle.__enter__()
        if error:
            current.set_status(Status(StatusCode.ERROR, "tool failed"))

        class Closer:
            def __enter__(self) -> Any:
                return current

            def __exit__(self, *exc: Any) -> None:
                handle.__exit__(None, None, None)

        return Closer()

    # 1. The official OpenAI instrumentation under an app's root span with session, user, tags.
    with (
        fake_openai(reply=lambda body: "Paris, of course", usage=Usage(11, 7)) as llm,
        openai.OpenAI(base_url=llm.base_url, api_key="test") as client,
        span(
            "openai-agent",
            {"session.id": "s-openai", "user.id": "u-openai", "evalhouse.tags": ["beta", "vip"]},
        ),
    ):
        sent += 1  # the chat span the instrumentation adds
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Capital of France? ticket 4242"},
            ],
        )
    # 2. OpenInference: an LLM span wrapping the provider's own chat span (count once), a
    # provided cost, tags as a list, values on the root.
    with span(
        "oi-agent",
        {
            "openinference.span.kind": "AGENT",
            "session.id": "s-oi",
            "user.id": "u-oi",
            "tag.tags": ["rag", "beta"],
            "input.value": "Which plan fits a team of 12?",
            "output.value": "The Team plan.",
        },
    ):
        with (
            span(
                "ChatOpenAI",
                {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o",
                    "llm.provider": "openai",
                    "llm.token_count.prompt": 100,
                    "llm.token_count.completion": 20,
                    "llm.cost.total": 0.5,
                    "llm.input_messages.0.message.role": "user",
                    "llm.input_messages.0.message.content": "Which plan fits a team of 12?",
                },
            ),
            span(
                "chat gpt-4o",
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o",
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.usage.output_tokens": 20,
                    "llm.cost.total": 0.25,
                },
            ),
        ):
            pass
        with span("search_docs", {"openinference.span.kind": "TOOL", "retrieval.query": "plans"}):
            pass
    # 3. Vercel AI SDK: ai.generateText around ai.generateText.doGenerate, metadata carries
    # session and user; an unpriced model (cost unknown, never $0).
    with (
        span(
            "ai.generateText",
            {
                "ai.operationId": "ai.generateText",
                "ai.telemetry.metadata.sessionId": "s-vercel",
                "ai.telemetry.metadata.userId": "u-vercel",
                "ai.usage.promptTokens": 40,
                "ai.usage.completionTokens": 5,
                "ai.model.id": "house-model-9",
                "ai.model.provider": "acme.chat",
            },
        ),
        span(
            "ai.generateText.doGenerate",
            {
                "ai.operationId": "ai.generateText.doGenerate",
                "ai.model.id": "house-model-9",
                "ai.model.provider": "acme.chat",
                "ai.usage.promptTokens": 40,
                "ai.usage.completionTokens": 5,
                "ai.prompt.messages": json.dumps(
                    [{"role": "user", "content": [{"type": "text", "text": "Refund order 77"}]}]
                ),
                "ai.response.text": "Refund issued for order 77",
            },
        ),
    ):
        pass
    # 4. A failing tool call, Langfuse session/user names, a slow trace.
    with (
        span(
            "checkout-agent",
            {
                "langfuse.session.id": "s-lf",
                "langfuse.user.id": "u-lf",
                "langfuse.trace.tags": "pay",
            },
        ),
        span("execute_tool charge", {"gen_ai.operation.name": "execute_tool"}, error=True),
    ):
        pass
    # 5. An experiment row (kind experiment): eval root with a task under it.
    with (
        span(
            "eval",
            {
                "evalhouse.span.purpose": "eval",
                "evalhouse.experiment.name": "explorer-exp",
                "evalhouse.experiment.id": "exp-explorer",
                "evalhouse.dataset.row_id": "r1",
                "evalhouse.input": json.dumps({"q": "2+2"}),
                "evalhouse.output": json.dumps("4"),
            },
        ),
        span("task", {"evalhouse.span.purpose": "task"}),
    ):
        pass
    # 6. A session of thousands of traces (one span each).
    for turn in range(BIG_SESSION_TRACES):
        with span("turn", {"session.id": "s-big", "user.id": "u-big", "turn": turn}):
            pass
    evalhouse.init(exporter=InMemorySpanExporter())  # flushes, then stops exporting
    return sent


@pytest.fixture(scope="module")
def seeded(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Store]:
    store = clone_database(chdb_dsn, template_database, f"explorer_{uuid.uuid4().hex[:10]}")
    collector = Collector(collector_settings(tmp_path_factory.mktemp("collector")), store)
    addresses = collector.start()
    with pytest.MonkeyPatch.context() as env:
        for name in (
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "OTEL_SEMCONV_STABILITY_OPT_IN",
        ):
            env.delenv(name, raising=False)
        env.setenv("EVALHOUSE_API_URL", "http://127.0.0.1:9")
        try:
            sent = _emit(addresses.grpc)
            wait_for(lambda: store.query("SELECT count() FROM otel_traces")[0][0] >= sent, 60)
        finally:
            collector.stop()
    experiment = store.query(
        "SELECT any(TraceId) FROM otel_traces WHERE ExperimentId = 'exp-explorer'"
    )[0][0]
    score = ScoreRecord(
        name="accuracy",
        source="experiment",
        created_at=int(datetime.now(UTC).timestamp() * 1000),
        value=0.25,
        experiment_id="exp-explorer",
        trace_id=experiment,
        row_id="r1",
        scorer="accuracy",
    )
    store.insert_rows("scores", [score.values()], list(SCORE_COLUMNS))
    assert summarize_all(store) >= BIG_SESSION_TRACES + 5
    yield store


@pytest.fixture(scope="module")
def api(seeded: Store) -> Iterator[str]:
    server = AsgiServer.start(api_app(seeded, ApiKeys(frozenset())), "127.0.0.1", 0, "API")
    yield f"http://127.0.0.1:{server.port}"
    server.stop()


def get(api: str, path: str, **params: Any) -> tuple[int, Any]:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    url = f"{api}{path}" + (f"?{query}" if query else "")
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def traces(api: str, **params: Any) -> list[dict[str, Any]]:
    status, body = get(api, "/api/traces", limit=1000, **params)
    assert status == 200, body
    return list(body["traces"])


def by_root(api: str, name: str, **params: Any) -> dict[str, Any]:
    found = traces(api, filter=f'name:"{name}"', **params)
    assert len(found) == 1, found
    return found[0]


def names(rows: list[dict[str, Any]]) -> set[str]:
    return {row["root_name"] for row in rows if row["root_name"] != "turn"}


CONTRACT = {
    "trace_id",
    "start_time",
    "end_time",
    "duration_ms",
    "root_name",
    "service_name",
    "session_id",
    "user_id",
    "tags",
    "status",
    "span_count",
    "error_count",
    "llm_calls",
    "models",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "cost_provenance",
    "input_preview",
    "output_preview",
    "scores",
    "kind",
}


def test_an_openai_trace_has_every_column_from_the_official_instrumentation(api: str) -> None:
    row = by_root(api, "openai-agent")
    assert set(row) >= CONTRACT
    assert row["service_name"] == "shop-assistant"
    assert (row["session_id"], row["user_id"], row["tags"]) == (
        "s-openai",
        "u-openai",
        ["beta", "vip"],
    )
    assert (row["status"], row["span_count"], row["error_count"], row["llm_calls"]) == (
        "ok",
        2,
        0,
        1,
    )
    assert row["models"] == ["gpt-4o-mini"]
    assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (11, 7, 18)
    assert row["cost_provenance"] == "inferred" and row["cost_usd"] > 0
    # No value on the root: the conversation is the preview (messages were captured).
    assert row["input_preview"] == "Capital of France? ticket 4242"
    assert row["output_preview"] == "Paris, of course"
    assert row["kind"] == "production" and row["scores"] == {}
    start = datetime.fromisoformat(row["start_time"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(row["end_time"].replace("Z", "+00:00"))
    assert start.tzinfo is not None and end >= start
    assert row["duration_ms"] == pytest.approx((end - start).total_seconds() * 1000, abs=0.01)


def test_openinference_tokens_count_once_with_provided_cost_and_list_tags(api: str) -> None:
    row = by_root(api, "oi-agent")
    assert (row["session_id"], row["user_id"]) == ("s-oi", "u-oi")
    assert row["tags"] == ["rag", "beta"]
    # The LLM span wraps the provider's chat span: only the leaf counts (as experiments do).
    assert (row["llm_calls"], row["input_tokens"], row["output_tokens"]) == (1, 100, 20)
    assert (row["cost_usd"], row["cost_provenance"]) == (0.25, "provided")
    assert row["input_preview"] == "Which plan fits a team of 12?"
    assert row["output_preview"] == "The Team plan."
    assert row["span_count"] == 4


def test_vercel_metadata_names_the_session_and_an_unpriced_model_costs_null(api: str) -> None:
    row = by_root(api, "ai.generateText")
    assert (row["session_id"], row["user_id"]) == ("s-vercel", "u-vercel")
    assert (row["llm_calls"], row["total_tokens"]) == (1, 45)
    assert row["models"] == ["house-model-9"]
    assert row["cost_usd"] is None and row["cost_provenance"] == "unknown"
    assert row["input_preview"] == "Refund order 77"
    assert row["output_preview"] == "Refund issued for order 77"


def test_kind_tells_experiment_traces_apart_and_scores_come_from_the_scores_table(
    api: str,
) -> None:
    assert "eval" not in names(traces(api, filter="-name:turn"))
    experiment = traces(api, kind="experiment")
    assert names(experiment) == {"eval"}
    assert experiment[0]["kind"] == "experiment"
    assert experiment[0]["scores"] == {"accuracy": 0.25}
    assert (
        experiment[0]["input_preview"] == '{"q": "2+2"}' and experiment[0]["output_preview"] == "4"
    )
    assert {"eval", "openai-agent"} <= names(traces(api, kind="all", filter="-name:turn"))


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        (
            "service:shop-assistant",
            {"openai-agent", "oi-agent", "ai.generateText", "checkout-agent"},
        ),
        ("model:gpt-4o", {"oi-agent"}),
        ("provider:acme", {"ai.generateText"}),
        ("session:s-vercel", {"ai.generateText"}),
        ("user:u-lf", {"checkout-agent"}),
        ("tag:vip", {"openai-agent"}),
        ("tag:pay", {"checkout-agent"}),
        ('name:"oi-agent"', {"oi-agent"}),
        ("status:error", {"checkout-agent"}),
        ("-status:ok", {"checkout-agent"}),
        ("tokens:>100", {"oi-agent"}),
        ("tokens:<=18 tokens:>0", {"openai-agent"}),
        ("cost:>=0.25", {"oi-agent"}),
        ("-model:gpt-4o-mini tokens:>0", {"oi-agent", "ai.generateText"}),
        ("attr.retrieval.query:plans", {"oi-agent"}),
        ("latency:<10m -tag:beta -status:error", {"ai.generateText"}),
    ],
)
def test_each_filter_term_selects_its_traces(api: str, term: str, expected: set[str]) -> None:
    assert names(traces(api, filter=f"{term} -name:turn")) == expected


def test_latency_and_score_terms(api: str) -> None:
    slow = traces(api, filter="latency:>0ms")
    assert len(slow) == len(traces(api))
    assert traces(api, filter="latency:>1h") == []
    assert names(traces(api, kind="experiment", filter="score.accuracy:<0.5")) == {"eval"}
    assert traces(api, kind="experiment", filter="score.accuracy:>0.5") == []


@pytest.mark.parametrize(
    "term", ["colour:red", "status:maybe", "latency:>2parsecs", "tokens:lots", "model:", "-"]
)
def test_a_bad_filter_term_is_a_400_naming_it(api: str, term: str) -> None:
    status, body = get(api, "/api/traces", filter=f"model:gpt-4o {term}")
    assert status == 400
    assert repr(term) in body["error"] or term in body["error"]


def test_filter_values_stay_out_of_the_sql_text() -> None:
    parsed = parse_filter('model:"x\' OR 1=1 --" -tag:beta')
    assert "OR 1=1" not in parsed.sql
    assert parsed.params["f0"] == "x' OR 1=1 --"


def test_where_is_checked_by_the_parser_and_runs_read_only(api: str) -> None:
    assert names(traces(api, where="total_tokens BETWEEN 40 AND 50")) == {"ai.generateText"}
    assert names(traces(api, where="has(tags, 'rag') AND cost_usd > 0.1")) == {"oi-agent"}
    for bad in ("1) OR (1", "(SELECT 1)", "file('/etc/passwd') != ''", "no_such_column = 1"):
        status, body = get(api, "/api/traces", where=bad)
        assert status == 400, (bad, body)


def test_text_search_finds_inputs_and_outputs_case_insensitively(api: str) -> None:
    assert names(traces(api, q="TICKET 4242")) == {"openai-agent"}
    assert names(traces(api, q="order 77")) == {"ai.generateText"}
    assert names(traces(api, q="team plan")) == {"oi-agent"}
    assert names(traces(api, q="rder 7")) == {"ai.generateText"}  # parts of words too
    assert traces(api, q="nowhere to be found") == []


@pytest.mark.parametrize(
    ("sort", "order"),
    [
        ("start_time", "desc"),
        ("start_time", "asc"),
        ("cost_usd", "desc"),
        ("duration_ms", "asc"),
        ("total_tokens", "desc"),
        ("error_count", "desc"),
    ],
)
def test_cursor_pages_have_no_duplicates_and_no_gaps(api: str, sort: str, order: str) -> None:
    everything = traces(api, sort=sort, order=order, since="2h")
    assert len(everything) > 1000 - 1 or len(everything) > 100
    seen: list[str] = []
    cursor = None
    while True:
        status, body = get(
            api, "/api/traces", sort=sort, order=order, since="2h", limit=97, cursor=cursor
        )
        assert status == 200, body
        seen += [row["trace_id"] for row in body["traces"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    full = {row["trace_id"] for row in everything} | set(seen)
    assert len(seen) == len(full) >= BIG_SESSION_TRACES
    if sort == "cost_usd":
        costs = [c for c in (row["cost_usd"] for row in everything) if c is not None]
        assert costs == sorted(costs, reverse=True)


def _all_pages(api: str, **params: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    while True:
        status, body = get(api, "/api/traces", limit=997, cursor=cursor, **params)
        assert status == 200, body
        seen += [row["trace_id"] for row in body["traces"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


def test_a_filtered_list_pages_like_the_unfiltered_one(api: str) -> None:
    """Filters that keep every trace page through the same traces in the same order as no
    filter at all (the filtered list reads with the skip indexes, the other without)."""
    everything = _all_pages(api, since="1h")
    assert len(everything) > 1000
    for filter in ("-tag:none", "-user:nobody"):
        assert _all_pages(api, filter=filter, since="1h") == everything, filter


def test_a_cursor_of_another_sort_is_refused(api: str) -> None:
    _, body = get(api, "/api/traces", limit=5)
    status, answer = get(api, "/api/traces", limit=5, sort="cost_usd", cursor=body["next_cursor"])
    assert status == 400 and "cursor" in answer["error"]


def test_a_session_of_thousands_of_traces_opens_page_by_page(api: str) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        status, body = get(api, "/api/sessions/s-big", limit=500, cursor=cursor)
        assert status == 200, body
        assert body["session"]["traces"] == BIG_SESSION_TRACES
        assert body["session"]["user_id"] == "u-big"
        seen += body["traces"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == BIG_SESSION_TRACES == len({row["trace_id"] for row in seen})
    starts = [row["start_time"] for row in seen]
    assert starts == sorted(starts)
    status, body = get(api, "/api/sessions/no-such-session")
    assert status == 404


def test_sessions_list_latest_first_with_totals(api: str) -> None:
    status, body = get(api, "/api/sessions", limit=2)
    assert status == 200
    first = body["sessions"]
    status, more = get(api, "/api/sessions", limit=50, cursor=body["next_cursor"])
    listed = [s["session_id"] for s in first + more["sessions"]]
    assert len(listed) == len(set(listed))
    assert set(listed) == {"s-openai", "s-oi", "s-vercel", "s-lf", "s-big"}
    rows = {s["session_id"]: s for s in first + more["sessions"]}
    assert rows["s-oi"]["total_tokens"] == 120 and rows["s-oi"]["cost_usd"] == 0.25
    assert rows["s-vercel"]["cost_usd"] is None
    assert rows["s-lf"]["error_count"] == 1
    _, filtered = get(api, "/api/sessions", filter="status:error")
    assert [s["session_id"] for s in filtered["sessions"]] == ["s-lf"]


def _sum(buckets: list[dict[str, Any]], key: str) -> Any:
    return sum(b[key] for b in buckets)


def test_usage_buckets_add_up_to_the_traces(seeded: Store, api: str) -> None:
    [(count, tokens, calls)] = seeded.query(
        "SELECT count(), sum(total_tokens), sum(llm_calls) FROM traces WHERE kind = 'production'"
    )
    status, body = get(api, "/api/usage", interval="1h")
    assert status == 200 and body["source"] == "rollup"
    buckets = body["buckets"]
    assert all(b["group"] is None for b in buckets)
    assert _sum(buckets, "traces") == count
    assert _sum(buckets, "total_tokens") == tokens
    assert _sum(buckets, "llm_calls") == calls == 3
    assert _sum(buckets, "errors") == 1
    assert all(b["cost_usd"] is None for b in buckets)  # the unpriced call makes it unknown
    assert _sum(buckets, "unpriced_calls") == 1
    with_calls = [b for b in buckets if b["llm_calls"]]
    assert all(
        b["latency_ms_p50"] <= b["latency_ms_p95"] <= b["latency_ms_p99"] for b in with_calls
    )
    assert all(b["error_rate"] == b["errors"] / b["traces"] for b in buckets)


@pytest.mark.parametrize("group_by", ["model", "provider", "service", "user", "none"])
def test_usage_groups_match_the_trace_rows_whichever_table_answers(api: str, group_by: str) -> None:
    status, rolled = get(api, "/api/usage", interval="1h", group_by=group_by)
    assert status == 200
    # The same question through the trace rows (a filter the rollup cannot answer).
    status, scanned = get(api, "/api/usage", interval="1h", group_by=group_by, filter="-tag:none")
    assert status == 200 and scanned["source"] == "traces"

    def totals(body: dict[str, Any]) -> dict[Any, tuple[int, int, int]]:
        out: dict[Any, tuple[int, int, int]] = {}
        for b in body["buckets"]:
            t, c, k = out.get(b["group"], (0, 0, 0))
            out[b["group"]] = (t + b["traces"], c + b["llm_calls"], k + b["total_tokens"])
        return out

    assert totals(rolled) == totals(scanned)
    if group_by == "model":
        assert totals(rolled)["gpt-4o"] == (1, 1, 120)
        assert totals(rolled)["house-model-9"] == (1, 1, 45)
    if group_by == "user":
        assert totals(rolled)["u-big"][0] == BIG_SESSION_TRACES


def test_usage_filters_and_bad_parameters(api: str) -> None:
    _, body = get(api, "/api/usage", interval="1h", group_by="model", filter="provider:openai")
    assert {b["group"] for b in body["buckets"]} == {"gpt-4o", "gpt-4o-mini"}
    assert get(api, "/api/usage", interval="7s")[0] == 400
    assert get(api, "/api/usage", group_by="colour")[0] == 400
    # A where on a column that is also a bucket's name means the column, for every group.
    for group_by in ("none", "model", "user"):
        status, body = get(
            api, "/api/usage", interval="1h", group_by=group_by, where="llm_calls >= 1"
        )
        assert status == 200, body
        assert sum(b["traces"] for b in body["buckets"]) > 0
    assert get(api, "/api/traces", since="yesterday")[0] == 400
    assert get(api, "/api/traces", limit=1001)[0] == 400


def test_one_trace_has_its_tree_its_row_and_each_model_call_as_a_chat(api: str) -> None:
    row = by_root(api, "openai-agent")
    status, body = get(api, f"/api/traces/{row['trace_id']}")
    assert status == 200
    assert body["trace"]["trace_id"] == row["trace_id"] and body["trace"]["total_tokens"] == 18
    assert len(body["spans"]) == 2
    [call] = body["model_calls"]
    assert call["model"] == "gpt-4o-mini" and call["counted"]
    assert [m["role"] for m in call["chat"]] == ["system", "user", "assistant"]
    assert call["chat"][-1]["content"] == "Paris, of course"
    status, body = get(api, f"/api/traces/{'0' * 31}1")
    assert status == 404


def test_late_spans_resummarize_without_double_counting(seeded: Store, api: str) -> None:
    row = by_root(api, "checkout-agent")
    before = get(api, "/api/usage", interval="1d")[1]["buckets"]
    tracer_spans = _late_model_call(seeded, row)
    assert tracer_spans == 1
    assert summarize_all(seeded) == 1
    again = by_root(api, "checkout-agent")
    assert (again["span_count"], again["llm_calls"], again["total_tokens"]) == (3, 1, 30)
    after = get(api, "/api/usage", interval="1d")[1]["buckets"]
    assert _sum(after, "traces") == _sum(before, "traces")
    assert _sum(after, "total_tokens") == _sum(before, "total_tokens") + 30
    assert len(traces(api, filter="session:s-lf")) == 1
    assert names(traces(api, sort="total_tokens")) >= {"checkout-agent"}


def _late_model_call(store: Store, row: dict[str, Any]) -> int:
    from otlp_builders import span, trace_request

    from evalhouse.collector._writer import _length_delimited
    from evalhouse.store import OtlpSink

    late = span(
        "chat gpt-4o",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.provider.name": "openai",
            "gen_ai.usage.input_tokens": 20,
            "gen_ai.usage.output_tokens": 10,
        },
        trace_id=bytes.fromhex(row["trace_id"]),
    )
    payload = trace_request([late], service="shop-assistant").SerializeToString()
    OtlpSink(store).insert_otlp("traces", _length_delimited([payload]), uuid.uuid4().hex)
    return 1


def test_the_sql_views_traces_and_sessions(seeded: Store) -> None:
    rows = seeded.query_dicts(
        "SELECT root_name, session_id, total_tokens, scores, kind FROM traces "
        "WHERE root_name IN ('oi-agent', 'eval') ORDER BY root_name"
    )
    assert [(r["root_name"], r["total_tokens"], r["kind"]) for r in rows] == [
        ("eval", 0, "experiment"),
        ("oi-agent", 120, "production"),
    ]
    assert rows[0]["scores"] == {"accuracy": 0.25}
    [big] = seeded.query_dicts("SELECT * FROM sessions WHERE session_id = 's-big'")
    assert big["traces"] == BIG_SESSION_TRACES and big["user_id"] == "u-big"


def test_usage_buckets_carry_the_mean_of_each_score(seeded: Store, api: str) -> None:
    _, experiment = get(api, "/api/usage", interval="1h", kind="experiment")
    assert [b["scores"] for b in experiment["buckets"] if b["scores"]] == [{"accuracy": 0.25}]
    # Two people rate two production traces; a later rating of one replaces the earlier.
    now = int(datetime.now(UTC).timestamp() * 1000)
    rated = {
        by_root(api, "oi-agent")["trace_id"]: 1.0,
        by_root(api, "ai.generateText")["trace_id"]: 0.0,
    }
    records = [
        ScoreRecord(name="helpful", source="human", trace_id=t, value=0.5, created_at=now - 1000)
        for t in rated
    ] + [
        ScoreRecord(name="helpful", source="human", trace_id=t, value=v, created_at=now)
        for t, v in rated.items()
    ]
    seeded.insert_rows("scores", [r.values() for r in records], list(SCORE_COLUMNS))
    for params in ({}, {"filter": "-tag:none"}):
        _, body = get(api, "/api/usage", interval="1d", **params)
        [bucket] = [b for b in body["buckets"] if b["scores"]]
        assert bucket["scores"] == {"helpful": 0.5}
        _, by_model = get(api, "/api/usage", interval="1d", group_by="model", **params)
        means = {b["group"]: b["scores"] for b in by_model["buckets"] if b["scores"]}
        assert means["gpt-4o"] == {"helpful": 1.0}  # the oi-agent trace's model
    _, none = get(api, "/api/usage", interval="1d", filter="status:error")
    assert all(b["scores"] == {} for b in none["buckets"])


def test_a_page_reads_every_version_of_its_traces_however_small_the_batch() -> None:
    """``collect`` asks for the page and a few rows more (a rare search term costs a granule
    per row asked for); a trace whose unmerged versions outnumber the batch is read again in
    a larger one, so the page shows its latest version and every trace once."""
    from evalhouse.explorer._query import collect

    table = sorted(
        [{"t": 9, "id": "a", "version": v, "is_deleted": 0} for v in range(1, 15)]
        + [{"t": 8, "id": "b", "version": 1, "is_deleted": 0}]
        + [{"t": 7, "id": "c", "version": v, "is_deleted": 0} for v in (3, 1, 2)]
        + [{"t": 6, "id": "d", "version": 1, "is_deleted": 0}],
        key=lambda row: (-row["t"], row["id"]),
    )
    asked: list[int] = []

    def fetch(after: list[Any] | None, n: int) -> list[dict[str, Any]]:
        asked.append(n)
        rows = [r for r in table if after is None or (r["t"], r["id"]) < tuple(after)]
        return rows[:n]

    page, after = collect(fetch, ["t", "id"], ["t", "id"], None, 1)
    assert [(r["id"], r["version"]) for r in page] == [("a", 14)] and after == [9, "a"]
    assert asked[0] == 6 and max(asked) >= 15, asked
    page, after = collect(fetch, ["t", "id"], ["t", "id"], after, 2)
    assert [(r["id"], r["version"]) for r in page] == [("b", 1), ("c", 3)]
    page, after = collect(fetch, ["t", "id"], ["t", "id"], after, 2)
    assert [r["id"] for r in page] == ["d"] and after is None
