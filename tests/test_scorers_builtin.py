"""The built-in heuristic scorers, each called the way the daemon calls it: run_scorer."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from evalhouse.evaluators.scorers import (
    Contains,
    ExactMatch,
    InvalidScorerOptions,
    JsonDiff,
    JsonSchema,
    JsonValid,
    Levenshtein,
    ListOverlap,
    MissingExpected,
    NormalizedMatch,
    NumericCloseness,
    Regex,
    resolve_scorer,
)
from evalhouse.scoring import Score, run_scorer


def score(scorer: Any, output: Any, expected: Any = None, input: Any = "q") -> Score:
    scores = asyncio.run(run_scorer(scorer, input=input, output=output, expected=expected))
    assert len(scores) == 1
    return scores[0]


def value(scorer: Any, output: Any, expected: Any = None) -> float | None:
    return score(scorer, output, expected).value


@pytest.mark.parametrize(
    ("output", "expected", "result"),
    [
        ("Paris", "Paris", 1.0),
        ("Paris", "paris", 0.0),
        ("Paris ", "Paris", 0.0),
        ({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1}, 1.0),
        ({"a": 1}, {"a": 2}, 0.0),
        (42, "42", 1.0),
        (True, 1, 0.0),
        (None, "Paris", 0.0),
        ("東京", "東京", 1.0),
        ([1, 2], [2, 1], 0.0),
    ],
)
def test_exact_match(output: Any, expected: Any, result: float) -> None:
    assert score(ExactMatch(), output, expected) == Score("exact_match", result)


@pytest.mark.parametrize(
    ("output", "expected", "result"),
    [
        ("  The  Eiffel\tTower\n", "the eiffel tower", 1.0),
        ("STRASSE", "straße", 1.0),  # case folding, not lower()
        ("ﬁne", "fine", 1.0),  # NFKC: the ligature is two letters
        ("Paris", "Pariss", 0.0),
        (None, "", 1.0),
        ({"City": "Paris"}, '{"City": "paris"}', 1.0),
    ],
)
def test_normalized_match_ignores_case_and_whitespace(
    output: Any, expected: Any, result: float
) -> None:
    assert value(NormalizedMatch(), output, expected) == result


def test_normalized_match_can_keep_case() -> None:
    assert value(NormalizedMatch(ignore_case=False), "A  b", "a b") == 0.0
    assert value(NormalizedMatch(ignore_case=False), "a  b", "a b") == 1.0


def test_contains_scores_the_share_of_needles_found_and_names_the_missing() -> None:
    result = score(Contains(), "The capital of France is Paris.", ["Paris", "France", "Seine"])
    assert result.value == pytest.approx(2 / 3)
    assert result.explanation == "missing: 'Seine'"
    assert value(Contains(), "Paris", "paris") == 0.0
    assert value(Contains(ignore_case=True), "PARIS", "paris") == 1.0
    assert value(Contains(value="Paris"), "in Paris", None) == 1.0
    assert value(Contains(), "il fait 30 °C à Zürich", "Zürich") == 1.0


def test_contains_on_non_string_outputs() -> None:
    assert value(Contains(), ["Paris", "Rome"], "Rome") == 1.0
    assert value(Contains(), ["Parisian"], "Paris") == 0.0  # items match whole, not as text
    assert value(Contains(), {"city": "Paris"}, "Paris") == 1.0
    assert value(Contains(), 12345, 234) == 1.0
    assert value(Contains(), None, "Paris") == 0.0


def test_contains_with_empty_expected_list_does_not_score() -> None:
    assert value(Contains(), "anything", []) is None
    with pytest.raises(InvalidScorerOptions, match="option 'value' is empty"):
        Contains(value=[])


def test_regex_searches_by_default_and_full_match_on_request() -> None:
    date = r"\d{4}-\d{2}-\d{2}"
    assert value(Regex(pattern=date), "due on 2024-05-01.", None) == 1.0
    assert value(Regex(pattern=date, full_match=True), "due on 2024-05-01.", None) == 0.0
    assert value(Regex(pattern=date, full_match=True), "2024-05-01", None) == 1.0
    miss = score(Regex(pattern=date), "tomorrow", None)
    assert (miss.value, miss.explanation) == (0.0, r"no match for /\d{4}-\d{2}-\d{2}/")
    assert value(Regex(pattern="^paris$", ignore_case=True), "PARIS", None) == 1.0
    assert value(Regex(pattern=r"^\w+$"), "Ærøskøbing", None) == 1.0
    assert value(Regex(pattern="^$"), None, None) == 1.0
    assert value(Regex(pattern='"n": 3'), {"n": 3}, None) == 1.0


def test_regex_takes_the_pattern_from_expected_when_no_option() -> None:
    assert value(Regex(), "order #123", r"#\d+") == 1.0
    with pytest.raises(MissingExpected, match=r"scorer regex .* 'pattern'"):
        score(Regex(), "order #123", None)


def test_regex_rejects_a_bad_pattern_with_the_reason() -> None:
    with pytest.raises(InvalidScorerOptions, match=r"invalid regular expression '\(unclosed'"):
        Regex(pattern="(unclosed")
    with pytest.raises(InvalidScorerOptions, match="must be a regular expression string"):
        score(Regex(), "x", 5)


@pytest.mark.parametrize(
    ("output", "result"),
    [
        ('{"a": [1, 2, {"b": null}]}', 1.0),
        ("[]", 1.0),
        ('"just a string"', 1.0),
        ("3.5", 1.0),
        ('{"a": 1,}', 0.0),
        ("Paris", 0.0),
        ("", 0.0),
        (None, 0.0),
        ({"already": "decoded"}, 1.0),
        ([1, "é"], 1.0),
        (7, 1.0),
        (float("nan"), 0.0),
        ({1, 2}, 0.0),
    ],
)
def test_json_valid(output: Any, result: float) -> None:
    assert value(JsonValid(), output) == result


def test_json_valid_explains_and_can_strip_code_fences() -> None:
    fenced = '```json\n{"a": 1}\n```'
    assert score(JsonValid(), fenced).explanation.startswith("not JSON: ")  # type: ignore[union-attr]
    assert value(JsonValid(strip_code_fences=True), fenced) == 1.0
    assert value(JsonValid(strip_code_fences=True), "```\n[1]\n```") == 1.0
    assert value(JsonValid(strip_code_fences=True), "```json\n{oops}\n```") == 0.0


_PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_schema_validates_text_or_decoded_output() -> None:
    scorer = JsonSchema(schema=_PERSON)
    assert value(scorer, '{"name": "Zoë", "age": 31}') == 1.0
    assert value(scorer, {"name": "Zoë", "age": 31}) == 1.0
    bad = score(scorer, {"name": "Zoë", "age": -1, "x": 1})
    assert bad.value == 0.0
    assert "$: Additional properties are not allowed ('x' was unexpected)" in str(bad.explanation)
    assert "$.age: -1 is less than the minimum of 0" in str(bad.explanation)
    assert score(scorer, "{not json").explanation == "output is not JSON"
    assert score(scorer, None).explanation == "no output"
    assert value(scorer, [1]) == 0.0


def test_json_schema_takes_the_schema_from_expected() -> None:
    assert value(JsonSchema(), {"name": "a", "age": 1}, _PERSON) == 1.0
    assert value(JsonSchema(), '{"name": "a"}', json.dumps(_PERSON)) == 0.0
    with pytest.raises(MissingExpected, match="scorer json_schema needs an expected value"):
        score(JsonSchema(), "{}", None)


def test_json_schema_rejects_an_invalid_schema() -> None:
    with pytest.raises(InvalidScorerOptions, match="not a valid JSON Schema"):
        JsonSchema(schema={"type": "no-such-type"})
    with pytest.raises(InvalidScorerOptions, match="must be a JSON Schema object"):
        JsonSchema(schema="[1, 2]")


def test_json_diff_is_structural() -> None:
    expected = {"city": "Paris", "population": 2_100_000, "tags": ["capital", "fr"]}
    assert value(JsonDiff(), dict(expected), expected) == 1.0
    assert value(JsonDiff(), json.dumps(expected), expected) == 1.0  # JSON text is decoded
    partial = score(JsonDiff(), {"city": "Paris", "tags": ["capital", "fr"]}, expected)
    assert partial.value == pytest.approx(2 / 3)
    assert partial.explanation == "$.population missing"
    assert value(JsonDiff(), {"a": 90}, {"a": 100}) == pytest.approx(0.9)
    assert value(JsonDiff(), {"a": "kitten"}, {"a": "sitten"}) == pytest.approx(5 / 6)
    assert value(JsonDiff(string_similarity="exact"), {"a": "kitten"}, {"a": "sitten"}) == 0.0
    assert value(JsonDiff(), [1, 2, 3, 4], [1, 2]) == 0.5
    assert value(JsonDiff(), {"a": True}, {"a": 1}) == 0.0
    assert value(JsonDiff(), {}, {}) == 1.0
    assert value(JsonDiff(), None, {"a": 1}) == 0.0
    assert value(JsonDiff(), "Grüße", "Grüße") == 1.0


def test_json_diff_explanation_lists_paths_and_counts_the_rest() -> None:
    output = {f"k{i}": i for i in range(8)}
    expected = {f"k{i}": i + 100 for i in range(8)}
    explanation = str(score(JsonDiff(), output, expected).explanation)
    assert explanation.startswith("$.k0: 0 != 100; $.k1: 1 != 101")
    assert explanation.endswith("; and 3 more")


@pytest.mark.parametrize(
    ("output", "expected", "result"),
    [
        ("kitten", "sitten", 5 / 6),
        ("same", "same", 1.0),
        ("", "", 1.0),
        ("abc", "xyz", 0.0),
        (None, "abc", 0.0),
        (123, "123", 1.0),
        ("naïve", "naive", 0.8),
    ],
)
def test_levenshtein_similarity(output: Any, expected: Any, result: float) -> None:
    assert value(Levenshtein(), output, expected) == pytest.approx(result)


def test_levenshtein_can_ignore_case() -> None:
    assert value(Levenshtein(), "PARIS", "paris") == 0.0
    assert value(Levenshtein(ignore_case=True), "PARIS", "paris") == 1.0


@pytest.mark.parametrize(
    ("output", "expected", "result"),
    [
        (100, 100, 1.0),
        (90, 100, 0.9),
        ("1,000", 1000, 1.0),
        (" 2.5 ", "2.5", 1.0),
        (-5, 5, 0.0),
        (0, 0, 1.0),
        ("about ten", 10, 0.0),
        (None, 10, 0.0),
        (True, 1, 0.0),
        ([1], 1, 0.0),
    ],
)
def test_numeric_closeness_graded(output: Any, expected: Any, result: float) -> None:
    assert value(NumericCloseness(), output, expected) == pytest.approx(result)


def test_numeric_closeness_with_tolerances() -> None:
    assert value(NumericCloseness(abs_tol=0.5), 3.4, 3) == 1.0
    off = score(NumericCloseness(abs_tol=0.5), 3.6, 3)
    assert (off.value, off.explanation) == (0.0, "3.6 is off by 0.6")
    assert value(NumericCloseness(rel_tol=0.1), 105, 100) == 1.0
    assert value(NumericCloseness(rel_tol=0.01), 105, 100) == 0.0
    assert score(NumericCloseness(), "n/a", 3).explanation == 'output "n/a" is not a number'
    with pytest.raises(InvalidScorerOptions, match="rel_tol must be a number >= 0"):
        NumericCloseness(rel_tol=-1)
    with pytest.raises(InvalidScorerOptions, match="expected must be a number"):
        score(NumericCloseness(), 3, "three")


def test_list_overlap_modes() -> None:
    output, expected = ["a", "b", "x"], ["a", "b", "c", "d"]
    assert value(ListOverlap(), output, expected) == pytest.approx(2 / 5)
    assert value(ListOverlap(mode="recall"), output, expected) == pytest.approx(2 / 4)
    assert value(ListOverlap(mode="precision"), output, expected) == pytest.approx(2 / 3)
    assert value(ListOverlap(mode="f1"), output, expected) == pytest.approx(4 / 7)
    result = score(ListOverlap(), output, expected)
    assert result.explanation == "missing: c, d; unexpected: x"
    with pytest.raises(InvalidScorerOptions, match="mode must be one of jaccard, recall"):
        ListOverlap(mode="cosine")


def test_list_overlap_reads_lists_from_any_json_type() -> None:
    assert value(ListOverlap(), '["Paris", "Rome"]', ["Rome", "Paris"]) == 1.0
    assert value(ListOverlap(), "Paris, Rome\nBerlin", ["Paris", "Rome", "Berlin"]) == 1.0
    assert value(ListOverlap(), ["paris"], ["Paris"]) == 0.0
    assert value(ListOverlap(ignore_case=True), ["paris"], ["Paris"]) == 1.0
    assert value(ListOverlap(), [1, 2, 2], [2, 1]) == 1.0  # sets: duplicates count once
    assert value(ListOverlap(), [{"id": 1}], [{"id": 1}, {"id": 2}]) == 0.5
    assert value(ListOverlap(), [], []) == 1.0
    assert value(ListOverlap(), None, ["a"]) == 0.0
    assert value(ListOverlap(mode="recall"), ["東京", "大阪"], ["東京"]) == 1.0


@pytest.mark.parametrize(
    "scorer",
    [
        ExactMatch(),
        NormalizedMatch(),
        Contains(),
        JsonDiff(),
        Levenshtein(),
        NumericCloseness(),
        ListOverlap(),
    ],
)
def test_scorers_that_compare_name_themselves_when_expected_is_missing(scorer: Any) -> None:
    with pytest.raises(MissingExpected, match=f"scorer {scorer.name} needs an expected value"):
        score(scorer, "output", None)


def test_the_name_option_renames_the_score() -> None:
    assert score(resolve_scorer("exact_match", {"name": "same_city"}), "a", "a").name == (
        "same_city"
    )
