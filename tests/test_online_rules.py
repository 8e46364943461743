"""Online rules end to end: production traces from the real OpenTelemetry SDK (the official
OpenAI instrumentation, the real ``openai`` client against a local OpenAI-compatible server)
go through a real collector into the store; the evaluator daemon scores them by the rules
saved through the HTTP API, its LLM judge calling another local server with the ``openai``
client.

One store for the module; each test uses its own tag, so rules see only their traces. Scorers
of this module (``test_online_rules:slow``) are resolved like users' ``module:function``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest
from conftest import wait_for
from fake_openai import FakeOpenAI, fake_openai
from online_helpers import Online, call, online, stored_spans
from opentelemetry import trace

import evalhouse
from evalhouse.evaluators import Evaluator
from evalhouse.store import Store

_LOCK = threading.Lock()
FINISHED: Counter[str] = Counter()  # scorer runs of `slow` that returned, by input


async def slow(input: Any, output: Any) -> float:
    await asyncio.sleep(0.3)
    with _LOCK:
        FINISHED[json.dumps(input)] += 1
    return 1.0


# A judge reasons in about 150 tokens before its choice (what the estimate assumes).
REASONING = (
    "The request asks for the capital of a country and the answer names it directly, with a "
    "short sentence of context that is accurate. Nothing in the answer is off-topic, and it "
    "is complete enough to act on without a follow-up question. The tone is neutral and the "
    "wording is clear; there are no factual errors I can see, and the length suits the "
    "question. A person asking this would be well served by the reply as it stands, so the "
    "first statement fits best among the four offered here."
)


# A heuristic scorer that needs no expected value: does the answer name a city?
NAMES_PARIS = {"name": "regex", "options": {"name": "names_paris", "pattern": "Paris"}}


def judge_reply(body: dict[str, Any]) -> str:
    return f"{REASONING}\nChoice: A"


def question(i: int, size: int = 800) -> str:
    base = f"Question {i}: what is the capital of country number {i}? Please explain. "
    return (base * (size // len(base) + 1))[:size]


@dataclass
class Env:
    online: Online
    app: FakeOpenAI
    judge: FakeOpenAI

    @property
    def store(self) -> Store:
        return self.online.store

    def api(self, method: str, path: str, body: Any = None, **params: Any) -> tuple[int, Any]:
        return call(self.online.api, method, path, body, **params)


@pytest.fixture(scope="module")
def env(
    chdb_dsn: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    with (
        fake_openai(reply=lambda body: "Paris is the capital of France.", count_tokens=True) as app,
        fake_openai(reply=judge_reply, count_tokens=True) as judge,
        pytest.MonkeyPatch.context() as patch,
    ):
        for name in (
            "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
            "OTEL_SEMCONV_STABILITY_OPT_IN",
        ):
            patch.delenv(name, raising=False)
        patch.setenv("OPENAI_BASE_URL", judge.base_url)
        patch.setenv("OPENAI_API_KEY", "test")
        patch.setenv("EVALHOUSE_API_URL", "http://127.0.0.1:9")
        with online(
            chdb_dsn,
            template_database,
            tmp_path_factory.mktemp("rules"),
            explorer_quiet_seconds=0,
            evaluator_poll_seconds=0.2,
            rules_delay_seconds=0.5,
        ) as served:
            tracing = evalhouse.init(endpoint=served.grpc, service_name="support-bot")
            assert tracing.error is None and "openai" in tracing.instrumented
            yield Env(served, app, judge)


def emit(env: Env, n: int, *, tag: str, session: str | None = None, size: int = 800) -> list[str]:
    """``n`` production traces: a request span around one chat call; their trace ids."""
    tracer = trace.get_tracer("tests.rules")
    ids = []
    before = env.store.query("SELECT count() FROM otel_traces")[0][0]
    attributes = {"evalhouse.tags": tag, **({"session.id": session} if session else {})}
    with openai.OpenAI(base_url=env.app.base_url, api_key="test") as client:
        for i in range(n):
            with tracer.start_as_current_span("handle", attributes=attributes) as root:
                client.chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": question(i, size)}]
                )
                ids.append(format(root.get_span_context().trace_id, "032x"))
    assert evalhouse.init(endpoint=env.online.grpc).force_flush()
    stored_spans(env.store, before + 2 * n)
    return ids


@dataclass
class Daemon:
    evaluators: list[Evaluator]

    def stop(self) -> None:
        for evaluator in self.evaluators:
            evaluator.stop()


def daemon(env: Env, workers: int = 1, **overrides: Any) -> Daemon:
    settings = env.online.settings.model_copy(
        update={"evaluator_workers": workers, "evaluator_poll_seconds": 0.2, **overrides}
    )
    evaluator = Evaluator(settings, env.store, worker_id=overrides.get("evaluator_worker_id"))
    evaluator.start()
    return Daemon([evaluator])


def scoring(env: Env, until: Callable[[], Any], timeout: float = 60, **overrides: Any) -> None:
    """Run the daemon until ``until()`` holds; on a timeout, say what the daemon was at."""
    running = daemon(env, **overrides)
    try:
        wait_for(until, timeout=timeout, interval=0.1)
    except BaseException:
        print(where_the_daemon_is(env))
        raise
    finally:
        running.stop()


def where_the_daemon_is(env: Env) -> str:
    """Leases, summary checkpoints, traces without a summary and each rule's status."""
    query = env.store.query
    lines = [
        "claims (newest 12): "
        + repr(
            query("SELECT epoch, shard, owner FROM evaluator_claims ORDER BY epoch DESC LIMIT 12")
        ),
        "summary checkpoints: "
        + repr(query("SELECT shard, watermark, worker FROM trace_summary_checkpoints FINAL")),
        "newest span stored: " + repr(query("SELECT max(InsertedAt), now64(3) FROM otel_traces")),
        "traces without a summary: "
        + repr(
            query(
                "SELECT count(), min(at), max(at) FROM (SELECT TraceId, max(InsertedAt) AS at "
                "FROM otel_traces GROUP BY TraceId) WHERE TraceId NOT IN "
                "(SELECT trace_id FROM trace_summaries)"
            )
        ),
    ]
    code, body = env.api("GET", "/api/rules")
    for listed in body.get("rules", []) if code == 200 else []:
        _, one = env.api("GET", f"/api/rules/{listed['name']}")
        lines.append(f"rule {listed['name']}: {one.get('status')} backfills {one.get('backfills')}")
    return "\n".join(lines)


