"""``compare``: the server's paired comparison of two experiments, from the app side.

Calls ``GET /api/compare`` through the SDK's API client (no store, no server extras); the
answer has the stable keys of ``evalhouse compare --json`` (docs/results-api.md).

>>> body = compare("exp-candidate", "exp-baseline")                  # doctest: +SKIP
>>> body["scores"]["accuracy"]["verdict"]
'no significant change'
"""

from __future__ import annotations

from typing import Any

from evalhouse.instrumentation._settings import api_client

__all__ = ["compare"]


def compare(
    candidate_id: str,
    baseline: str | None = None,
    *,
    api_url: str | None = None,
    api_key: str | None = None,
    key: str | None = None,
    where: str | None = None,
    alpha: float | None = None,
    score: str | None = None,
    limit: int | None = None,
) -> dict[str, Any]:
    """Compare experiment ``candidate_id`` with ``baseline`` (an id or name; default: the
    candidate's previous run of the same name, else of the same dataset).

    ``key`` matches rows by a SQL expression instead of the input, ``where`` filters rows,
    ``alpha`` is the significance level, ``score`` orders the rows by that score's change,
    ``limit`` caps the rows returned. Raises :class:`~evalhouse.EvalhouseError` with the
    server's message when the comparison cannot be made.
    """
    params: dict[str, Any] = {
        "candidate": candidate_id,
        "baseline": baseline,
        "key": key,
        "where": where,
        "alpha": alpha,
        "score": score,
        "limit": limit,
    }
    body: dict[str, Any] = api_client(api_url, api_key).get("/api/compare", params)
    return body
