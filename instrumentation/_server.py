"""What the server knows about an experiment: metrics and the baseline's scores.

Read through the results API (``GET /api/experiments/{id}`` and ``GET /api/experiments``),
the same figures ``evalhouse experiments show`` and the UI give, which the evaluator daemon
computes a few seconds after the spans arrive. Nothing here fails a run: an absent API, an
unmigrated store or a slow daemon become a status and a message.
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from evalhouse.api_client import ApiClient, ApiError, ApiUnreachable
from evalhouse.errors import EvalhouseError
from evalhouse.instrumentation._results import (
    BaselineComparison,
    ScoreComparison,
    ScorerSummary,
    ServerSummary,
)

_POLL_SECONDS = 0.5
# Rows whose cost is NULL (a model without a known price), by cost provenance.
_UNPRICED = ("partly_unknown", "unknown")


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int:
    number = _float(value)
    return 0 if number is None else round(number)


def _why(exc: EvalhouseError) -> str:
    if isinstance(exc, ApiError) and exc.status == 404:
        return (
            f"the server has no results API ({exc}); "
            "update evalhouse on the server and run 'evalhouse migrate'"
        )
    if isinstance(exc, ApiError) and "experiment" in str(exc).lower():
        return (
            f"the server has no experiment tables yet ({exc}); "
            "update evalhouse on the server and run 'evalhouse migrate'"
        )
    return str(exc)


def _experiment(client: ApiClient, experiment_id: str) -> Mapping[str, Any] | None:
    """The experiment's summary, or None while the daemon has computed none of its rows."""
    path = f"/api/experiments/{urllib.parse.quote(experiment_id, safe='')}"
    try:
        body = client.get(path)
    except ApiError as exc:
        if exc.status == 404 and str(exc).startswith("no experiment with id"):
            return None
        raise
    return body if isinstance(body, dict) else None


def fetch_summary(
    client: ApiClient, experiment_id: str, expected_rows: int, wait_seconds: float
) -> ServerSummary:
    """Poll until the server has every row (or ``wait_seconds`` pass); never raises."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            body = _experiment(client, experiment_id)
        except ApiUnreachable as exc:
            return ServerSummary("unavailable", str(exc))
        except EvalhouseError as exc:
            return ServerSummary("unavailable", _why(exc))
        rows = _int(body.get("rows")) if body else 0
        if body is not None and rows >= expected_rows:
            return _ready(body)
        if time.monotonic() >= deadline:
            return ServerSummary(
                "pending",
                f"the server had {rows} of {expected_rows} rows after {wait_seconds:g} s; "
                f"see them later with: evalhouse experiments show {experiment_id}",
                rows=rows,
            )
        time.sleep(_POLL_SECONDS)


def _ready(body: Mapping[str, Any]) -> ServerSummary:
    """The summary API's figures; totals are the per-row means times the rows."""
    rows = _int(body.get("rows"))
    metrics = body.get("metrics") or {}
    cost = body.get("cost") or {}
    provenance = cost.get("provenance") or {}

    def mean(metric: str) -> float | None:
        return _float((metrics.get(metric) or {}).get("mean"))

    def total(metric: str) -> float | None:
        value = mean(metric)
        return None if value is None else value * rows

    input_tokens, output_tokens = _int(total("input_tokens")), _int(total("output_tokens"))
    scores = body.get("scores") or {}
    return ServerSummary(
        "ready",
        rows=rows,
        errored_rows=_int((body.get("errors") or {}).get("rows")),
        avg_task_duration_ms=mean("task_duration_ms"),
        p95_task_duration_ms=_float((metrics.get("task_duration_ms") or {}).get("p95")),
        llm_duration_ms=total("llm_duration_ms"),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=_int(total("total_tokens")),
        cost_usd=_float(cost.get("total_usd")),
        unpriced_rows=sum(_int(provenance.get(kind)) for kind in _UNPRICED),
        cost_provenance=tuple(sorted(k for k, n in provenance.items() if _int(n) > 0)),
        judge_cost_usd=_float(cost.get("judge_usd")),
        scores={
            str(name): value
            for name, stats in scores.items()
            if isinstance(stats, dict) and (value := _float(stats.get("mean"))) is not None
        },
    )