def rule(env: Env, **fields: Any) -> dict[str, Any]:
    status, body = env.api("POST", "/api/rules", {"delay_s": 0.5, **fields})
    assert status == 201, body
    return dict(body)


def status(env: Env, name: str) -> dict[str, Any]:
    code, body = env.api("GET", f"/api/rules/{name}")
    assert code == 200, body
    return dict(body["status"])


def backfilled(env: Env, name: str) -> bool:
    """Whether every backfill of the rule has gone through all its shards."""
    code, body = env.api("GET", f"/api/rules/{name}")
    assert code == 200, body
    return all(b["done"] for b in body["backfills"])


def rule_scores(env: Env, name: str) -> list[dict[str, Any]]:
    return env.store.query_dicts(
        "SELECT trace_id, target_span_id, session_id, scorer, name, value, error, rule_version, "
        "judge_input_tokens, judge_output_tokens, judge_cost_usd FROM scores "
        "WHERE source = 'rule' AND rule = {r:String} ORDER BY trace_id",
        {"r": name},
    )


def test_rules_are_saved_checked_and_versioned(env: Env) -> None:
    created = rule(env, name="crud", filter="tag:crud", scorers=["exact_match"], sample=0.5)
    assert (created["version"], created["scope"], created["enabled"]) == (1, "trace", True)
    code, body = env.api("POST", "/api/rules", {"name": "crud", "scorers": ["exact_match"]})
    assert code == 409 and "PUT /api/rules/crud" in body["error"]
    for bad, message in [
        ({"filter": "colour:red"}, "unknown key 'colour'"),
        ({"where": "no_such_column > 1"}, "invalid where for a trace rule"),
        ({"scorers": ["no_such_scorer"]}, "scorer no_such_scorer cannot be used"),
        ({"sample": 1.5}, "rule field sample"),
        ({"mapping": {"output": "span"}}, "only a span rule has a target span"),
        ({"smaple": 0.5}, "rule field smaple"),
    ]:
        code, body = env.api("POST", "/api/rules", {"name": "bad", "scorers": ["contains"], **bad})
        assert code == 400 and message in body["error"], (bad, body)
    code, body = env.api("PUT", "/api/rules/crud", {"sample": 0.25})
    assert code == 200 and (body["version"], body["sample"], body["filter"]) == (
        2,
        0.25,
        "tag:crud",
    )
    code, body = env.api("DELETE", "/api/rules/crud")
    assert code == 200 and (body["version"], body["enabled"]) == (2, False)
    code, body = env.api("GET", "/api/rules/crud")
    assert [v["version"] for v in body["versions"]] == [1, 2] and body["enabled"] is False
    code, body = env.api("GET", "/api/rules/nope")
    assert code == 404 and "evalhouse rules list" in body["error"]


