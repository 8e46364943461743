"""Practical significance: how large a metric's change must be to count at all.

Two runs of the same task differ by a few milliseconds, and with enough rows a paired test
finds that "significant" (``task_duration_ms +3.4 ms (p=0.026)`` was reported as a
regression). A metric's verdict is ``improved`` / ``regressed`` only when its mean changed by
at least ``relative`` × the baseline mean and at least ``absolute`` (in the metric's unit);
a smaller change is ``unchanged``. Scores keep their own per-row tolerance and no threshold.

>>> Thresholds().for_metric("task_duration_ms").min_change(915.0)
91.5
>>> Thresholds().for_metric("task_duration_ms").min_change(40.0)
50.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalhouse.config import Settings

__all__ = ["Threshold", "Thresholds"]


@dataclass(frozen=True)
class Threshold:
    """The smallest change of a metric's mean that counts: both bounds must be reached."""

    relative: float
    absolute: float = 0.0

    def min_change(self, baseline_mean: float | None) -> float:
        """The smallest absolute difference that counts, against ``baseline_mean``."""
        base = abs(baseline_mean) if baseline_mean is not None else 0.0
        return max(self.relative * base, self.absolute)

    def as_json(self) -> dict[str, float]:
        return {"relative": self.relative, "absolute": self.absolute}


@dataclass(frozen=True)
class Thresholds:
    """Per kind of metric: durations (ms), token counts, cost (USD).

    Defaults: 10% and 50 ms for durations, 5% for tokens and cost (``compare_*`` settings).
    """

    duration: Threshold = Threshold(0.10, 50.0)
    tokens: Threshold = Threshold(0.05)
    cost: Threshold = Threshold(0.05)

    @classmethod
    def from_settings(cls, settings: Settings) -> Thresholds:
        return cls(
            duration=Threshold(
                settings.compare_duration_min_relative, settings.compare_duration_min_ms
            ),
            tokens=Threshold(settings.compare_tokens_min_relative),
            cost=Threshold(settings.compare_cost_min_relative),
        )

    def for_metric(self, metric: str) -> Threshold:
        if metric.endswith("_ms"):
            return self.duration
        if metric.endswith("_usd"):
            return self.cost
        if metric.endswith("tokens"):
            return self.tokens
        raise KeyError(f"no practical threshold for metric {metric!r}")

    def as_json(self, metrics: tuple[str, ...]) -> dict[str, Any]:
        """Per metric: ``{"relative": ..., "absolute": ...}`` (as the compare JSON has it)."""
        return {metric: self.for_metric(metric).as_json() for metric in metrics}
