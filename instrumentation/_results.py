"""What ``run_experiment`` returns: rows, per-scorer summaries, server metrics, baseline."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from evalhouse.errors import EvalhouseError
from evalhouse.scoring import Score

SummaryStatus = Literal["ready", "pending", "unavailable"]
BaselineStatus = Literal["compared", "means_only", "not_found", "unavailable"]


@dataclass(frozen=True)
class RowResult:
    """One row × trial: what went in, what came out, its scores and errors."""

    row_id: str
    trial: int
    input: Any
    expected: Any
    output: Any
    metadata: Mapping[str, Any]
    scores: tuple[Score, ...]
    scorer_errors: Mapping[str, str]
    error: str | None
    duration_seconds: float
    trace_id: str


@dataclass(frozen=True)
class ScorerSummary:
    """Mean over the rows a score was given on; ``errors`` counts scorer failures."""

    name: str
    mean: float | None
    count: int
    errors: int


@dataclass(frozen=True)
class ServerSummary:
    """Duration, token and cost figures the server computed from the spans (its results
    API): tokens, LLM time and costs are totals over the run's rows, task durations per row.

    ``status`` is ``ready``, ``pending`` (the server had not finished within the wait) or
    ``unavailable`` (no API, or it lacks the experiment views); ``message`` says which.
    """

    status: SummaryStatus
    message: str = ""
    rows: int = 0
    errored_rows: int = 0
    avg_task_duration_ms: float | None = None
    p95_task_duration_ms: float | None = None
    llm_duration_ms: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    # None when any row's model has no known price: never a silent $0.
    cost_usd: float | None = None
    unpriced_rows: int = 0
    cost_provenance: tuple[str, ...] = ()
    judge_cost_usd: float | None = None
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScoreComparison:
    """One score against the baseline.

    ``verdict``, ``diff`` and ``p_value`` are the server's paired comparison: the verdict
    ``evalhouse compare`` prints for the same pair (``improved``, ``regressed``,
    ``no significant change``, ``insufficient data``). They are None when the server has not
    computed this run yet: then only the plain difference of the means is known, a *drop*
    at most, never a regression. ``missing`` says why a score could not be compared.
    """

    name: str
    mean: float | None
    baseline_mean: float | None
    verdict: str | None = None
    diff: float | None = None
    p_value: float | None = None
    missing: str | None = None

    @property
    def delta(self) -> float | None:
        """The server's paired difference, else the difference of the means."""
        if self.diff is not None:
            return self.diff
        if self.mean is None or self.baseline_mean is None:
            return None
        return self.mean - self.baseline_mean

    @property
    def regressed(self) -> bool:
        """The server's paired comparison says this score regressed significantly."""
        return self.verdict == "regressed"

    @property
    def dropped(self) -> bool:
        """The mean is lower than the baseline's: no significance test, only a difference."""
        delta = self.delta
        return delta is not None and delta < -1e-9


@dataclass(frozen=True)
class BaselineComparison:
    """This run against a baseline.

    ``status``: ``compared`` (the server's paired comparison), ``means_only`` (the server had
    not computed this run: score means only, no significance test), ``not_found`` or
    ``unavailable``; ``message`` says why when not ``compared``, ``reason`` which run the
    baseline is and why that one.
    """

    name: str
    status: BaselineStatus
    message: str = ""
    experiment_id: str | None = None
    scores: tuple[ScoreComparison, ...] = ()
    reason: str = ""
    alpha: float | None = None

    @property
    def regressions(self) -> list[str]:
        """Scores whose regression the server's paired comparison found significant."""
        return [score.name for score in self.scores if score.regressed]

    @property
    def drops(self) -> list[str]:
        """Scores whose mean is lower than the baseline's (no significance test)."""
        return [score.name for score in self.scores if score.dropped]