def test_a_rule_scores_each_sampled_quiet_trace_once_with_the_judge(env: Env) -> None:
    judge = {"name": "llm_judge:helpfulness", "options": {"model": "gpt-4o-mini"}}
    rule(env, name="helpful", filter="tag:live", scorers=[judge, NAMES_PARIS], sample=1.0)
    ids = emit(env, 6, tag="live")
    emit(env, 2, tag="other")  # matched by no rule
    scoring(env, lambda: status(env, "helpful")["scored"] >= 6)
    scores = rule_scores(env, "helpful")
    judged = [s for s in scores if s["name"] == "helpfulness"]
    assert sorted(s["trace_id"] for s in judged) == sorted(ids)
    assert {(s["value"], s["rule_version"], s["target_span_id"]) for s in judged} == {(1.0, 1, "")}
    # The judge's usage is on its score (the fake counts 4 characters a token).
    assert all(s["judge_input_tokens"] > 200 and s["judge_cost_usd"] > 0 for s in judged)
    # What the judge was given: the chat's messages and its answer, in every dialect.
    prompt = env.judge.requests[-1]["messages"][-1]["content"]
    assert "Question" in prompt and "Paris is the capital" in prompt
    current = status(env, "helpful")
    assert (current["matched"], current["sampled"], current["scored"]) == (6, 6, 6)
    assert current["pending"] == 0 and current["spend_today_usd"] > 0
    assert current["lag_seconds"]["p95"] is not None and current["lag_seconds"]["p95"] < 10
    # The scores show on the traces (the explorer's rows read every source).
    _, body = env.api("GET", "/api/scores", trace_id=ids[0])
    assert {s["name"]: s["source"] for s in body["scores"]}["helpfulness"] == "rule"
    # Running the daemon again scores nothing twice.
    before = len(env.judge.requests)
    scoring(env, lambda: True)
    time.sleep(1.0)
    assert len(env.judge.requests) == before
    assert len(rule_scores(env, "helpful")) == len(scores) == 12


