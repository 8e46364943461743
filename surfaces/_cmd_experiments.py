"""``evalhouse experiments list|trend|show|trials|compare|benchmark|export`` and
``evalhouse compare``.

While ``evalhouse serve`` holds the embedded data directory, the commands ask its HTTP API;
otherwise they open the store (embedded, or ``--clickhouse``) and answer the same request
in-process with :func:`_api_experiments.answer` (the switch is ``_cli_common.served_or_store``).
Either way ``--json`` prints the API's JSON; without it, readable tables.

``compare --fail-on-regression`` exits 1 only when a chosen score (``--score``, default every
score) regressed significantly at ``--alpha``; it prints the verdict table either way. The
verdicts are the server's (``evaluators/results/_compare.py``), printed as they are. A pipe
closed early (``| head``) ends the command quietly (``surfaces/cli.py``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.errors import EvalhouseError, QueryError
from evalhouse.surfaces._cli_common import Commands, served_or_store, settings_from, store_flags

_SUFFIX = {"csv": "csv", "json": "json", "jsonl": "jsonl", "parquet": "parquet"}
_EXPORT_FORMATS = ("csv", "json", "jsonl", "parquet", "dataset", "trainloop")


def register(commands: Commands) -> None:
    experiments = commands.add_parser(
        "experiments", help="list, show, compare, benchmark and export experiments"
    )
    actions = experiments.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="experiments, newest first")
    _common(listing)
    listing.add_argument("--name", help="only runs of this experiment name")
    listing.add_argument("--dataset", help="only experiments on this dataset")
    listing.add_argument(
        "--meta",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only experiments whose metadata has KEY=VALUE (repeatable)",
    )
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    listing.add_argument("--offset", type=int, default=0, help="skip this many")
    listing.set_defaults(run=_list)

    trend = actions.add_parser("trend", help="successive runs of a name (or dataset), trends")
    _common(trend)
    trend.add_argument("name", nargs="?", help="experiment name")
    trend.add_argument("--dataset", help="runs on this dataset instead of one name")
    trend.set_defaults(run=_trend)

    show = actions.add_parser("show", help="one experiment: scores, metrics, cost, errors")
    _common(show)
    show.add_argument("experiment", help="experiment id, or name (its latest run)")
    show.add_argument("--group-by", help="dataset, experiment, trial or metadata.KEY")
    show.add_argument("--where", help="SQL filter on experiment_rows, e.g. \"error = ''\"")
    show.add_argument("--alpha", type=float, help="1 - confidence of the intervals (0.05)")
    show.set_defaults(run=_show)

    trials = actions.add_parser("trials", help="per input: scores across trials, flaky inputs")
    _common(trials)
    trials.add_argument("experiment", help="experiment id, or name (its latest run)")
    trials.add_argument("--flaky", action="store_true", help="only flaky inputs")
    trials.add_argument("--where", help="SQL filter on experiment_rows")
    trials.add_argument("--limit", type=int, default=50, help="at most this many inputs")
    trials.set_defaults(run=_trials)

    _compare_parser(actions.add_parser("compare", help=_COMPARE_HELP, description=_COMPARE_DOC))

    bench = actions.add_parser("benchmark", help="experiments of a dataset grouped by model")
    _common(bench)
    bench.add_argument("--dataset", required=True, help="dataset name")
    bench.add_argument(
        "--by", default="model", help="metadata key (model), or metadata.KEY / experiment"
    )
    bench.add_argument("--score", help="rank by this score (default: mean of all scores)")
    bench.add_argument("--trainloop", action="store_true", help="TrainLoop's benchmark JSON")
    bench.set_defaults(run=_benchmark)

    export = actions.add_parser("export", help="an experiment's rows as a file")
    store_flags(export)
    export.add_argument("experiment", help="experiment id, or name (its latest run)")
    export.add_argument(
        "--format",
        choices=_EXPORT_FORMATS,
        default="jsonl",
        help="csv, json, jsonl (default), parquet, dataset (re-pushable JSONL) or trainloop",
    )
    export.add_argument("--fields", help="comma-separated experiment_rows columns")
    export.add_argument("--where", help="SQL filter on experiment_rows")
    export.add_argument(
        "-o", "--output", help="file to write ('-' for stdout; default: NAME.FORMAT here)"
    )
    export.set_defaults(run=_export)

    _compare_parser(commands.add_parser("compare", help=_COMPARE_HELP, description=_COMPARE_DOC))


_COMPARE_HELP = "compare a candidate experiment with a baseline (paired statistics)"
_COMPARE_DOC = (
    "Compare CANDIDATE with BASELINE (an id pins a run; a name means its latest run whose rows "
    "did not all error); with only one experiment, the baseline is its previous such run of "
    "the same name (else dataset), and the output says which and why. Rows are matched by "
    "input (or --key), trials averaged per input, then compared pairwise: mean difference, "
    "confidence interval and p-value (paired t-test) per score and metric. A verdict is "
    "IMPROVED or REGRESSED only when significant at --alpha and, for metrics, at least the "
    "practical threshold (10%% and 50 ms for durations, 5%% for tokens and cost; settings "
    "compare_*): smaller changes are 'unchanged'. This verdict is the one 'evalhouse eval "
    "--baseline', the SDK and the web UI print. --fail-on-regression exits 1 only on a "
    "significant regression of the chosen scores."
)


def _common(parser: argparse.ArgumentParser) -> None:
    store_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _compare_parser(parser: argparse.ArgumentParser) -> None:
    _common(parser)
    parser.add_argument("experiments", nargs="+", metavar="EXPERIMENT", help="[BASELINE] CANDIDATE")
    parser.add_argument("--key", help="SQL expression matching rows (default: input hash)")
    parser.add_argument("--where", help="SQL filter on experiment_rows")
    parser.add_argument("--alpha", type=float, help="significance level (default 0.05)")
    parser.add_argument(
        "--score", action="append", default=[], help="score(s) the gate watches (repeatable)"
    )
    parser.add_argument(
        "--fail-on-regression",
        action="store_true",
        help="exit 1 when a chosen score regressed significantly",
    )
    parser.add_argument("--rows", type=int, default=5, help="rows shown, worst first (5)")
    parser.set_defaults(run=_compare)


# --- fetching -----------------------------------------------------------------------------


def _fetch(args: argparse.Namespace, name: str, path: Mapping[str, str], query: Any) -> Any:
    """The endpoint's answer, from the running server or straight from the store."""
    from evalhouse.surfaces._api_experiments import answer, endpoint_path

    params = {k: _text(v) for k, v in query.items() if v is not None and v != []}
    settings = settings_from(args)
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            url = endpoint_path(name, path)
            if name == "export":
                return target.request_bytes("GET", url, params=params, retries=2)
            return target.get(url, params)
        from evalhouse.evaluators.results import Results

        try:
            result = answer(Results.from_settings(target, settings), name, path, params)
        except QueryError as exc:
            if "experiment_rows" in str(exc) or "experiment_row_metrics" in str(exc):
                raise EvalhouseError(f"{exc}; create the schema with 'evalhouse migrate'") from exc
            raise
    return result.data if name == "export" else result


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return str(value)