@dataclass(frozen=True)
class ExperimentResult:
    """The outcome of one ``run_experiment`` call.

    >>> result = evalhouse.run_experiment("capitals", data, task, scorers=[exact])  # doctest: +SKIP
    >>> print(result.format())  # doctest: +SKIP
    """

    experiment_id: str
    name: str
    rows: tuple[RowResult, ...]
    scorers: Mapping[str, ScorerSummary]
    summary: ServerSummary
    url: str
    duration_seconds: float
    dataset_name: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    baseline: BaselineComparison | None = None
    warnings: tuple[str, ...] = ()
    api_url: str | None = None

    @property
    def errors(self) -> list[RowResult]:
        return [row for row in self.rows if row.error is not None]

    @property
    def regressions(self) -> list[str]:
        """Scores the server's paired comparison says regressed significantly against the
        baseline (the verdict of ``evalhouse compare``; a plain drop in mean is not one)."""
        return self.baseline.regressions if self.baseline is not None else []

    def compare(self, baseline: str | None = None, **options: Any) -> dict[str, Any]:
        """The server's paired comparison with ``baseline`` (id or name; default: the
        previous run of this experiment), with the keys of ``evalhouse compare --json``.

        Options are those of ``GET /api/compare`` (``key``, ``where``, ``alpha``, ``score``,
        ``limit``, ``api_key``); see docs/results-api.md. Needs the evaluator to have
        computed this run's rows (a few seconds after ``run_experiment`` returns).

        >>> result.compare()["scores"]["exact"]["verdict"]  # doctest: +SKIP
        'no significant change'
        """
        from evalhouse.instrumentation._compare import compare

        return compare(self.experiment_id, baseline, api_url=self.api_url, **options)

    def format(self) -> str:
        """A readable summary: scores, errors, server figures, baseline, link."""
        return "\n".join(_format(self))

    def to_pandas(self) -> Any:
        """One DataFrame row per row × trial, a column per score (needs pandas)."""
        try:
            pandas = importlib.import_module("pandas")
        except ImportError as exc:
            raise EvalhouseError(
                "to_pandas() needs pandas, which is not installed: pip install pandas"
            ) from exc
        records = []
        for row in self.rows:
            record: dict[str, Any] = {
                "row_id": row.row_id,
                "trial": row.trial,
                "input": row.input,
                "expected": row.expected,
                "output": row.output,
                "error": row.error,
                "duration_seconds": row.duration_seconds,
                "trace_id": row.trace_id,
            }
            for score in row.scores:
                record[f"score.{score.name}"] = score.value
            for name, message in row.scorer_errors.items():
                record[f"scorer_error.{name}"] = message
            records.append(record)
        return pandas.DataFrame.from_records(records)


def summarise_scores(
    rows: Sequence[RowResult], scorer_names: Sequence[str]
) -> dict[str, ScorerSummary]:
    """Per score name: mean and count of the values given, and the scorer failures."""
    values: dict[str, list[float]] = {name: [] for name in scorer_names}
    errors: dict[str, int] = dict.fromkeys(scorer_names, 0)
    for row in rows:
        for score in row.scores:
            values.setdefault(score.name, [])
            if score.value is not None:
                values[score.name].append(score.value)
        for name in row.scorer_errors:
            errors[name] = errors.get(name, 0) + 1
    return {
        name: ScorerSummary(
            name,
            sum(values.get(name, [])) / len(values[name]) if values.get(name) else None,
            len(values.get(name, [])),
            errors.get(name, 0),
        )
        for name in sorted({*values, *errors})
    }


