"""The LLM judge against a local OpenAI-compatible server, through the real openai client."""

from __future__ import annotations

import asyncio
import gc
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from fake_openai import FakeOpenAI, Usage, fake_openai
from openai.types.chat import ChatCompletion

from evalhouse.evaluators._scorer_refs import ScorerRef
from evalhouse.evaluators._scoring import Outcome, ScorerPool, ScoringItem
from evalhouse.evaluators.scorers import (
    DEFAULT_JUDGE_MODEL,
    InvalidScorerOptions,
    JudgeError,
    LlmJudge,
    MissingExpected,
    resolve_scorer,
)
from evalhouse.evaluators.scorers._judge import parse_choice
from evalhouse.evaluators.scorers._rubrics import load_rubric, rubric_names
from evalhouse.scoring import Score, ScorerError, run_scorer


@pytest.fixture(autouse=True)
def _no_judge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "EVALHOUSE_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def _shared_server() -> Iterator[FakeOpenAI]:
    # One server for the module: stopping one takes ~0.5 s (its serve_forever poll interval).
    with fake_openai() as server:
        yield server


@pytest.fixture
def server(_shared_server: FakeOpenAI) -> FakeOpenAI:
    """The shared fake endpoint, reset: replies "Choice: A" with the default usage."""
    fresh = FakeOpenAI()
    for attribute in ("reply", "usage", "delay_seconds", "fail_with_status"):
        setattr(_shared_server, attribute, getattr(fresh, attribute))
    _shared_server.requests.clear()
    _shared_server.reply = lambda body: "Choice: A"
    return _shared_server


def judge_for(server: FakeOpenAI, spec: str = "llm_judge:correctness", **options: Any) -> Any:
    options = {"base_url": server.base_url, "api_key": "test-key", "max_retries": 0, **options}
    return resolve_scorer(spec, options)


def run(judge: Any, output: Any, expected: Any = None, input: Any = "q") -> Score:
    async def scored() -> list[Score]:
        try:
            return await run_scorer(judge, input=input, output=output, expected=expected)
        finally:
            await judge.aclose()

    scores = asyncio.run(scored())
    assert len(scores) == 1
    return scores[0]


def prompt_of(request: dict[str, Any]) -> str:
    content: str = request["messages"][-1]["content"]
    return content


def test_correctness_sends_the_rubric_with_input_output_and_expected(server: FakeOpenAI) -> None:
    reply = "The submission names the same city as the reference.\nChoice: A"
    usage = Usage(prompt_tokens=180, completion_tokens=25, cached_tokens=64, reasoning_tokens=9)
    server.reply = lambda body: reply
    server.usage = usage
    result = run(
        judge_for(server, model="judge-small"),
        input={"question": "Capital of France?"},
        output="Paris, the City of Light",
        expected="Paris",
    )
    assert result.name == "correctness"
    assert result.value == 1.0
    assert result.explanation == "The submission names the same city as the reference."
    assert result.metadata == {
        "choice": "A",
        "rubric": "correctness",
        "model": "judge-small-2024-07-18",
        "usage": {
            "input_tokens": 180,
            "output_tokens": 25,
            "total_tokens": 205,
            "cache_read_tokens": 64,
            "reasoning_tokens": 9,
        },
    }
    (request,) = server.requests
    assert request["model"] == "judge-small"
    assert request["temperature"] == 0.0
    prompt = prompt_of(request)
    assert '<question>\n{"question": "Capital of France?"}\n</question>' in prompt
    assert "<reference_answer>\nParis\n</reference_answer>" in prompt
    assert "<submitted_answer>\nParis, the City of Light\n</submitted_answer>" in prompt
    assert "explain your reasoning step by step" in prompt
    assert "exactly one of A, B, C, D, E" in prompt
    assert "{{" not in prompt
    assert "tools" not in request


@pytest.mark.parametrize(
    ("spec", "reply", "value"),
    [
        ("llm_judge:correctness", "Some facts are missing.\nChoice: D", 0.5),
        ("llm_judge:correctness", "It contradicts the reference.\n\n**Choice:** (E)", 0.0),
        ("llm_judge:faithfulness", "One detail is not in the context.\nChoice: B", 0.5),
        ("llm_judge:helpfulness", "Mostly useful.\nAnswer: B) incomplete", 0.67),
        ("llm_judge:helpfulness", "Choice: c", 0.33),
    ],
)
def test_each_rubric_maps_the_choice_to_its_score(
    server: FakeOpenAI, spec: str, reply: str, value: float
) -> None:
    server.reply = lambda body: reply
    result = run(judge_for(server, spec), output="answer", expected="reference")
    assert result.value == value
    assert result.name == spec.split(":")[1]