def _print_json(body: Any) -> int:
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


# --- formatting ---------------------------------------------------------------------------


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return str(value)
    if abs(value) >= 1e5 or (value != 0 and abs(value) < 10 ** -(digits + 1)):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}"


def _usd(value: Any) -> str:
    return "unknown" if value is None else f"${value:.6f}"


def _cost_source(provenance: Mapping[str, int]) -> str:
    """Where a total cost comes from, from its rows' provenance counts: ``inferred``,
    ``provided+inferred``, ``no model calls``...

    >>> _cost_source({"provided": 0, "inferred": 4, "none": 1})
    'inferred'
    """
    kinds = [k for k in ("provided", "inferred", "partly_unknown", "unknown") if provenance.get(k)]
    if kinds:
        return "+".join(kind.replace("_", " ") for kind in kinds)
    return "no model calls" if provenance.get("none") else "-"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def _short(value: Any, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _scores_line(scores: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={_num(value)}" for name, value in scores.items()) or "-"


# --- commands -----------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    query: dict[str, Any] = {
        "name": args.name,
        "dataset": args.dataset,
        "limit": args.limit,
        "offset": args.offset,
    }
    for item in args.meta:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise EvalhouseError(f"--meta {item!r}: write KEY=VALUE, e.g. --meta model=gpt-4o")
        query[f"meta.{key}"] = value
    body = _fetch(args, "experiments", {}, query)
    if args.json:
        return _print_json(body)
    rows = [
        (
            (e["created_at"] or "")[:19].replace("T", " "),
            e["experiment_name"],
            e["experiment_id"],
            e["dataset_name"] or "-",
            e["rows"],
            e["errored_rows"],
            _scores_line(e["scores"]),
            _num(e["avg_task_duration_ms"], 1),
            _usd(e["total_cost_usd"]),
            _cost_source(e.get("cost_provenance") or {}),
        )
        for e in body["experiments"]
    ]
    header = (
        "created",
        "name",
        "id",
        "dataset",
        "rows",
        "errors",
        "scores",
        "avg ms",
        "cost",
        "cost source",
    )
    print(_table(header, rows))
    print(f"{len(rows)} of {body['total']} experiments")
    return 0


def _trend(args: argparse.Namespace) -> int:
    if bool(args.name) == bool(args.dataset):
        raise EvalhouseError("give an experiment NAME or --dataset DATASET (one of them)")
    body = _fetch(args, "trend", {}, {"name": args.name, "dataset": args.dataset})
    if args.json:
        return _print_json(body)
    rows = [
        (
            (r["created_at"] or "")[:19].replace("T", " "),
            r["experiment_id"],
            _scores_line(r["scores"]),
            _num(r["avg_task_duration_ms"], 1),
            _usd(r["avg_cost_usd"]),
            _cost_source(r.get("cost_provenance") or {}),
        )
        for r in body["runs"]
    ]
    print(_table(("created", "id", "scores", "avg ms", "cost/row", "cost source"), rows))
    for name, trend in body["trend"].items():
        change = "-" if trend["change"] is None else f"{trend['change']:+.4f}"
        print(f"  {name}: {trend['direction']} ({change} vs the previous run)")
    return 0


def _show(args: argparse.Namespace) -> int:
    query = {"group_by": _group(args.group_by), "where": args.where, "alpha": args.alpha}
    body = _fetch(args, "summary", {"id": args.experiment}, query)
    if args.json:
        return _print_json(body)
    e = body["experiment"]
    print(f"Experiment {e['experiment_name']} ({e['experiment_id']})")
    print(
        f"  created {e['created_at']}, dataset {e['dataset_name'] or '-'}, "
        f"{e['rows']} rows, {e['errored_rows']} errored"
        + (f"; {body['rows']} rows match the filter" if body.get("where") else "")
    )
    if e["metadata"]:
        print(f"  metadata {json.dumps(e['metadata'], ensure_ascii=False)}")
    print()
    print(_scores_table(body["scores"]))
    if body["scores"]:
        level = f"{(1 - body.get('alpha', 0.05)) * 100:g}%"
        print(
            f"Intervals: {level}, within [0, 1]; method per score: wilson (pass/fail scores), "
            "wilson_effective_n (continuous scores); see docs/results-api.md"
        )
    print()
    print(_metrics_table(body["metrics"]))
    cost = body["cost"]
    provenance = ", ".join(f"{k} {v}" for k, v in cost["provenance"].items() if v)
    print()
    print(
        f"Cost: total {_usd(cost['total_usd'])}, per row {_usd(cost['per_row_usd'])}, "
        f"judge {_usd(cost['judge_usd'])} ({provenance or 'no rows'}"
        + (f"; prices {cost['price_data_version']})" if cost["price_data_version"] else ")")
    )
    spans = body["spans"]
    print(
        f"Spans: {spans['received']} received, {spans['used']} used, {spans['orphans']} "
        f"orphans, {spans['late']} late"
    )
    print(f"Errors: {body['errors']['rows']} rows, {body['errors']['scorer_errors']} scorer")
    for group in (body.get("group_by") or {}).get("groups", []):
        print()
        print(f"Group {body['group_by']['by']} = {group['key']} ({group['rows']} rows)")
        print(_scores_table(group["scores"]))
    return 0


def _group(value: str | None) -> str | None:
    if value and value not in ("dataset", "experiment", "trial") and "." not in value:
        return f"metadata.{value}"
    return value


def _scores_table(scores: Mapping[str, Any]) -> str:
    rows = [
        (
            name,
            _num(s["mean"]),
            f"[{_num(s['ci_low'])}, {_num(s['ci_high'])}]",
            s.get("ci_method") or "-",
            _num(s["stddev"]),
            s["count"],
            s["errors"],
        )
        for name, s in scores.items()
    ]
    header = ("score", "mean", "interval", "method", "stddev", "count", "errors")
    return _table(header, rows)


def _metrics_table(metrics: Mapping[str, Any]) -> str:
    rows = [
        (name, _num(m["mean"], 2), _num(m["p50"], 2), _num(m["p95"], 2))
        for name, m in metrics.items()
    ]
    return _table(("metric", "mean", "p50", "p95"), rows)


def _trials(args: argparse.Namespace) -> int:
    query = {"flaky": args.flaky or None, "where": args.where, "limit": args.limit}
    body = _fetch(args, "trials", {"id": args.experiment}, query)
    if args.json:
        return _print_json(body)
    rows = [
        (
            i["row_id"],
            _short(i["input"], 30),
            i["trials"],
            "FLAKY" if i["flaky"] else "",
            ", ".join(
                f"{n}={_num(s['mean'])}±{_num(s['stddev'])} [{_num(s['min'])}, {_num(s['max'])}]"
                for n, s in i["scores"].items()
            ),
        )
        for i in body["inputs"]
    ]
    print(_table(("row", "input", "trials", "flaky", "scores: mean±sd [min, max]"), rows))
    matching = f" matching --where {args.where}" if args.where else ""
    print(f"{body['flaky']} flaky of {body['total']} inputs{matching}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    if len(args.experiments) > 2:
        raise EvalhouseError("give BASELINE CANDIDATE, or only CANDIDATE (baseline: its last run)")
    baseline, candidate = (
        (None, args.experiments[0]) if len(args.experiments) == 1 else args.experiments
    )
    query = {
        "candidate": candidate,
        "baseline": baseline,
        "key": args.key,
        "where": args.where,
        "alpha": args.alpha,
        "score": args.score[0] if args.score else None,
        "limit": max(args.rows, 1),
    }
    body = _fetch(args, "compare", {}, query)
    if args.json:
        _print_json(body)
    else:
        _print_comparison(body, args.rows)
    if not args.fail_on_regression:
        return 0
    watched = args.score or [n for n, s in body["scores"].items() if not s.get("missing")]
    missing = [name for name in watched if name not in body["scores"]]
    if missing:
        raise EvalhouseError(
            f"no matched rows carry score {', '.join(map(repr, missing))}; scores compared: "
            f"{', '.join(body['scores']) or 'none'}"
        )
    uncompared = [
        f"{n} ({body['scores'][n]['missing']})" for n in watched if body["scores"][n].get("missing")
    ]
    if uncompared:
        raise EvalhouseError(f"cannot check score {'; '.join(uncompared)}")
    regressed = [name for name in watched if body["scores"][name]["verdict"] == "regressed"]
    if regressed:
        print(
            f"evalhouse compare: significant regression of {', '.join(regressed)} "
            f"(alpha {body['alpha']})",
            file=sys.stderr,
        )
        return 1
    return 0


def _verdict(c: Mapping[str, Any]) -> str:
    if c.get("missing"):
        return "not compared"
    verdict = str(c["verdict"])
    return verdict.upper() if verdict in ("regressed", "improved") else verdict


def _comparison_rows(items: Mapping[str, Any], *, metrics: bool) -> list[tuple[Any, ...]]:
    return [
        (
            name,
            _num(c["baseline_mean"]),
            _num(c["candidate_mean"]),
            "-" if c["diff"] is None else f"{c['diff']:+.4g}",
            f"[{_num(c['ci_low'], 4)}, {_num(c['ci_high'], 4)}]",
            _num(c["p_value"], 4),
            f"{c['improvements']}/{c['regressions']}/{c['unchanged']}",
            *((_num(c["min_change"], 4),) if metrics else ()),
            _verdict(c),
        )
        for name, c in items.items()
    ]


def _missing_lines(items: Mapping[str, Any]) -> list[str]:
    return [f"  {name}: {c['missing']}" for name, c in items.items() if c.get("missing")]


def _print_comparison(body: Mapping[str, Any], shown: int) -> None:
    b, c = body["baseline"], body["candidate"]
    print(
        f"Baseline  {b['experiment_name']} ({b['experiment_id']}, {b['rows']} rows): "
        f"{body.get('baseline_reason') or 'given'}\n"
        f"Candidate {c['experiment_name']} ({c['experiment_id']}, {c['rows']} rows)"
    )
    unmatched = body["unmatched"]
    print(
        f"Matched {body['matched_rows']} keys by {body['key']}; unmatched: "
        f"{unmatched['baseline']} baseline only, {unmatched['candidate']} candidate only; "
        f"alpha {body['alpha']}"
    )
    header = ("", "baseline", "candidate", "diff", "interval", "p", "+/-/=", "verdict")
    print()
    print(_table(("score", *header[1:]), _comparison_rows(body["scores"], metrics=False)))
    for line in _missing_lines(body["scores"]):
        print(line)
    print()
    metric_header = ("metric", *header[1:-1], "min change", "verdict")
    print(_table(metric_header, _comparison_rows(body["metrics"], metrics=True)))
    for line in _missing_lines(body["metrics"]):
        print(line)
    print(
        f"Cost source: baseline {_cost_source(b.get('cost_provenance') or {})}, "
        f"candidate {_cost_source(c.get('cost_provenance') or {})}"
    )
    print(
        "A metric counts as improved or regressed only when significant and at least its min "
        "change (practical thresholds: evalhouse.toml compare_*)."
    )
    worst = [row for row in body["rows"][:shown] if row["diffs"]]
    if worst:
        print()
        print("Largest regressions first:")
        rows = [
            (
                _short(row["baseline"]["input"] if row["baseline"] else row["key"], 30),
                _short(row["baseline"]["output"], 25) if row["baseline"] else "-",
                _short(row["candidate"]["output"], 25) if row["candidate"] else "-",
                ", ".join(f"{k} {v:+.3g}" for k, v in row["diffs"].items()),
            )
            for row in worst
        ]
        print(_table(("input", "baseline output", "candidate output", "diffs"), rows))


def _benchmark(args: argparse.Namespace) -> int:
    by = args.by if "." in args.by or args.by in ("experiment", "trial") else f"metadata.{args.by}"
    query = {
        "dataset": args.dataset,
        "by": by,
        "score": args.score,
        "layout": "trainloop" if args.trainloop else None,
    }
    body = _fetch(args, "benchmark", {}, query)
    if args.json or args.trainloop:
        return _print_json(body)
    rows = [
        (
            g["key"] if g["key"] is not None else "(none)",
            g["experiments"],
            g["rows"],
            _num(g["score"]),
            _usd(g["cost_total_usd"]),
            _usd(g["cost_per_row_usd"]),
            _cost_source(g.get("cost_provenance") or {}),
            _num(g["avg_task_duration_ms"], 1),
            g["total_tokens"],
        )
        for g in body["groups"]
    ]
    header = (
        "group",
        "experiments",
        "rows",
        "score",
        "cost",
        "cost/row",
        "cost source",
        "avg ms",
        "tokens",
    )
    print(_table(header, rows))
    for g in body["groups"]:
        if g.get("cost_missing"):
            print(f"  cost of {g['key']}: unknown ({g['cost_missing']})")
    versions = sorted(
        {g["price_data_version"] for g in body["groups"] if g.get("price_data_version")}
    )
    if versions:
        print(f"Inferred costs priced with {', '.join(versions)}")
    print(f"Best overall: {body['best_overall']}; best value (score per $): {body['best_value']}")
    savings = body["cost_savings"]
    if savings:
        print(
            f"Choosing {savings['best_value']} over {savings['best_overall']} saves "
            f"{_usd(savings['per_row_usd'])} per row ({_num((savings['fraction'] or 0) * 100, 1)}"
            f"%) for a score change of {_num(savings['score_difference'])}"
        )
    return 0


def _export(args: argparse.Namespace) -> int:
    path = {"id": args.experiment}
    if args.format == "trainloop":
        data = json.dumps(_fetch(args, "trainloop", path, {}), indent=2).encode() + b"\n"
        suffix = "trainloop.json"
    else:
        fields = args.fields.split(",") if args.fields else None
        query = {"format": args.format, "fields": fields, "where": args.where}
        data = _fetch(args, "export", path, query)
        suffix = _SUFFIX.get(args.format, "dataset.jsonl")
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return 0
    target = Path(args.output or f"{re.sub(r'[^A-Za-z0-9._-]+', '_', args.experiment)}.{suffix}")
    target.write_bytes(data)
    print(f"wrote {len(data)} bytes to {target}", file=sys.stderr)
    return 0
