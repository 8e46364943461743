"""JSON scorers: validity, conformance to a JSON Schema, structural similarity of two values."""

from __future__ import annotations

import json
from typing import Any

from rapidfuzz.distance import Levenshtein as _Levenshtein

from evalhouse.evaluators.scorers._values import (
    NOT_JSON,
    InvalidScorerOptions,
    MissingExpected,
    canonical,
    closeness,
    parse_json,
    require_expected,
)
from evalhouse.scoring import Score

__all__ = ["JsonDiff", "JsonSchema", "JsonValid"]

_MAX_LISTED = 5  # differences named in an explanation; the rest are counted


class JsonValid:
    """1 when the output is JSON: a string that parses, or an already-decoded JSON value.

    A ``None`` output scores 0 (the task produced nothing). ``strip_code_fences`` accepts
    the Markdown ```json fences chat models like to add.

    >>> JsonValid()(output='{"a": [1, 2]}').value
    1.0
    """

    def __init__(self, *, name: str = "json_valid", strip_code_fences: bool = False) -> None:
        self.name = name
        self.strip_code_fences = strip_code_fences

    def __call__(self, output: Any) -> Score:
        if output is None:
            return Score(self.name, 0.0, "no output")
        if isinstance(output, str):
            text = _unfenced(output) if self.strip_code_fences else output
            try:
                json.loads(text)
            except ValueError as exc:
                return Score(self.name, 0.0, f"not JSON: {exc}")
            return Score(self.name, 1.0)
        try:
            json.dumps(output, allow_nan=False)
        except (TypeError, ValueError) as exc:
            return Score(self.name, 0.0, f"not a JSON value: {exc}")
        return Score(self.name, 1.0)


def _unfenced(text: str) -> str:
    stripped = text.strip()
    if stripped.startswith("```") and stripped.endswith("```") and len(stripped) >= 6:
        body = stripped[3:-3]
        first_line, _, rest = body.partition("\n")
        # The info string (```json) is one word on the fence line.
        return rest if first_line.strip().isalnum() or not first_line.strip() else body
    return text


class JsonSchema:
    """1 when the output (JSON text or a decoded value) validates against a JSON Schema.

    The schema comes from the ``schema`` option, else from ``expected`` (a schema object or
    its JSON text). The explanation lists where validation failed.

    >>> schema = {"type": "object", "required": ["city"]}
    >>> JsonSchema(schema=schema)(output='{"city": "Paris"}').value
    1.0
    """

    def __init__(self, *, name: str = "json_schema", schema: Any = None) -> None:
        self.name = name
        self.validator = None if schema is None else self._validator(schema, "option 'schema'")

    def _validator(self, schema: Any, where: str) -> Any:
        import jsonschema

        decoded = parse_json(schema)
        if not isinstance(decoded, dict):
            raise InvalidScorerOptions(
                self.name, f"{where} must be a JSON Schema object, got {canonical(schema)[:200]}"
            )
        cls = jsonschema.validators.validator_for(decoded)
        try:
            cls.check_schema(decoded)
        except jsonschema.SchemaError as exc:
            raise InvalidScorerOptions(
                self.name, f"{where} is not a valid JSON Schema: {exc.message}; fix the schema"
            ) from exc
        return cls(decoded)

    def __call__(self, output: Any, expected: Any = None) -> Score:
        validator = self.validator
        if validator is None:
            if expected is None:
                raise MissingExpected(self.name, " holding the schema, or a 'schema' option")
            validator = self._validator(expected, "expected")
        if output is None:
            return Score(self.name, 0.0, "no output")
        value = parse_json(output)
        if value is NOT_JSON:
            return Score(self.name, 0.0, "output is not JSON")
        errors = sorted(validator.iter_errors(value), key=lambda error: list(error.path))
        if not errors:
            return Score(self.name, 1.0)
        listed = [f"{_path(error.absolute_path)}: {error.message}" for error in errors]
        return Score(self.name, 0.0, _listing(listed))


def _path(parts: Any) -> str:
    return "$" + "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in parts)


def _listing(items: list[str]) -> str:
    text = "; ".join(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        text += f"; and {len(items) - _MAX_LISTED} more"
    return text


class JsonDiff:
    """Structural similarity in [0, 1] of the output and ``expected`` as JSON values.

    Objects score the mean over the union of their keys (a missing key scores 0), arrays
    the mean over positions, numbers their relative closeness, strings their Levenshtein
    similarity (``string_similarity="exact"`` for equality), other values equality.
    JSON text on either side is decoded first.

    >>> JsonDiff()(output={"a": 1, "b": "x"}, expected={"a": 1, "b": "y"}).value
    0.5
    """

    def __init__(self, *, name: str = "json_diff", string_similarity: str = "levenshtein") -> None:
        if string_similarity not in ("levenshtein", "exact"):
            raise InvalidScorerOptions(
                name,
                f"string_similarity must be 'levenshtein' or 'exact', not {string_similarity!r}",
            )
        self.name = name
        self.exact_strings = string_similarity == "exact"

    def __call__(self, output: Any, expected: Any = None) -> Score:
        expected = _decoded(require_expected(self.name, expected))
        differences: list[str] = []
        value = self._similarity(_decoded(output), expected, "$", differences)
        return Score(self.name, value, _listing(differences) if differences else None)

    def _similarity(self, output: Any, expected: Any, path: str, diffs: list[str]) -> float:
        if isinstance(output, dict) and isinstance(expected, dict):
            keys = sorted(set(output) | set(expected), key=str)
            if not keys:
                return 1.0
            total = 0.0
            for key in keys:
                child = f"{path}.{key}"
                if key not in output or key not in expected:
                    diffs.append(f"{child} {'missing' if key not in output else 'unexpected'}")
                    continue
                total += self._similarity(output[key], expected[key], child, diffs)
            return total / len(keys)
        if isinstance(output, list) and isinstance(expected, list):
            length = max(len(output), len(expected))
            if length == 0:
                return 1.0
            total = sum(
                self._similarity(a, b, f"{path}[{i}]", diffs)
                for i, (a, b) in enumerate(zip(output, expected, strict=False))
            )
            if len(output) != len(expected):
                diffs.append(f"{path} has {len(output)} items, expected {len(expected)}")
            return total / length
        score = self._leaf(output, expected)
        if score < 1.0:
            diffs.append(f"{path}: {canonical(output)[:60]} != {canonical(expected)[:60]}")
        return score

    def _leaf(self, output: Any, expected: Any) -> float:
        if _is_number(output) and _is_number(expected):
            return closeness(float(output), float(expected))
        if isinstance(output, str) and isinstance(expected, str):
            if self.exact_strings or output == expected:
                return 1.0 if output == expected else 0.0
            return float(_Levenshtein.normalized_similarity(output, expected))
        return 1.0 if type(output) is type(expected) and output == expected else 0.0


def _decoded(value: Any) -> Any:
    decoded = parse_json(value)
    return value if decoded is NOT_JSON else decoded


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
