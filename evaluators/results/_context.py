"""What every results answer reads besides its own parameters: the store, the aggregate
scores, the default significance level and the practical thresholds of metrics.

Each results function takes this as its first argument; :class:`~._results.Results` is this
class with those functions as its methods, so a method and the HTTP route bound to it are the
same function with one signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Self

from evalhouse.config import AggregateScore, Settings
from evalhouse.errors import InvalidRequest
from evalhouse.evaluators.results._thresholds import Thresholds
from evalhouse.store import Store

__all__ = ["Context"]


class Context:
    """The store and the settings a results answer depends on.

    >>> Context(store, alpha=0.1).significance(None)               # doctest: +SKIP
    0.1
    """

    def __init__(
        self,
        store: Store,
        aggregates: Mapping[str, AggregateScore] | None = None,
        *,
        alpha: float = 0.05,
        thresholds: Thresholds | None = None,
    ) -> None:
        self.store = store
        self.aggregates = dict(aggregates or {})
        self.alpha = self.significance(alpha)
        self.thresholds = thresholds or Thresholds()

    @classmethod
    def from_settings(cls, store: Store, settings: Settings) -> Self:
        """The context of ``store`` with the settings' aggregate scores, significance level
        and practical thresholds (the API and the CLI's direct mode build it this way)."""
        return cls(
            store,
            settings.aggregate_scores,
            alpha=settings.compare_alpha,
            thresholds=Thresholds.from_settings(settings),
        )

    def significance(self, alpha: float | None) -> float:
        """``alpha`` when given, else the default. 0 and 1 are refused, not replaced: at 0 no
        interval is finite, at 1 every difference would be significant.

        >>> Context(store).significance(0)                          # doctest: +SKIP
        InvalidRequest: alpha=0: the significance level must be in (0, 1), e.g. 0.05
        """
        if alpha is None:
            return self.alpha
        if not 0 < alpha < 1:
            raise InvalidRequest(
                f"alpha={alpha:g}: the significance level must be in (0, 1), e.g. 0.05"
            )
        return alpha