def compare_baseline(
    client: ApiClient,
    baseline: str,
    experiment_id: str,
    summaries: Mapping[str, ScorerSummary],
    summary: ServerSummary,
) -> BaselineComparison:
    """This run against ``baseline`` (an id, or a name: its latest usable run; this run's own
    name means its previous run).

    When the server has computed this run (``summary`` ready), the answer is its paired
    comparison, ``GET /api/compare``: the verdicts ``evalhouse compare`` prints. Otherwise
    only the score means can be set side by side (``means_only``), which says nothing about
    significance. Never raises.
    """
    if summary.status == "ready":
        return _server_comparison(client, baseline, experiment_id, summaries)
    return _means_only(client, baseline, experiment_id, summaries, summary)


def _server_comparison(
    client: ApiClient, baseline: str, experiment_id: str, summaries: Mapping[str, ScorerSummary]
) -> BaselineComparison:
    try:
        body = client.get(
            "/api/compare", {"candidate": experiment_id, "baseline": baseline, "limit": 1}
        )
    except ApiError as exc:
        # 404: no experiment has that id or name; 400: no usable earlier run.
        if exc.status in (400, 404):
            return BaselineComparison(baseline, "not_found", f"nothing to compare with: {exc}")
        return BaselineComparison(baseline, "unavailable", f"cannot compare: {_why(exc)}")
    except EvalhouseError as exc:
        return BaselineComparison(baseline, "unavailable", f"cannot compare: {_why(exc)}")
    scores = body.get("scores") or {}
    compared = []
    for name in sorted({*summaries, *scores}):
        server = scores.get(name) or {}
        own = summaries.get(name)
        compared.append(
            ScoreComparison(
                name,
                own.mean if own is not None else _float(server.get("candidate_mean")),
                _float(server.get("baseline_mean")),
                verdict=server.get("verdict") if not server.get("missing") else None,
                diff=_float(server.get("diff")),
                p_value=_float(server.get("p_value")),
                missing=server.get("missing")
                or (None if server else "the server compared no matched row with this score"),
            )
        )
    chosen = body.get("baseline") or {}
    return BaselineComparison(
        baseline,
        "compared",
        experiment_id=str(chosen.get("experiment_id")),
        scores=tuple(compared),
        reason=str(body.get("baseline_reason") or ""),
        alpha=_float(body.get("alpha")),
    )


def _means_only(
    client: ApiClient,
    baseline: str,
    experiment_id: str,
    summaries: Mapping[str, ScorerSummary],
    summary: ServerSummary,
) -> BaselineComparison:
    why = (
        "the server has not computed this run yet"
        if summary.status == "pending"
        else f"the server cannot compare ({summary.message})"
    )
    try:
        found = _usable_run(client, baseline, experiment_id)
    except EvalhouseError as exc:
        return BaselineComparison(baseline, "unavailable", f"cannot compare: {_why(exc)}")
    if found is None:
        return BaselineComparison(
            baseline,
            "not_found",
            f"nothing to compare with: no earlier run {baseline!r} on the server",
        )
    item, reason = found
    scores = item.get("scores")
    means: Mapping[str, Any] = scores if isinstance(scores, dict) else {}
    compared = tuple(
        ScoreComparison(name, own.mean, _float(means.get(name))) for name, own in summaries.items()
    )
    return BaselineComparison(
        baseline,
        "means_only",
        why,
        experiment_id=str(item.get("experiment_id")),
        scores=compared,
        reason=reason,
    )


def _usable_run(
    client: ApiClient, baseline: str, experiment_id: str
) -> tuple[Mapping[str, Any], str] | None:
    """The run ``baseline`` stands for as the server chooses it: the latest usable run of that
    name (``usable``: not every row errored) other than this one, else the run with that id."""
    listed = client.get("/api/experiments", {"name": baseline, "usable": "true", "limit": 2})
    items = listed.get("experiments") if isinstance(listed, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and item.get("experiment_id") != experiment_id:
            return item, f"the latest usable run named {baseline!r}"
    if baseline == experiment_id:
        return None
    try:
        body = _experiment(client, baseline)
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    item = (body or {}).get("experiment")
    if isinstance(item, dict) and item.get("experiment_id") == baseline:
        return item, "pinned by id"
    return None
