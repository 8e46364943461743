"""``evalhouse rules add|edit|list|show|estimate|backfill|disable|export``.

While ``evalhouse serve`` owns the data directory the commands ask its HTTP API; otherwise
they open the store and call the same :class:`evalhouse.online.Rules` methods
(``_cli_common.served_or_store``), so both ways print the same answer. ``--json`` prints the
API's JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evalhouse.api_client import ApiClient
from evalhouse.errors import InvalidRequest
from evalhouse.surfaces._cli_common import Commands, served_or_store, settings_from, store_flags

__all__ = ["register"]


def register(commands: Commands) -> None:
    rules = commands.add_parser("rules", help="online evaluation rules: score live traffic")
    actions = rules.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = actions.add_parser("add", help="a new rule (version 1)")
    _common(add)
    add.add_argument("name", help="rule name")
    _fields(add, adding=True)
    add.set_defaults(run=_add)

    edit = actions.add_parser("edit", help="a new version of a rule: the fields given change")
    _common(edit)
    edit.add_argument("name")
    _fields(edit, adding=False)
    edit.add_argument("--enable", action="store_true", help="turn a disabled rule on again")
    edit.set_defaults(run=_edit)

    listing = actions.add_parser("list", help="every rule with its headline counts")
    _common(listing)
    listing.set_defaults(run=_list)

    show = actions.add_parser("show", help="a rule, its status, versions and backfills")
    _common(show)
    show.add_argument("name")
    show.set_defaults(run=_show)

    estimate = actions.add_parser(
        "estimate", help="what the rule would score and cost on past traffic (spends nothing)"
    )
    _common(estimate)
    estimate.add_argument("name")
    _window(estimate)
    estimate.set_defaults(run=_estimate)

    backfill = actions.add_parser("backfill", help="score the rule's past targets (within budget)")
    _common(backfill)
    backfill.add_argument("name")
    _window(backfill)
    backfill.add_argument(
        "--wait", action="store_true", help="wait until the evaluator has gone through it"
    )
    backfill.set_defaults(run=_backfill)

    disable = actions.add_parser("disable", help="stop scoring with a rule (its scores stay)")
    _common(disable)
    disable.add_argument("name")
    disable.set_defaults(run=_disable)

    export = actions.add_parser("export", help="the rule's scores as a TrainLoop suite")
    _common(export)
    export.add_argument("name")
    export.add_argument("--format", choices=("trainloop",), default="trainloop")
    _window(export)
    export.add_argument("--pass-threshold", type=float, help="score that passes (default 0.5)")
    export.add_argument(
        "--out",
        type=Path,
        help="directory for evaluation_results_<time>.json (default: print to stdout)",
    )
    export.set_defaults(run=_export)


def _common(parser: argparse.ArgumentParser) -> None:
    store_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _window(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", help="ISO time or relative: 1h, 7d (default 7d)")
    parser.add_argument("--until", help="ISO time or relative (default now)")


def _fields(parser: argparse.ArgumentParser, *, adding: bool) -> None:
    parser.add_argument("--scope", choices=("span", "trace", "session"))
    parser.add_argument("--filter", help="explorer filter, e.g. 'tag:support -status:error'")
    parser.add_argument("--where", help="SQL boolean over the scope's columns")
    parser.add_argument("--sample", type=float, help="fraction of targets scored, 0 to 1")
    parser.add_argument(
        "--scorer",
        action="append",
        required=adding,
        help="scorer name (repeat for several); options as JSON after it: "
        '\'llm_judge:helpfulness{"model":"gpt-4o-mini"}\'',
    )
    parser.add_argument(
        "--map",
        action="append",
        metavar="FIELD=SOURCE",
        help="input/output/expected/metadata from an attribute or root, span, messages, none",
    )
    parser.add_argument("--budget-usd", type=float, help="judge spend cap per UTC day")
    parser.add_argument("--delay", type=float, help="quiet period in seconds")
    parser.add_argument("--disabled", action="store_true", help="save it without scoring")


def _scorer(text: str) -> str | dict[str, Any]:
    spec, brace, rest = text.partition("{")
    if not brace:
        return text
    try:
        options = json.loads(brace + rest)
    except ValueError:
        raise InvalidRequest(
            f"--scorer {text!r}: the options after the name are not JSON"
        ) from None
    return {"name": spec, "options": options}


def _body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("scope", "filter", "where", "sample"):
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    if args.scorer:
        body["scorers"] = [_scorer(s) for s in args.scorer]
    if args.map:
        mapping = {}
        for item in args.map:
            field, sep, source = item.partition("=")
            if not sep:
                raise InvalidRequest(f"--map {item!r}: write FIELD=SOURCE, e.g. output=answer.text")
            mapping[field.strip()] = source.strip()
        body["mapping"] = mapping
    if args.budget_usd is not None:
        body["budget_usd_per_day"] = args.budget_usd
    if args.delay is not None:
        body["delay_s"] = args.delay
    if args.disabled:
        body["enabled"] = False
    return body


def _path(name: str, action: str = "") -> str:
    return f"/api/rules/{urllib.parse.quote(name, safe='')}" + (f"/{action}" if action else "")


def _call(
    args: argparse.Namespace,
    remote: Callable[[ApiClient], Any],
    local: Callable[[Any], Any],
) -> Any:
    """The answer from the running server's API, or from the service on a store opened here."""
    settings = settings_from(args)
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            return remote(target)
        from evalhouse.online import Rules

        return local(Rules(target, settings))