def test_sampling_is_deterministic_and_its_fraction_is_binomial(env: Env) -> None:
    tracer = trace.get_tracer("tests.rules")
    before = env.store.query("SELECT count() FROM otel_traces")[0][0]
    for _ in range(10_000):
        with tracer.start_as_current_span("ping", attributes={"evalhouse.tags": "many"}):
            pass
    assert evalhouse.init(endpoint=env.online.grpc).force_flush()
    stored_spans(env.store, before + 10_000)
    summarized = "SELECT count() FROM trace_summaries WHERE has(tags, 'many')"
    scoring(env, lambda: env.store.query(summarized)[0][0] >= 10_000)
    rule(env, name="sampled", filter="tag:many", scorers=["contains"], sample=0.2)
    code, estimate = env.api("POST", "/api/rules/sampled/estimate", since="1h")
    assert code == 200, estimate
    assert estimate["targets"] == 10_000
    # Binomial(10,000, 0.2): mean 2,000, sd 40; 4.5 sd either side fails once in ~150,000.
    assert abs(estimate["sampled"] - 2_000) < 4.5 * math.sqrt(10_000 * 0.2 * 0.8)
    code, body = env.api("POST", "/api/rules/sampled/backfill", since="1h")
    assert code == 202, body
    scoring(env, lambda: status(env, "sampled")["matched"] >= 10_000, timeout=90)
    first = {
        row[0]
        for row in env.store.query(
            "SELECT trace_id FROM rule_targets FINAL WHERE rule = 'sampled' "
            "AND state != 'sampled_out'"
        )
    }
    assert len(first) == estimate["sampled"]
    # A new version of the rule (same name) picks the same targets again.
    code, _ = env.api("PUT", "/api/rules/sampled", {"scorers": ["exact_match"]})
    code, again = env.api("POST", "/api/rules/sampled/estimate", since="1h")
    assert again["sampled"] == estimate["sampled"]
    code, body = env.api("POST", "/api/rules/sampled/backfill", since="1h")
    scoring(env, lambda: status(env, "sampled")["matched"] >= 10_000, timeout=90)
    second = {
        row[0]
        for row in env.store.query(
            "SELECT trace_id FROM rule_targets FINAL WHERE rule = 'sampled' AND rule_version = 2 "
            "AND state != 'sampled_out'"
        )
    }
    assert second == first


def test_a_long_trace_is_scored_only_after_its_root_ends_and_it_goes_quiet(env: Env) -> None:
    rule(env, name="patient", filter="tag:agent", scorers=["contains"], delay_s=1.0)
    tracer = trace.get_tracer("tests.rules")
    flush = evalhouse.init(endpoint=env.online.grpc).force_flush
    running = daemon(env)
    try:
        root = tracer.start_span("agent run", attributes={"evalhouse.tags": "agent"})
        context = trace.set_span_in_context(root)
        trace_id = format(root.get_span_context().trace_id, "032x")
        # The agent's steps keep arriving for ~4 s, once with a gap longer than the delay: a
        # fixed delay after the first span would fire here; the open root holds it back.
        for step in range(8):
            with tracer.start_as_current_span(f"step {step}", context=context):
                pass
            assert flush()
            time.sleep(1.6 if step == 3 else 0.3)
            assert status(env, "patient")["scored"] == 0
        root.set_attribute("output.value", "all done")
        root.end()
        ended = time.time()
        assert flush()
        wait_for(lambda: status(env, "patient")["scored"] == 1, timeout=30)
        scored_at = env.store.query(
            "SELECT toUnixTimestamp64Milli(scored_at) / 1000 FROM rule_targets FINAL "
            "WHERE rule = 'patient' AND trace_id = {t:String}",
            {"t": trace_id},
        )[0][0]
        assert scored_at >= ended + 1.0  # quiet for the delay after the root's arrival
        # A span arriving after scoring is counted as late, not scored again.
        with tracer.start_as_current_span("straggler", context=context):
            pass
        assert flush()
        wait_for(lambda: status(env, "patient")["late_spans"] == 1, timeout=30)
    finally:
        running.stop()
    current = status(env, "patient")
    assert (current["scored"], current["late_targets"]) == (1, 1)
    assert len(rule_scores(env, "patient")) == 1