def test_faithfulness_shows_the_input_as_context_and_needs_no_expected(server: FakeOpenAI) -> None:
    context = "Context: the Eiffel Tower is 330 m tall.\nQuestion: how tall is it?"
    server.reply = lambda body: "Supported by the context.\nChoice: A"
    result = run(judge_for(server, "llm_judge:faithfulness"), "330 m", None, input=context)
    assert result.value == 1.0
    prompt = prompt_of(server.requests[0])
    assert f"<input>\n{context}\n</input>" in prompt
    assert "<answer>\n330 m\n</answer>" in prompt


def test_without_chain_of_thought_the_judge_asks_for_the_choice_only(server: FakeOpenAI) -> None:
    server.reply = lambda body: "B"
    result = run(judge_for(server, use_cot=False), output="Paris, France", expected="Paris")
    assert (result.value, result.explanation) == (0.8, None)
    prompt = prompt_of(server.requests[0])
    assert "step by step" not in prompt
    assert 'a single line of the form "Choice: X"' in prompt


def test_custom_rubric_from_options(server: FakeOpenAI) -> None:
    options = {
        "prompt": "Is this reply polite?\nReply: {{output}}\nContext: {{metadata}}",
        "choice_scores": {"Yes": 1, "No": 0},
        "name": "politeness",
    }
    server.reply = lambda body: "It thanks the user.\nChoice: yes"
    judge = judge_for(server, "llm_judge", **options)
    result = asyncio.run(_score_with_metadata(judge))
    assert result == Score(
        "politeness",
        1.0,
        "It thanks the user.",
        {
            "choice": "Yes",
            "rubric": "llm_judge",
            "model": f"{DEFAULT_JUDGE_MODEL}-2024-07-18",
            "usage": {
                "input_tokens": 11,
                "output_tokens": 7,
                "total_tokens": 18,
                "cache_read_tokens": 0,
                "reasoning_tokens": 0,
            },
        },
    )
    prompt = prompt_of(server.requests[0])
    assert prompt.startswith('Is this reply polite?\nReply: Thanks!\nContext: {"lang": "en"}')
    assert "exactly one of Yes, No" in prompt


async def _score_with_metadata(judge: Any) -> Score:
    try:
        (result,) = await run_scorer(
            judge, input="hi", output="Thanks!", expected=None, metadata={"lang": "en"}
        )
        return result
    finally:
        await judge.aclose()


def test_a_rubric_file_given_by_path(server: FakeOpenAI, tmp_path: Path) -> None:
    rubric = tmp_path / "tone.toml"
    rubric.write_text(
        'prompt = "Tone of: {{output}} given {{expected}}"\n'
        "requires_expected = true\n"
        "[choice_scores]\nWarm = 1.0\nNeutral = 0.5\nCold = 0.0\n"
    )
    server.reply = lambda body: "Choice: Neutral"
    judge = judge_for(server, "llm_judge", rubric=str(rubric))
    assert judge.name == "tone"
    result = run(judge, "Fine.", expected="Warm")
    with pytest.raises(MissingExpected, match="scorer llm_judge:tone needs an expected"):
        run(judge, "Fine.", expected=None)
    assert result.value == 0.5
    assert prompt_of(server.requests[0]).startswith("Tone of: Fine. given Warm")
    assert len(server.requests) == 1


def test_tool_calling_asks_for_a_constrained_function_call(server: FakeOpenAI) -> None:
    server.reply = lambda body: "Looks right.\nChoice: A"
    # This endpoint ignores tools and answers in text: the text is still understood.
    result = run(judge_for(server, use_tools=True), output="Paris", expected="Paris")
    assert result.value == 1.0
    request = server.requests[0]
    assert request["tool_choice"] == {"type": "function", "function": {"name": "select_choice"}}
    (tool,) = request["tools"]
    parameters = tool["function"]["parameters"]
    assert parameters["required"] == ["reasoning", "choice"]
    assert parameters["properties"]["choice"]["enum"] == ["A", "B", "C", "D", "E"]


def test_correctness_without_expected_fails_before_calling_the_model(server: FakeOpenAI) -> None:
    with pytest.raises(MissingExpected, match=r"llm_judge:correctness .* llm_judge:faith"):
        run(judge_for(server), output="Paris", expected=None)
    assert server.requests == []