def _number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _format(result: ExperimentResult) -> list[str]:
    trials = max((row.trial for row in result.rows), default=0) + 1
    distinct = len({row.row_id for row in result.rows})
    shape = f"{len(result.rows)} rows" + (
        f" ({distinct} inputs x {trials} trials)" if trials > 1 else ""
    )
    lines = [
        f"Experiment {result.name} ({result.experiment_id})",
        f"  {shape}, {len(result.errors)} errored, {result.duration_seconds:.1f} s"
        + (f", dataset {result.dataset_name}" if result.dataset_name else ""),
    ]
    compared = {s.name: s for s in result.baseline.scores} if result.baseline else {}
    if result.scorers:
        lines.append("  Scores:")
        width = max(len(name) for name in result.scorers)
        for name, summary in result.scorers.items():
            line = f"    {name:<{width}}  {_number(summary.mean)}  ({summary.count} scored"
            line += f", {summary.errors} errors)" if summary.errors else ")"
            comparison = compared.get(name)
            if comparison is not None:
                line += _format_comparison(comparison)
            lines.append(line)
    lines.extend(_format_server(result.summary))
    if result.baseline is not None:
        lines.append(_format_baseline(result.baseline))
    for row in result.errors[:5]:
        lines.append(f"  Error in row {row.row_id} trial {row.trial}: {row.error}")
    if len(result.errors) > 5:
        lines.append(f"  ... and {len(result.errors) - 5} more errored rows")
    failed = [(row, name, msg) for row in result.rows for name, msg in row.scorer_errors.items()]
    for row, name, message in failed[:5]:
        lines.append(f"  Scorer {name} failed on row {row.row_id} trial {row.trial}: {message}")
    if len(failed) > 5:
        lines.append(f"  ... and {len(failed) - 5} more scorer errors")
    lines.extend(f"  Warning: {warning}" for warning in result.warnings)
    lines.append(f"  View: {result.url}")
    return lines


def verdict_label(verdict: str) -> str:
    """A verdict as the CLI prints it: the two that matter in capitals.

    >>> verdict_label("regressed"), verdict_label("no significant change")
    ('REGRESSED', 'no significant change')
    """
    return verdict.upper() if verdict in ("regressed", "improved") else verdict


def _format_comparison(comparison: ScoreComparison) -> str:
    if comparison.missing:
        return f"  baseline: not compared ({comparison.missing})"
    delta = comparison.delta
    if delta is None:
        return ""
    text = f"  baseline {_number(comparison.baseline_mean)} ({delta:+.3f}"
    if comparison.verdict is None:
        return text + (")  drop" if comparison.dropped else ")")
    p_value = "-" if comparison.p_value is None else f"{comparison.p_value:.3g}"
    return text + f", p={p_value})  {verdict_label(comparison.verdict)}"


def _format_baseline(baseline: BaselineComparison) -> str:
    head = f"  Baseline {baseline.name}"
    if baseline.status in ("not_found", "unavailable"):
        return f"{head}: {baseline.message}"
    head += f" ({baseline.experiment_id}" + (f"; {baseline.reason})" if baseline.reason else ")")
    if baseline.status == "means_only":
        drops = ", ".join(baseline.drops)
        return (
            f"{head}: no significance test ({baseline.message}); "
            + (f"drop in the mean of {drops}" if drops else "no score mean dropped")
            + " (a drop is not a verdict: compare later with 'evalhouse compare')"
        )
    alpha = f" at alpha {baseline.alpha:g}" if baseline.alpha is not None else ""
    if baseline.regressions:
        found = ", ".join(
            f"{s.name} ({s.delta:+.3f}, p={s.p_value:.3g})"
            for s in baseline.scores
            if s.regressed and s.delta is not None and s.p_value is not None
        )
        return f"{head}: significant regression{alpha} of {found}"
    return f"{head}: no significant regression{alpha} (the server's paired comparison)"


def _format_server(summary: ServerSummary) -> list[str]:
    if summary.status != "ready":
        return [f"  Metrics: {summary.status} ({summary.message})"]
    if summary.cost_usd is None:
        cost = f"unknown (no price for {summary.unpriced_rows} of {summary.rows} rows)"
    else:
        cost = f"${summary.cost_usd:.6f}"
        if summary.cost_provenance:
            cost += f" ({', '.join(summary.cost_provenance)})"
    line = (
        f"  Metrics: task {_number(summary.avg_task_duration_ms, 1)} ms avg, "
        f"p95 {_number(summary.p95_task_duration_ms, 1)} ms; tokens {summary.total_tokens} "
        f"(in {summary.input_tokens}, out {summary.output_tokens}); cost {cost}"
    )
    if summary.judge_cost_usd:
        line += f"; judge cost ${summary.judge_cost_usd:.6f}"
    return [line]