def test_the_budget_stops_scoring_at_the_cap_and_the_estimate_predicts_the_spend(
    env: Env,
) -> None:
    ids = emit(env, 20, tag="costly", size=1200)
    summarized = "SELECT count() FROM trace_summaries WHERE has(tags, 'costly')"
    scoring(env, lambda: env.store.query(summarized)[0][0] >= 20)
    judge = "llm_judge:helpfulness"
    rule(env, name="costly", filter="tag:costly", scorers=[judge])
    calls = len(env.judge.requests)
    code, estimate = env.api("POST", "/api/rules/costly/estimate", since="1h")
    assert code == 200 and (estimate["targets"], estimate["sampled"]) == (20, 20)
    assert estimate["judge_calls"] == 20 and len(env.judge.requests) == calls  # nothing spent
    per_target = estimate["estimated_cost_usd"] / 20
    # A budget for about a third of them: scoring stops at the cap, the rest are skipped.
    budget = per_target * 7.5
    code, _ = env.api("PUT", "/api/rules/costly", {"budget_usd_per_day": budget})
    code, body = env.api("POST", "/api/rules/costly/backfill", since="1h")
    assert code == 202, body
    scoring(env, lambda: (s := status(env, "costly"))["pending"] == 0 and s["matched"] == 20)
    current = status(env, "costly")
    assert current["spend_today_usd"] <= budget
    assert 5 <= current["scored"] <= 8, current
    assert current["skipped"]["budget"] == 20 - current["scored"]
    scored = [s["trace_id"] for s in rule_scores(env, "costly")]
    assert set(scored) <= set(ids) and len(scored) == current["scored"]
    # The estimate of those very targets, made before spending, against what they cost.
    where = "trace_id IN (" + ", ".join(f"'{t}'" for t in scored) + ")"
    rule(env, name="costly-check", filter="tag:costly", where=where, scorers=[judge])
    code, again = env.api("POST", "/api/rules/costly-check/estimate", since="1h")
    assert again["sampled"] == len(scored)
    assert again["estimated_cost_usd"] == pytest.approx(current["spend_today_usd"], rel=0.2)
    spent_in = sum(s["judge_input_tokens"] for s in rule_scores(env, "costly"))
    assert again["estimated_input_tokens"] == pytest.approx(spent_in, rel=0.2)


def test_scorers_run_exactly_once_across_a_restart_and_several_workers(env: Env) -> None:
    FINISHED.clear()
    rule(env, name="once", filter="tag:once", scorers=["test_online_rules:slow"], delay_s=0.2)
    emit(env, 12, tag="once", size=60)
    for name in ("helpful", "sampled", "patient", "costly", "costly-check"):
        env.api("DELETE", f"/api/rules/{name}")  # this test's workers score this rule only
    first = daemon(env, evaluator_scorer_concurrency=2)
    try:
        wait_for(lambda: len(rule_scores(env, "once")) >= 3, timeout=30)
    finally:
        first.stop()  # scorers still running are cancelled: their targets stay pending
    assert status(env, "once")["scored"] < 12
    # Three workers take over; leases split the shards between them.
    workers = [
        daemon(
            env,
            evaluator_worker_id=f"w{i}",
            evaluator_lease_seconds=2,
            evaluator_scorer_timeout=1,
            evaluator_scorer_concurrency=2,
        )
        for i in range(3)
    ]
    try:
        emit(env, 12, tag="once", size=70)
        wait_for(lambda: status(env, "once")["scored"] >= 24, timeout=60)
    finally:
        for worker in workers:
            worker.stop()
    rows = rule_scores(env, "once")
    keys = [(row["trace_id"], row["scorer"]) for row in rows]
    assert len(keys) == len(set(keys)) == 24  # stored once, without FINAL
    assert len(FINISHED) == 24 and set(FINISHED.values()) == {1}  # each run finished once
    owners = env.store.query(
        "SELECT uniqExact(worker) FROM rule_checkpoints WHERE rule = 'once' AND worker LIKE 'w%'"
    )[0][0]
    assert owners >= 2


