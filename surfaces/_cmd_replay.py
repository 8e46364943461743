"""``evalhouse replay``: recorded model calls sent again to other models, compared with the
recorded run (``docs/replay.md``).

With ``evalhouse serve`` running on the data directory, the command asks its API
(``POST /api/replays``, then ``GET /api/replays/{id}`` until done): the server's collector and
evaluator take the experiments. On a ClickHouse server (``--clickhouse``) it runs here and
traces to the collector the settings name. ``--dry-run`` only reads, so it also works on a
data directory no server holds. Output: the cohort, the benchmark across the recorded
baseline and the models, and each model's paired comparison with the baseline; ``--json``
prints the API's body.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.errors import EvalhouseError
from evalhouse.surfaces._cli_common import Commands, served_or_store, settings_from, store_flags

__all__ = ["register"]

_POLL_SECONDS = 0.5


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "replay",
        help="replay recorded LLM calls on other models, compared with the recorded run",
        description="Send recorded production model calls (system instructions, tools and "
        "parameters intact) to other models: a dataset of the calls, a recorded baseline "
        "experiment, one experiment per --model, the benchmark and each model's paired "
        "comparison with the baseline. Needs 'evalhouse serve' (or a collector and "
        "evaluator) to trace to; --dry-run only estimates.",
    )
    store_flags(parser)
    parser.add_argument("--filter", default="", help="explorer filter, e.g. 'tag:support'")
    parser.add_argument("--where", default="", help="ClickHouse boolean over otel_traces")
    parser.add_argument("--since", default="7d", help="window start (7d, 24h, ISO time)")
    parser.add_argument("--until", default="", help="window end (default now)")
    parser.add_argument("--limit", type=int, default=100, help="calls at most (default 100)")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        default=[],
        metavar="PROVIDER:MODEL",
        help="a model to replay on (repeat), e.g. openai:gpt-4o-mini",
    )
    parser.add_argument("--base-url", default="", help="OpenAI-compatible endpoint")
    parser.add_argument(
        "--scorer", dest="scorers", action="append", default=[], help="extra scorer (repeat)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="calls at once (16)")
    parser.add_argument("--budget-usd", type=float, help="stop the replay at this spend")
    parser.add_argument("--name", default="", help="replay name (default: the time)")
    parser.add_argument("--dry-run", action="store_true", help="estimate; spend nothing")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--wait", type=float, default=600, metavar="SECONDS", help="wait for scores (600)"
    )
    parser.set_defaults(run=_replay)


def _payload(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "filter": args.filter,
        "where": args.where,
        "since": args.since,
        "until": args.until,
        "limit": args.limit,
        "models": args.models,
        "base_url": args.base_url,
        "scorers": args.scorers,
        "concurrency": args.concurrency,
        "budget_usd": args.budget_usd,
        "name": args.name,
    }
    return {k: v for k, v in body.items() if v not in ("", None, [])}


def _replay(args: argparse.Namespace) -> int:
    from evalhouse.replay import ReplaySpec

    settings = settings_from(args)
    payload = _payload(args)
    ReplaySpec.from_json(payload, need_models=not args.dry_run)  # bad input: before any I/O
    started = time.monotonic()
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            body = _served(target, payload, args)
        else:
            body = _direct(target, settings, payload, args)
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.dry_run:
        print(format_estimate(body))
    else:
        print(format_result(body, time.monotonic() - started))
    return 0


def _served(client: ApiClient, payload: dict[str, Any], args: argparse.Namespace) -> Any:
    if args.dry_run:
        return client.post("/api/replays/estimate", payload)
    started = client.post("/api/replays", payload)
    path = f"/api/replays/{urllib.parse.quote(started['id'], safe='')}"
    while True:
        progress = client.get(path)
        if progress["state"] == "done":
            _progress_line(progress, end="\n")
            return progress["result"]
        if progress["state"] == "failed":
            raise EvalhouseError(f"replay {progress['name']} failed: {progress['error']}")
        _progress_line(progress)
        time.sleep(_POLL_SECONDS)


def _direct(store: Any, settings: Any, payload: dict[str, Any], args: argparse.Namespace) -> Any:
    from evalhouse.evaluators.results import Results
    from evalhouse.replay import Progress, ReplaySpec, estimate, run_replay, select_cohort
    from evalhouse.surfaces._replay_sdk import sdk_runner

    spec = ReplaySpec.from_json(payload, need_models=not args.dry_run)
    if args.dry_run:
        return estimate(select_cohort(store, spec), spec)
    if settings.embedded:
        raise EvalhouseError(
            f"replay traces its experiments to a collector and waits for the evaluator: start "
            f"'evalhouse serve' on {settings.data_dir} first (--dry-run works without it)"
        )
    return run_replay(
        store,
        spec,
        sdk_runner(settings),
        Results.from_settings(store, settings),
        progress=Progress(),
        wait_seconds=args.wait,
    )


def _progress_line(progress: dict[str, Any], end: str = "\r") -> None:
    if not sys.stderr.isatty() and end == "\r":
        return
    done = ", ".join(f"{m} {c['done']}/{c['total']}" for m, c in progress["models"].items())
    print(
        f"replay {progress['name']}: {progress['state']} {done} ${progress['spent_usd']:.4f}",
        end=end,
        file=sys.stderr,
        flush=True,
    )


def _money(value: Any) -> str:
    return "unknown" if value is None else f"${value:.4f}"


def format_estimate(body: dict[str, Any]) -> str:
    """The dry run as text."""
    cohort, recorded = body["cohort"], body["recorded"]
    lines = [
        f"cohort: {cohort['calls']} calls, {cohort['replayable']} replayable",
        *(f"  not replayable: {n} × {reason}" for reason, n in cohort["not_replayable"].items()),
        f"recorded: {recorded['input_tokens']} input / {recorded['output_tokens']} output "
        f"tokens, {_money(recorded['cost_usd'])}",
    ]
    for model, figures in body["models"].items():
        lines.append(
            f"{model}: ~{figures['input_tokens']} input / {figures['output_tokens']} output "
            f"tokens, ~{_money(figures['cost_usd'])}"
            + ("" if figures["priced"] else " (no price for this model in the price data)")
        )
    return "\n".join(lines)


def format_result(body: dict[str, Any], seconds: float) -> str:
    """The replay's benchmark and comparisons as text."""
    cohort = body["cohort"]
    lines = [
        f"cohort: {cohort['calls']} calls, {cohort['replayable']} replayed "
        f"(dataset {body['dataset']['name']} v{body['dataset']['version']})",
        *(f"  not replayable: {n} × {reason}" for reason, n in cohort["not_replayable"].items()),
    ]
    budget = body["budget"]
    if budget["stopped"]:
        lines.append(f"budget: {budget['message']}")
    bench = body["benchmark"]
    lines.append("")
    lines.append(f"{'model':<28} {'rows':>6} {'score':>7} {'cost/row':>11} {'latency':>9}")
    for group in bench["groups"]:
        score = "-" if group["score"] is None else f"{group['score']:.3f}"
        latency = group.get("avg_task_duration_ms")
        lines.append(
            f"{group['key']!s:<28} {group['rows']:>6} {score:>7} "
            f"{_money(group['cost_per_row_usd']):>11} "
            f"{'-' if latency is None else f'{latency:.0f} ms':>9}"
        )
    lines.append(f"best overall: {bench['best_overall']}   best value: {bench['best_value']}")
    savings = bench.get("cost_savings")
    if savings and savings.get("per_1000_calls_usd") is not None:
        lines.append(f"cost savings per 1,000 calls: ${savings['per_1000_calls_usd']:.4f}")
    for model, comparison in body["compare"].items():
        lines.append("")
        lines.append(f"{model} vs recorded ({comparison['matched_rows']} matched calls)")
        for name, score in comparison["scores"].items():
            lines.append(
                f"  {name}: {score.get('baseline_mean')} → {score.get('candidate_mean')}  "
                f"+{score.get('improvements', 0)} -{score.get('regressions', 0)}  "
                f"p={score.get('p_value')}  {score.get('verdict')}"
            )
    lines.append("")
    lines.append(f"done in {seconds:.1f} s; spent {_money(budget['spent_usd'])}")
    return "\n".join(lines)
