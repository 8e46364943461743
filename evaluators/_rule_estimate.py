"""What a rule would cost on past traffic, before it spends anything
(``POST /api/rules/{name}/estimate?since=7d``).

The targets the rule matched in the window (the daemon's filter, ``where`` and scope), the
ones its sample keeps (the same hash), and per LLM judge: its rubric prompt plus the values it
would be given, counted from the tokens stored on the targets' model calls (a trace: its first
call's input, its last call's output; a span: its own), priced at the judge model's price
(:mod:`._rule_cost`). Scorers that are not evalhouse LLM judges cost nothing here; judges
whose prompt evalhouse cannot see (``autoevals:``, ``module:function``) are listed as
``unpriced_scorers``.
"""

from __future__ import annotations

from typing import Any

from evalhouse.evaluators._online import compile_filter
from evalhouse.evaluators._rule_cost import CHARS_PER_TOKEN, judge_plan
from evalhouse.evaluators._rule_targets import span_condition
from evalhouse.evaluators._rules import StoredRule, sample_params, sampled_sql
from evalhouse.evaluators._scorer_refs import ScorerRef
from evalhouse.store import Store

__all__ = ["estimate_rule"]

_WINDOW = (
    "start_time >= fromUnixTimestamp64Nano({start:Int64}, 'UTC') "
    "AND start_time < fromUnixTimestamp64Nano({end:Int64}, 'UTC')"
)
_TRACES = """
SELECT count() AS targets, countIf(sampled) AS kept,
    sumIf(input_tokens, sampled) AS value_input, sumIf(output_tokens, sampled) AS value_output
FROM (
    SELECT {sampled} AS sampled,
        if(length(calls.input_tokens) > 0, calls.input_tokens[1],
           intDiv(length(input_preview), {chars})) AS input_tokens,
        if(length(calls.output_tokens) > 0, calls.output_tokens[-1],
           intDiv(length(output_preview), {chars})) AS output_tokens
    FROM trace_summaries FINAL
    WHERE {window} AND kind = 'production' AND ({filter}) AND ({where})
)"""
_SPANS = """
SELECT count() AS targets, countIf(sampled) AS kept,
    sumIf(InputTokens, sampled) AS value_input, sumIf(OutputTokens, sampled) AS value_output
FROM (
    SELECT {sampled} AS sampled, InputTokens, OutputTokens
    FROM otel_traces
    WHERE Timestamp >= fromUnixTimestamp64Nano({{start:Int64}}, 'UTC')
      AND Timestamp < fromUnixTimestamp64Nano({{end:Int64}}, 'UTC')
      AND ({condition}) AND Purpose = '' AND ExperimentId = ''
      AND ScopeName != 'evalhouse.evaluator'
      AND {traces}
    LIMIT 1 BY TraceId, SpanId
)"""
_SESSIONS = """
SELECT count() AS targets, countIf(sampled) AS kept,
    sumIf(input_tokens, sampled) AS value_input, sumIf(output_tokens, sampled) AS value_output
FROM (
    SELECT session_id, {sampled} AS sampled,
        toUInt64(intDiv(sum(length(input_preview) + length(output_preview)), {chars}))
            AS input_tokens,
        toUInt64(intDiv(length(argMax(output_preview, start_time)), {chars})) AS output_tokens
    FROM trace_summaries FINAL
    WHERE {window} AND session_id != ''
    GROUP BY session_id
    HAVING countIf(kind = 'production' AND ({filter}) AND ({where})) > 0
)"""


def estimate_rule(store: Store, rule: StoredRule, *, start_ns: int, end_ns: int) -> dict[str, Any]:
    """The estimate's JSON for ``rule`` on the traffic of ``[start_ns, end_ns)``.

    >>> estimate_rule(store, rule, start_ns=week_ago, end_ns=now)["estimated_cost_usd"]
    ... # doctest: +SKIP
    0.42
    """
    filter_sql, filter_params = compile_filter(rule)
    where = f"({rule.where})" if rule.where and rule.scope != "span" else "1"
    params: dict[str, Any] = {
        "rule": rule.name,
        "start": start_ns,
        "end": end_ns,
        **sample_params(rule),
        **filter_params,
    }
    if rule.scope == "trace":
        sql = _TRACES.format(
            sampled=sampled_sql("trace_id"),
            chars=CHARS_PER_TOKEN,
            window=_WINDOW,
            filter=filter_sql,
            where=where,
        )
    elif rule.scope == "span":
        traces = "1"
        if rule.filter:
            traces = (
                "TraceId IN (SELECT trace_id FROM trace_summaries FINAL WHERE "
                f"start_time >= fromUnixTimestamp64Nano({{start:Int64}}, 'UTC') - INTERVAL 1 DAY "
                f"AND kind = 'production' AND ({filter_sql}))"
            )
        sql = _SPANS.format(
            sampled=sampled_sql("concat(TraceId, ':', SpanId)"),
            condition=span_condition(rule),
            traces=traces,
        )
    else:
        sql = _SESSIONS.format(
            sampled=sampled_sql("session_id"),
            chars=CHARS_PER_TOKEN,
            window=_WINDOW,
            filter=filter_sql,
            where=where,
        )
    row = store.query_dicts(sql, params)[0]
    sampled = int(row["kept"])
    value_tokens = int(row["value_input"] or 0) + int(row["value_output"] or 0)
    calls = tokens_in = tokens_out = 0
    cost: float | None = 0.0
    unpriced: list[str] = []
    judges: list[dict[str, Any]] = []
    for scorer_id in rule.scorers:
        plan = judge_plan(scorer_id)
        if plan is None:
            if _llm_scorer(scorer_id):
                unpriced.append(scorer_id)
            continue
        judge_in = sampled * plan.prompt_tokens + value_tokens
        judge_out = sampled * plan.output_tokens
        usd = plan.usd(judge_in, judge_out) if sampled else 0.0
        calls += sampled
        tokens_in += judge_in
        tokens_out += judge_out
        cost = None if cost is None or usd is None else cost + usd
        judges.append(
            {
                "scorer": scorer_id,
                "model": plan.model,
                "calls": sampled,
                "input_tokens": judge_in,
                "output_tokens": judge_out,
                "cost_usd": usd,
                "prompt_tokens_per_call": plan.prompt_tokens,
                "output_tokens_per_call": plan.output_tokens,
            }
        )
    return {
        "targets": int(row["targets"]),
        "sampled": sampled,
        "judge_calls": calls,
        "estimated_input_tokens": tokens_in,
        "estimated_output_tokens": tokens_out,
        "estimated_cost_usd": cost,
        "judges": judges,
        "unpriced_scorers": unpriced,
        "assumptions": (
            f"{CHARS_PER_TOKEN} characters a token for the rubric prompt; the targets' stored "
            "tokens for their values; the judge model's price from the bundled genai-prices "
            "data"
        ),
    }


def _llm_scorer(scorer_id: str) -> bool:
    """A scorer that may call a model evalhouse cannot price (an autoevals LLM classifier,
    a user's function): everything but the built-in heuristics."""
    from evalhouse.evaluators.scorers import BUILTIN_SCORERS

    spec = ScorerRef.from_id(scorer_id).spec
    return spec not in BUILTIN_SCORERS