def test_span_and_session_rules_and_what_their_scorers_see(env: Env) -> None:
    rule(env, name="chats", scope="span", filter="tag:scopes", scorers=[NAMES_PARIS])
    rule(env, name="conversations", scope="session", filter="tag:scopes", scorers=[NAMES_PARIS])
    rule(
        env,
        name="mapped",
        filter="tag:scopes",
        scorers=[NAMES_PARIS],
        mapping={"output": "attr:answer.text"},
    )
    emit(env, 2, tag="scopes", session="s-scopes", size=100)
    scoring(
        env,
        lambda: (
            status(env, "chats")["scored"] == 2
            and status(env, "conversations")["scored"] == 1
            and status(env, "mapped")["skipped"]["mapping_failed"] == 2
        ),
    )
    spans = rule_scores(env, "chats")
    assert {(s["name"], s["value"], s["error"]) for s in spans} == {("names_paris", 1.0, "")}
    chat_spans = {
        row[0]
        for row in env.store.query(
            "SELECT SpanId FROM otel_traces WHERE LlmOperation = 'chat' AND TraceId IN "
            "(SELECT trace_id FROM trace_summaries WHERE has(tags, 'scopes'))"
        )
    }
    assert {s["target_span_id"] for s in spans} == chat_spans
    [session] = rule_scores(env, "conversations")
    assert (session["session_id"], session["trace_id"], session["target_span_id"]) == (
        "s-scopes",
        "",
        "",
    )
    assert rule_scores(env, "mapped") == []
    # The session's score is listed with the session.
    _, body = env.api("GET", "/api/scores", session_id="s-scopes")
    assert [s["rule"] for s in body["scores"]] == ["conversations"]


def test_a_rule_exports_as_a_trainloop_suite(env: Env) -> None:
    code, body = env.api("GET", "/api/rules/helpful/export", format="trainloop", since="1h")
    assert code == 200, body
    assert list(body) == [
        "timestamp",
        "duration",
        "total_events",
        "suites",
        "summary",
        "configuration",
    ]
    suite = body["suites"]["helpful"]
    assert set(suite) == {"events_processed", "metrics", "overall_score", "tags", "duration"}
    assert suite["tags"] == ["tag:live"] and suite["events_processed"] == 6
    metric = suite["metrics"]["helpfulness"]
    assert (metric["passed"], metric["total"], metric["score"]) == (6, 6, 1.0)
    assert suite["metrics"]["names_paris"]["passed"] == 6
    detail = metric["details"][0]
    assert set(detail) == {"event_id", "passed", "input", "output", "verdict", "metadata"}
    assert len(detail["event_id"]) == 32 and "Paris" in json.dumps(detail["output"])
    assert detail["verdict"].startswith("The request asks")
    assert body["summary"]["pass_rate"] == 1.0


