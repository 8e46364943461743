"""``experiment_traces`` (migration 9): which traces hold experiment rows, in every dialect,
whoever wrote the spans and whenever (spans stored before the migration included)."""

from __future__ import annotations

import json

from conftest import wait_for
from test_evaluator_spans import Trace, eval_root, evaluate, rows, write

from evalhouse.store import MIGRATIONS, Store, Topology, migrate
from evalhouse.store._migrations import ledger


def _indexed(store: Store) -> set[str]:
    return {row[0] for row in store.query("SELECT DISTINCT TraceId FROM experiment_traces")}


def _dialect_traces() -> tuple[list[Trace], list[Trace]]:
    """(experiment traces, one per dialect; traces of no experiment)."""
    evalhouse_row = Trace()
    eval_root(evalhouse_row)
    langfuse = Trace()
    langfuse.add("item", {"langfuse.experiment.name": "lf-exp", "langfuse.experiment.id": "e"})
    braintrust_parent = Trace()
    braintrust_parent.add("row", {"braintrust.parent": "experiment_id:bt-1"})
    braintrust_type = Trace()
    braintrust_type.add("row", {"braintrust.span_attributes": json.dumps({"type": "eval"})})
    production = Trace()
    production.add("chat gpt-4o", {"gen_ai.operation.name": "chat"})
    project_log = Trace()
    project_log.add("log", {"braintrust.parent": "project_id:p-1"})
    task_only = Trace()  # a task span alone names no experiment
    task_only.add("task", {"evalhouse.span.purpose": "task"})
    return (
        [evalhouse_row, langfuse, braintrust_parent, braintrust_type],
        [production, project_log, task_only],
    )


def test_every_dialect_marks_its_trace_and_nothing_else_does(store: Store) -> None:
    experiments, others = _dialect_traces()
    write(store, *experiments, *others)
    assert _indexed(store) == {t.hex for t in experiments}


def test_a_child_without_experiment_attributes_is_found_through_its_trace(store: Store) -> None:
    t = Trace()
    root = eval_root(t)
    chat = t.add(
        "chat",
        {"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 7},
        parent=root,
        at_ms=1,
    )
    write(store, t, only={root})
    evaluate(store)
    assert rows(store)[t.hex]["input_tokens"] == 0
    write(store, t, only={chat})  # names no experiment: only the index ties it to one
    assert _indexed(store) == {t.hex}
    evaluate(store)
    wait_for(lambda: rows(store)[t.hex]["input_tokens"] == 7)


def test_the_migration_indexes_spans_stored_before_it(bare_store: Store) -> None:
    bare_store.command(ledger(Topology()))
    earlier = [m for m in MIGRATIONS if m.version < 9]
    for migration in earlier:
        for statement in migration.statements(Topology()):
            bare_store.command(statement)
    bare_store.insert_rows(
        "evalhouse_migrations", [(m.version, m.name) for m in earlier], ["version", "name"]
    )
    experiments, others = _dialect_traces()
    write(bare_store, *experiments, *others)
    assert migrate(bare_store) == [m.version for m in MIGRATIONS if m.version >= 9]
    assert _indexed(bare_store) == {t.hex for t in experiments}
    late = Trace()
    eval_root(late)
    write(bare_store, late)  # and the view indexes what comes after
    assert _indexed(bare_store) == {t.hex for t in [*experiments, late]}
