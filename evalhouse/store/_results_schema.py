"""DDL of migration 8: what users need to write their own experiment comparisons in SQL.

- ``INPUT_KEY``: the default comparison key of an experiment row, a hash of the canonical JSON
  of its input (keys sorted, whitespace dropped; through ClickHouse's JSON type, so null-valued
  keys and empty objects do not count either), or ``row:<row_id>`` for a row without input.
  Trials of one input share it, and so do reruns of a dataset, whatever JSON encoder wrote it.
- column ``experiment_row_metrics.input_key`` (``MATERIALIZED`` from ``INPUT_KEY``).
- view ``experiment_row_scores``: one line per experiment row x score with a value, with the
  row's ``input_key``, so a paired comparison is a self-join on (``input_key``, ``name``)
  (examples in ``docs/sql.md``).

The views of migration 6 stay as they are; the column is added next to the daemon's columns
(a materialized column is not part of ``SELECT *`` nor of inserts, so the daemon is unaffected).
"""

from __future__ import annotations

from evalhouse.store._schema import Topology

__all__ = ["INPUT_KEY", "input_key", "results_views"]


def input_key(input_column: str = "input", row_id_column: str = "row_id") -> str:
    """The SQL expression of an experiment row's comparison key, over the named columns.

    Text that is not JSON is keyed as a JSON string, so plain-text inputs (other dialects'
    ``input.value``) match too.
    """
    canonical = (
        f"toJSONString(CAST(concat('{{\"v\":', if(isValidJSON({input_column}), {input_column}, "
        f"toJSONString({input_column})), '}}'), 'JSON'))"
    )
    return (
        f"if({input_column} IN ('', 'null'), concat('row:', {row_id_column}), "
        f"lower(hex(cityHash64({canonical}))))"
    )


INPUT_KEY = input_key()


def results_views(topology: Topology) -> list[str]:
    """Every statement of migration 8; each is safe to run twice."""
    on = topology.on_cluster
    return [
        # Computed once when the daemon writes a row (parsing JSON costs ~5 us a row, too much
        # to repeat on every comparison); rows written before this migration compute it when
        # read, with the same value. On a cluster: on the local and the Distributed table.
        *topology.on_both(
            "experiment_row_metrics",
            f"ADD COLUMN IF NOT EXISTS input_key String MATERIALIZED {INPUT_KEY} "
            "COMMENT 'Comparison key: hash of the canonical input JSON.'",
        ),
        f"""CREATE VIEW IF NOT EXISTS experiment_row_scores{on} AS
SELECT
    experiment_id,
    experiment_name,
    dataset_name,
    row_id,
    trial,
    trace_id,
    {INPUT_KEY} AS input_key,
    name,
    value
FROM experiment_rows
ARRAY JOIN mapKeys(scores) AS name, mapValues(scores) AS value""",
    ]