def test_rules_of_the_configuration_are_saved_as_versions(
    env: Env, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from evalhouse.config import load_settings
    from evalhouse.evaluators import read_rules, sync_rules

    config = tmp_path / "evalhouse.toml"
    config.write_text(
        '[[rules]]\nname = "from-toml"\nfilter = "tag:toml"\nsample = 0.5\n'
        'scorers = ["contains", {name = "levenshtein"}]\ndelay_s = 3\n'
    )
    monkeypatch.setenv("EVALHOUSE_CONFIG", str(config))
    settings = load_settings()
    assert sync_rules(env.store, settings) == ["rule from-toml: version 1 from the configuration"]
    assert sync_rules(env.store, settings) == []  # unchanged: no new version
    config.write_text(config.read_text().replace("0.5", "0.7"))
    assert sync_rules(env.store, load_settings()) == [
        "rule from-toml: version 2 from the configuration"
    ]
    [saved] = read_rules(env.store, "from-toml")
    assert (saved.sample, saved.delay_s, saved.origin) == (0.7, 3.0, "config")
    config.write_text("")
    assert sync_rules(env.store, load_settings()) == [
        "rule from-toml: disabled (no longer in the configuration)"
    ]


def test_a_dataset_built_from_traces_runs_as_an_experiment(env: Env) -> None:
    ids = emit(env, 4, tag="curate", size=80)
    summarized = "SELECT count() FROM trace_summaries WHERE has(tags, 'curate')"
    scoring(env, lambda: env.store.query(summarized)[0][0] >= 4)
    code, body = env.api(
        "POST", "/api/datasets/from-prod/from-traces", {"filter": "tag:curate", "since": "1h"}
    )
    assert code == 201, body
    assert (body["version"], body["rows"], body["source"], body["skipped"]) == (1, 4, "traces", [])
    code, page = env.api("GET", "/api/datasets/from-prod")
    rows = {row["id"]: row for row in page["rows"]}
    assert set(rows) == set(ids)
    row = rows[ids[0]]
    assert row["metadata"]["source_trace_id"] == ids[0] and row["metadata"]["tags"] == ["curate"]
    assert row["input"][-1]["role"] == "user" and row["input"][-1]["content"].startswith("Question")
    assert row["expected"] == "Paris is the capital of France."
    # Named traces, with a mapping: a trace added again replaces its row.
    code, body = env.api(
        "POST",
        "/api/datasets/from-prod/from-traces",
        {"trace_ids": [ids[0].upper()], "mapping": {"metadata": "none"}},
    )
    assert code == 201 and (body["version"], body["rows"], body["changed"]) == (2, 4, 1)
    code, body = env.api("POST", "/api/datasets/x/from-traces", {"filter": "tag:nothing"})
    assert code == 400 and "matched none" in body["error"]
    # The dataset runs as an experiment, with the SDK, like any other.
    result = evalhouse.run_experiment(
        "from-prod-rerun",
        data=evalhouse.dataset("from-prod", api_url=env.online.api),
        task=lambda input: "Paris is the capital of France.",
        scorers=[lambda output, expected: output == expected],
        api_url=env.online.api,
        summary_timeout=0,
    )
    assert len(result.rows) == 4
    assert {score.value for r in result.rows for score in r.scores} == {1.0}
    assert {json.dumps(r.input) for r in result.rows} == {
        json.dumps(r["input"]) for r in rows.values()
    }


def cli(capsys: pytest.CaptureFixture[str], data_dir: Any, *args: str) -> str:
    """An ``evalhouse`` command in this process, through the API of the server that owns
    ``data_dir`` (what a command does while ``evalhouse serve`` runs)."""
    from evalhouse.surfaces.cli import main

    code = main([*args, "--data-dir", str(data_dir)])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def test_the_rules_and_datasets_commands(
    env: Env, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import os

    from conftest import run_cli

    served = tmp_path / "served"
    served.mkdir()
    (served / "server.json").write_text(json.dumps({"pid": os.getpid(), "api": env.online.api}))
    emit(env, 3, tag="cli", size=120)
    summarized = "SELECT count() FROM trace_summaries WHERE has(tags, 'cli')"
    scoring(env, lambda: env.store.query(summarized)[0][0] >= 3)
    out = cli(
        capsys,
        served,
        "rules",
        "add",
        "cli-rule",
        "--scope",
        "trace",
        "--filter",
        "tag:cli",
        "--sample",
        "1",
        "--scorer",
        'regex{"pattern":"Paris"}',
        "--budget-usd",
        "5",
        "--delay",
        "0.5",
    )
    assert out == "rule cli-rule version 1 saved (enabled)\n"
    out = cli(capsys, served, "rules", "estimate", "cli-rule", "--since", "1h")
    assert "3 targets, 3 sampled, 0 judge calls" in out
    out = cli(capsys, served, "rules", "backfill", "cli-rule", "--since", "1h")
    assert "queued" in out
    scoring(env, lambda: backfilled(env, "cli-rule") and status(env, "cli-rule")["scored"] == 3)
    out = cli(capsys, served, "rules", "show", "cli-rule")
    assert "matched 3: sampled 3, sampled out 0; scored 3" in out and "done" in out
    listed = json.loads(cli(capsys, served, "rules", "list", "--json"))
    assert "cli-rule" in {r["name"] for r in listed["rules"]}
    cli(capsys, served, "rules", "export", "cli-rule", "--since", "1h", "--out", str(tmp_path))
    [written] = tmp_path.glob("evaluation_results_*.json")
    suite = json.loads(written.read_text())["suites"]["cli-rule"]
    assert suite["metrics"]["regex"]["total"] == 3
    out = cli(capsys, served, "rules", "disable", "cli-rule")
    assert out == "rule cli-rule version 1 disabled: (disabled)\n"
    out = cli(
        capsys, served, "datasets", "from-traces", "cli-set", "--filter", "tag:cli", "--since", "1h"
    )
    assert out == "dataset cli-set version 1: 3 traces added, 3 rows in all\n"
    # Without a server the commands open the store themselves; failures are one line.
    own = tmp_path / "own"
    assert run_cli("migrate", "--data-dir", str(own)).returncode == 0
    added = run_cli("rules", "add", "own", "--scorer", "exact_match", "--data-dir", str(own))
    assert added.stdout == "rule own version 1 saved (enabled)\n"
    bad = run_cli(
        "rules", "add", "own", "--scorer", "exact_match", "--data-dir", str(own), check=False
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("evalhouse rules: a rule named 'own' exists")


def test_while_the_collector_is_behind_neither_summaries_nor_rules_read_the_store(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evalhouse serve`` tells the daemon when its collector has spans to write: summaries
    wait (for at most 30 s), and the rules, whose targets are those rows, do not look for
    targets either (their queries would hold the store the collector writes to)."""
    from evalhouse.evaluators import _online

    looked: list[str] = []
    real = _online.find_targets

    def counted(store: Store, rule: Any, **kwargs: Any) -> Any:
        looked.append(rule.name)
        return real(store, rule, **kwargs)

    monkeypatch.setattr(_online, "find_targets", counted)
    rule(env, name="ingest-first", filter="tag:ingest-first", scorers=[NAMES_PARIS], sample=1.0)
    ids = emit(env, 3, tag="ingest-first")
    behind = threading.Event()
    behind.set()
    settings = env.online.settings.model_copy(update={"evaluator_poll_seconds": 0.1})
    evaluator = Evaluator(settings, env.store, busy=behind.is_set)
    evaluator.start()
    try:
        time.sleep(2.0)  # about 15 cycles
        assert looked == []
        summarized = env.store.query(
            "SELECT count() FROM trace_summaries WHERE trace_id IN {ids:Array(String)}",
            {"ids": ids},
        )
        assert summarized == [(0,)]
        behind.clear()
        wait_for(lambda: status(env, "ingest-first")["scored"] >= 3, timeout=60, interval=0.1)
        assert "ingest-first" in looked
    except BaseException:
        print(where_the_daemon_is(env))
        raise
    finally:
        evaluator.stop()


def test_while_the_collector_is_behind_decided_targets_wait_to_be_scored(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Targets already decided wait too: no judge call starts while the collector is behind
    (one judge call costs the server ten times the CPU of storing a trace), and they are all
    scored once it has caught up."""
    judge = {"name": "llm_judge:helpfulness", "options": {"model": "gpt-4o-mini"}}
    rule(env, name="judge-waits", filter="tag:judge-waits", scorers=[judge], sample=1.0)
    emit(env, 12, tag="judge-waits")
    monkeypatch.setattr(env.judge, "delay_seconds", 0.3)
    mark = len(env.judge.requests)
    behind = threading.Event()
    settings = env.online.settings.model_copy(
        update={"evaluator_poll_seconds": 0.1, "evaluator_scorer_concurrency": 1}
    )
    evaluator = Evaluator(settings, env.store, busy=behind.is_set)
    evaluator.start()
    try:
        wait_for(lambda: len(env.judge.requests) - mark >= 2, timeout=60, interval=0.05)
        behind.set()
        time.sleep(1.0)  # a cycle sees it; the call under way ends
        held = len(env.judge.requests)
        time.sleep(1.5)
        assert len(env.judge.requests) == held < mark + 12
        behind.clear()
        wait_for(lambda: status(env, "judge-waits")["scored"] >= 12, timeout=60, interval=0.1)
        assert len(env.judge.requests) - mark == 12
    except BaseException:
        print(where_the_daemon_is(env))
        raise
    finally:
        evaluator.stop()