def test_an_answer_outside_the_choices_is_a_clear_scorer_error(server: FakeOpenAI) -> None:
    server.reply = lambda body: "I would rather not say.\nChoice: Z"
    with pytest.raises(JudgeError, match=r"none of the choices A, B, C, D, E") as caught:
        run(judge_for(server), output="Paris", expected="Paris")
    assert isinstance(caught.value, ScorerError)
    assert "Choice: Z" in str(caught.value)


def test_an_http_500_from_the_endpoint_is_a_judge_error_with_the_cause(server: FakeOpenAI) -> None:
    server.fail_with_status = 500
    with pytest.raises(JudgeError, match="InternalServerError") as caught:
        run(judge_for(server, model="m1"), output="Paris", expected="Paris")
    message = str(caught.value)
    assert f"the call to {server.base_url} (model m1) failed" in message
    assert "check the endpoint, model name and API key" in message
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert len(server.requests) == 1  # max_retries=0 is passed to the client


def test_model_endpoint_and_key_fall_back_on_the_environment(
    server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server.reply = lambda body: "Choice: A"
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.setenv("EVALHOUSE_JUDGE_MODEL", "env-judge")
    judge = resolve_scorer("llm_judge:helpfulness", {"use_cot": False, "max_retries": 0})
    assert run(judge, "Paris").value == 1.0
    monkeypatch.delenv("EVALHOUSE_JUDGE_MODEL")
    assert resolve_scorer("llm_judge:helpfulness").model == DEFAULT_JUDGE_MODEL
    assert server.requests[0]["model"] == "env-judge"
    assert "from-env" not in repr(judge)


def test_a_missing_api_key_is_refused_when_the_judge_is_built() -> None:
    with pytest.raises(InvalidScorerOptions, match="set OPENAI_API_KEY or the 'api_key' option"):
        LlmJudge(rubric="helpfulness")


def test_a_client_passed_in_is_used_and_left_open(server: FakeOpenAI) -> None:
    async def scored(base_url: str) -> tuple[Score, bool]:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
        try:
            judge = LlmJudge(rubric="helpfulness", client=client)
            (result,) = await run_scorer(judge, input="q", output="a")
            await judge.aclose()
            return result, client.is_closed()
        finally:
            await client.close()

    server.reply = lambda body: "Choice: D"
    result, closed = asyncio.run(scored(server.base_url))
    assert (result.value, closed) == (0.0, False)


def test_concurrent_judgements_on_one_loop_share_the_judge(server: FakeOpenAI) -> None:
    def reply(body: dict[str, Any]) -> str:
        return "Choice: A" if "<answer>\ngood" in prompt_of(body) else "Choice: D"

    async def scored(judge: Any) -> list[float | None]:
        try:
            batches = await asyncio.gather(
                *(
                    run_scorer(judge, input="q", output=f"{'good' if i % 2 else 'bad'} {i}")
                    for i in range(4)
                )
            )
            return [scores[0].value for scores in batches]
        finally:
            await judge.aclose()

    server.reply = reply
    server.delay_seconds = 0.05
    values = asyncio.run(scored(judge_for(server, "llm_judge:helpfulness")))
    assert values == [0.0, 1.0] * 2
    assert len(server.requests) == 4


def resource_warnings(run: Callable[[], object]) -> list[str]:
    """Run ``run`` (an asyncio.run), collect garbage, return the ResourceWarnings raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_a_fresh_judge_at_concurrency_8_closes_every_socket(server: FakeOpenAI) -> None:
    async def scored(judge: Any) -> list[list[Score]]:
        try:
            return await asyncio.gather(
                *(run_scorer(judge, input="q", output=f"a{i}") for i in range(8))
            )
        finally:
            await judge.aclose()

    server.delay_seconds = 0.02  # the eight first calls overlap, each on its own connection
    judge = judge_for(server, "llm_judge:helpfulness")
    batches: list[list[list[Score]]] = []
    assert resource_warnings(lambda: batches.append(asyncio.run(scored(judge)))) == []
    assert [scores[0].value for scores in batches[0]] == [1.0] * 8
    assert len(server.requests) == 8


def test_a_scorer_pool_resolves_a_judge_once_for_concurrent_first_runs(
    server: FakeOpenAI,
) -> None:
    # Eight rows reach a new pool at once; one judge (one HTTP client) must serve them all,
    # or the extra judges' sockets outlive aclose() (ResourceWarning under filterwarnings).
    resolved: list[Any] = []

    def resolve(spec: str, options: Any) -> Any:
        resolved.append(resolve_scorer(spec, options))
        return resolved[-1]

    options = {"base_url": server.base_url, "api_key": "test-key", "max_retries": 0}
    scorer_id = ScorerRef("llm_judge:helpfulness", options).id
    items = [
        ScoringItem(f"t{i}", 0, "e", f"r{i}", 0, "s", '"q"', "null", f'"a{i}"', "{}", scorer_id)
        for i in range(8)
    ]

    async def scored() -> list[Outcome]:
        pool = ScorerPool(timeout=30, concurrency=8, resolve=resolve)
        try:
            return await asyncio.gather(*(pool.run(item) for item in items))
        finally:
            await pool.aclose()

    server.delay_seconds = 0.02
    outcomes: list[list[Outcome]] = []
    assert resource_warnings(lambda: outcomes.append(asyncio.run(scored()))) == []
    assert [(o.error, [s.value for s in o.scores]) for o in outcomes[0]] == [("", [1.0])] * 8
    assert len(resolved) == 1
    assert len(server.requests) == 8


def completion(content: str | None = None, tool_arguments: str | None = None) -> ChatCompletion:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_arguments is not None:
        message["tool_calls"] = [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "select_choice", "arguments": tool_arguments},
            }
        ]
    return ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    )


_CHOICES = {"A": 1.0, "B": 0.5, "C": 0.0}


@pytest.mark.parametrize(
    ("text", "choice", "reasoning"),
    [
        ("A", "A", ""),
        ("(b)", "B", ""),
        ("**C**", "C", ""),
        ("Reasoning here.\nChoice: B", "B", "Reasoning here."),
        ("Step 1.\nStep 2.\n\nFinal answer: (A) fully supported", "A", "Step 1.\nStep 2."),
        ("Choice: A was tempting.\nBut no.\nChoice: C", "C", "Choice: A was tempting.\nBut no."),
        ("Thinking it over...\nB", "B", "Thinking it over..."),
        ("Verdict = 'A'", "A", ""),
    ],
)
def test_choice_is_parsed_from_text(text: str, choice: str, reasoning: str) -> None:
    assert parse_choice("j", completion(text), _CHOICES) == (choice, reasoning)


@pytest.mark.parametrize(
    "text", ["", "All of them.", "Choice: D", "Apparently fine", "Choice:", "B or C"]
)
def test_text_without_a_choice_is_refused(text: str) -> None:
    with pytest.raises(JudgeError, match="none of the choices A, B, C"):
        parse_choice("j", completion(text), _CHOICES)


def test_choice_is_parsed_from_a_tool_call() -> None:
    arguments = json.dumps({"reasoning": "Grounded in the context.", "choice": "B"})
    assert parse_choice("j", completion(None, arguments), _CHOICES) == (
        "B",
        "Grounded in the context.",
    )
    with pytest.raises(JudgeError, match=r"select_choice\(choice='Q'\)"):
        parse_choice("j", completion(None, '{"choice": "Q"}'), _CHOICES)
    with pytest.raises(JudgeError, match="arguments that are not JSON"):
        parse_choice("j", completion(None, '{"choice": '), _CHOICES)


def test_shipped_rubrics_are_valid_data() -> None:
    assert rubric_names() == ["correctness", "faithfulness", "helpfulness"]
    for name in rubric_names():
        rubric = load_rubric(name)
        assert "{{output}}" in rubric.prompt and "{{input}}" in rubric.prompt
        assert all(0.0 <= score <= 1.0 for score in rubric.choice_scores.values())
        assert max(rubric.choice_scores.values()) == 1.0
        assert min(rubric.choice_scores.values()) == 0.0
        assert rubric.requires_expected == (name == "correctness")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "Rate {{output}}"}, "choice_scores must map each choice"),
        ({"prompt": "Rate {{output}}", "choice_scores": {"A": 2}}, "outside \\[0, 1\\]"),
        ({"prompt": "Rate {{output}}", "choice_scores": {"A": "1"}}, "not a number"),
        ({"prompt": "Rate {{answer}}", "choice_scores": {"A": 1}}, "unknown placeholders"),
        ({"prompt": "Rate it", "choice_scores": {"A": 1}}, "add {{output}}"),
        ({"rubric": "tone"}, "unknown rubric 'tone'; built-in rubrics: correctness"),
        ({"rubric": "/no/such/rubric.toml"}, "cannot read rubric file"),
        ({"rubric": "helpfulness", "prompt": "{{output}}"}, "not both"),
    ],
)
def test_bad_rubric_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidScorerOptions, match=message):
        resolve_scorer("llm_judge", {"api_key": "x", **options})