def _window_params(args: argparse.Namespace) -> dict[str, str]:
    return {k: v for k in ("since", "until") if (v := getattr(args, k, None))}


def _add(args: argparse.Namespace) -> int:
    body = {"name": args.name, **_body(args)}
    rule = _call(args, lambda c: c.post("/api/rules", body), lambda r: r.create(body))
    return _print_rule(args, rule, "saved")


def _edit(args: argparse.Namespace) -> int:
    body = _body(args)
    if args.enable:
        body["enabled"] = True
    if not body:
        raise InvalidRequest("nothing to change: give at least one field (see --help)")
    rule = _call(
        args,
        lambda c: c.request("PUT", _path(args.name), json_body=body),
        lambda r: r.update(args.name, body),
    )
    return _print_rule(args, rule, "saved")


def _print_rule(args: argparse.Namespace, rule: dict[str, Any], verb: str) -> int:
    if args.json:
        return _print_json(rule)
    state = "enabled" if rule["enabled"] else "disabled"
    print(f"rule {rule['name']} version {rule['version']} {verb} ({state})")
    return 0


def _list(args: argparse.Namespace) -> int:
    body = _call(args, lambda c: c.get("/api/rules"), lambda r: r.list())
    if args.json:
        return _print_json(body)
    header = ("name", "ver", "scope", "sample", "on", "matched", "scored", "pending", "spend $")
    rows = [
        (
            r["name"],
            str(r["version"]),
            r["scope"],
            f"{r['sample']:g}",
            "yes" if r["enabled"] else "no",
            str(r["status"]["matched"]),
            str(r["status"]["scored"]),
            str(r["status"]["pending"]),
            f"{r['status']['spend_today_usd']:.4f}",
        )
        for r in body["rules"]
    ]
    _table(header, rows)
    return 0


