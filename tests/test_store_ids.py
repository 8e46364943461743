"""``in_ids``: long id lists as a query parameter (the summarizer's and the rules' lookups)."""

from __future__ import annotations

from evalhouse.store import Store, in_ids


def test_a_list_of_30000_ids_selects_exactly_those_rows(store: Store) -> None:
    # Past 25,000 ids the literal form took 5 s on the embedded engine (evalhouse/store/_client.py).
    ids = [str(n) for n in range(0, 60_000, 2)]
    [(count, low, high)] = store.query(
        "SELECT count(), min(toUInt64(id)), max(toUInt64(id)) FROM "
        f"(SELECT toString(number) AS id FROM numbers(40000)) WHERE {in_ids('id', 'ids')}",
        {"ids": ids},
    )
    assert (count, low, high) == (20_000, 0, 39_998)
    assert store.query(
        f"SELECT count() FROM numbers(3) WHERE {in_ids('toString(number)', 'ids')}", {"ids": []}
    ) == [(0,)]
