"""LLM-judge rubrics: prompt templates and choice-to-score maps, kept as TOML data files."""

from __future__ import annotations

import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from evalhouse.evaluators.scorers._values import InvalidScorerOptions, as_text

__all__ = ["Rubric", "answer_format", "load_rubric", "render", "rubric_names"]

_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_FIELDS = frozenset({"input", "output", "expected", "metadata"})


def _folder() -> Any:
    return resources.files("evalhouse.evaluators.scorers").joinpath("rubrics")


def rubric_names() -> list[str]:
    """Names of the rubrics shipped with evalhouse (``llm_judge:NAME``)."""
    return sorted(
        entry.name.removesuffix(".toml")
        for entry in _folder().iterdir()
        if entry.name.endswith(".toml") and not entry.name.startswith("_")
    )


@dataclass(frozen=True)
class Rubric:
    """A judge prompt with ``{{input}}``-style placeholders and its choice-to-score map."""

    name: str
    prompt: str
    choice_scores: Mapping[str, float]
    requires_expected: bool
    system: str | None = None


def _read(source: str, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidScorerOptions("llm_judge", f"rubric file {source} is not TOML: {exc}") from exc


def load_rubric(
    rubric: str | None = None,
    *,
    prompt: str | None = None,
    choice_scores: Mapping[str, Any] | None = None,
    requires_expected: bool | None = None,
    system: str | None = None,
) -> Rubric:
    """A built-in rubric by name, a rubric TOML file by path, or a custom ``prompt``.

    ``choice_scores`` replaces the rubric's own map; a custom prompt needs one.

    >>> load_rubric("faithfulness").choice_scores["A"]
    1.0
    """
    data: dict[str, Any] = {}
    name = "llm_judge"
    if prompt is None:
        name, data = _rubric_data(rubric or "correctness")
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InvalidScorerOptions(name, "the rubric has no 'prompt' string")
    elif rubric is not None:
        raise InvalidScorerOptions("llm_judge", "give either a rubric or a custom prompt, not both")
    scores = _choice_scores(
        name, choice_scores if choice_scores is not None else data.get("choice_scores")
    )
    used = set(_PLACEHOLDER.findall(prompt))
    unknown = used - _FIELDS
    if unknown:
        raise InvalidScorerOptions(
            name,
            f"prompt uses unknown placeholders {sorted(unknown)}; "
            f"use {{{{input}}}}, {{{{output}}}}, {{{{expected}}}} or {{{{metadata}}}}",
        )
    if "output" not in used:
        raise InvalidScorerOptions(name, "prompt never shows the output: add {{output}}")
    needs = data.get("requires_expected") if requires_expected is None else requires_expected
    return Rubric(
        name=name,
        prompt=prompt.strip(),
        choice_scores=scores,
        requires_expected=bool("expected" in used if needs is None else needs),
        system=system if system is not None else data.get("system"),
    )


def _rubric_data(rubric: str) -> tuple[str, dict[str, Any]]:
    if rubric.endswith(".toml"):
        path = Path(rubric).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidScorerOptions(
                "llm_judge", f"cannot read rubric file {path}: {exc.strerror}; check the path"
            ) from exc
        return path.stem, _read(str(path), text)
    if rubric not in rubric_names():
        raise InvalidScorerOptions(
            "llm_judge",
            f"unknown rubric {rubric!r}; built-in rubrics: {', '.join(rubric_names())}, "
            "or give the path of a .toml rubric file, or a custom 'prompt'",
        )
    entry = _folder().joinpath(f"{rubric}.toml")
    return rubric, _read(entry.name, entry.read_text(encoding="utf-8"))


def _choice_scores(name: str, raw: Any) -> dict[str, float]:
    if not isinstance(raw, Mapping) or not raw:
        raise InvalidScorerOptions(
            name, "choice_scores must map each choice to a score, e.g. {'A': 1.0, 'B': 0.0}"
        )
    scores: dict[str, float] = {}
    for choice, value in raw.items():
        if not isinstance(choice, str) or not choice.strip() or "\n" in choice:
            raise InvalidScorerOptions(name, f"choice {choice!r} must be a one-line string")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidScorerOptions(name, f"choice {choice} maps to {value!r}, not a number")
        if math.isnan(value) or not 0.0 <= value <= 1.0:
            raise InvalidScorerOptions(name, f"choice {choice} maps to {value}, outside [0, 1]")
        scores[choice.strip()] = float(value)
    return scores


def render(template: str, values: Mapping[str, Any]) -> str:
    """Replace ``{{name}}`` placeholders; values that are not text are written as JSON.

    >>> render("Q: {{input}}", {"input": {"city": "Paris"}})
    'Q: {"city": "Paris"}'
    """
    return _PLACEHOLDER.sub(lambda match: as_text(values.get(match.group(1))), template)


def answer_format() -> dict[str, str]:
    """The answer instructions and tool descriptions shared by every rubric."""
    entry = _folder().joinpath("_answer.toml")
    data = _read(entry.name, entry.read_text(encoding="utf-8"))
    return {key: str(value).strip() for key, value in data.items()}