def _show(args: argparse.Namespace) -> int:
    body = _call(args, lambda c: c.get(_path(args.name)), lambda r: r.get(args.name))
    if args.json:
        return _print_json(body)
    s = body["status"]
    scorers = ", ".join(x if isinstance(x, str) else x["name"] for x in body["scorers"])
    print(
        f"rule {body['name']} v{body['version']} ({'enabled' if body['enabled'] else 'disabled'})"
    )
    print(f"  scope {body['scope']}, sample {body['sample']:g}, delay {body['delay_s']:g} s")
    print(f"  filter {body['filter'] or '-'}; where {body['where'] or '-'}")
    print(f"  scorers {scorers}")
    budget = body["budget_usd_per_day"]
    print(
        f"  spend today ${s['spend_today_usd']:.4f}"
        + (f" of ${budget:g}" if budget is not None else " (no budget)")
        + f", {s['judge_calls_today']} judge calls"
    )
    skipped = ", ".join(f"{k} {v}" for k, v in s["skipped"].items())
    print(
        f"  matched {s['matched']}: sampled {s['sampled']}, sampled out {s['sampled_out']}; "
        f"scored {s['scored']}, pending {s['pending']}, skipped: {skipped}"
    )
    lag = s["lag_seconds"]
    if lag["targets"]:
        print(f"  lag p50 {lag['p50']:g} s, p95 {lag['p95']:g} s (last day, {lag['targets']})")
    print(
        f"  scorer errors {s['scorer_errors']}; late spans {s['late_spans']} on "
        f"{s['late_targets']} targets"
    )
    for backfill in body["backfills"]:
        done = "done" if backfill["done"] else f"{backfill['shards_done']}/{backfill['shards']}"
        print(f"  backfill {backfill['id']} {backfill['since']} .. {backfill['until']}: {done}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    params = _window_params(args)
    body = _call(
        args,
        lambda c: c.request("POST", _path(args.name, "estimate"), params=params),
        lambda r: r.estimate(args.name, params),
    )
    if args.json:
        return _print_json(body)
    cost = body["estimated_cost_usd"]
    print(
        f"rule {body['rule']} v{body['version']} from {body['since']}: {body['targets']} "
        f"targets, {body['sampled']} sampled, {body['judge_calls']} judge calls, "
        f"~{body['estimated_input_tokens']} input + ~{body['estimated_output_tokens']} output "
        "tokens, " + (f"~${cost:.4f}" if cost is not None else "cost unknown (unpriced model)")
    )
    if body["unpriced_scorers"]:
        print(f"  not priced: {', '.join(body['unpriced_scorers'])}")
    return 0


def _backfill(args: argparse.Namespace) -> int:
    params = _window_params(args)
    body = _call(
        args,
        lambda c: c.request("POST", _path(args.name, "backfill"), params=params),
        lambda r: r.backfill(args.name, params),
    )
    if args.json and not args.wait:
        return _print_json(body)
    print(
        f"backfill {body['backfill_id']} of rule {body['rule']} v{body['version']} queued: "
        f"{body['since']} .. {body['until']}; the evaluator (serve or 'evalhouse evaluator') "
        "scores it"
    )
    if args.wait:
        while True:
            shown = _call(args, lambda c: c.get(_path(args.name)), lambda r: r.get(args.name))
            found = [b for b in shown["backfills"] if b["id"] == body["backfill_id"]]
            if found and found[0]["done"]:
                break
            time.sleep(1.0)
        print(f"backfill {body['backfill_id']} done: scored {shown['status']['scored']} targets")
    return 0


def _disable(args: argparse.Namespace) -> int:
    rule = _call(
        args, lambda c: c.request("DELETE", _path(args.name)), lambda r: r.disable(args.name)
    )
    return _print_rule(args, rule, "disabled:")


def _export(args: argparse.Namespace) -> int:
    from evalhouse.online import trainloop_suite

    params = _window_params(args)
    if args.pass_threshold is not None:
        params["pass_threshold"] = str(args.pass_threshold)
    settings = settings_from(args)
    with served_or_store(settings) as target:
        if isinstance(target, ApiClient):
            body = target.get(_path(args.name, "export"), {"format": args.format, **params})
        else:
            body = trainloop_suite(target, args.name, params)
    text = json.dumps(body, indent=2) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
    path = args.out / f"evaluation_results_{stamp}.json"
    path.write_text(text)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def _print_json(body: Any) -> int:
    print(json.dumps(body, indent=2))
    return 0


def _table(header: tuple[str, ...], rows: Sequence[Sequence[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)
    ]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
