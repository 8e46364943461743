"""Student's t: intervals of a mean and the paired t-test, in plain Python (no scipy).

The t distribution's tail comes from the regularized incomplete beta function,
``P(|T| > t) = I_x(df/2, 1/2)`` with ``x = df / (df + t²)`` (DLMF 8.17 and 26.7 of Abramowitz
and Stegun), evaluated by its continued fraction with the modified Lentz method.

>>> round(t_quantile(0.975, 9), 4)
2.2622
>>> round(two_sided_p(2.2622, 9), 3)
0.05
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Interval",
    "Verdict",
    "mean_interval",
    "paired_test",
    "t_quantile",
    "two_sided_p",
    "verdict",
]

Verdict = Literal["regressed", "improved", "no significant change", "insufficient data"]

_TINY = 1e-300
_EPS = 1e-15


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    result = d
    for m in range(1, 10_000):
        # Even step, then odd step, of the fraction's terms d_{2m} and d_{2m+1}.
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            result *= c * d
        if abs(c * d - 1.0) < _EPS:
            break
    return result


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    # The symmetry I_x(a, b) = 1 - I_{1-x}(b, a) keeps the fraction in its fast region.
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with ``df`` degrees of freedom."""
    if math.isinf(t):
        return 0.0
    return min(1.0, _incomplete_beta(df / 2.0, 0.5, df / (df + t * t)))


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (0 < q < 1), by bisection on the tail."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile {q} must be between 0 and 1")
    if q == 0.5:
        return 0.0
    target = 2.0 * (1.0 - q) if q > 0.5 else 2.0 * q
    low, high = 0.0, 1.0
    while two_sided_p(high, df) > target:
        low, high = high, high * 2.0
    for _ in range(200):
        middle = (low + high) / 2.0
        if two_sided_p(middle, df) > target:
            low = middle
        else:
            high = middle
        if high - low < 1e-12 * max(1.0, high):
            break
    value = (low + high) / 2.0
    return value if q > 0.5 else -value


@dataclass(frozen=True)
class Interval:
    """A mean with its confidence interval and the p-value of "the mean is 0"."""

    mean: float
    low: float | None
    high: float | None
    p_value: float | None


def mean_interval(n: int, mean: float, sd: float | None, alpha: float = 0.05) -> Interval:
    """``mean ± t(1 - alpha/2, n - 1) · sd / √n`` and the one-sample t-test against 0.

    ``low``, ``high`` and ``p_value`` are None below two values (no spread to measure). When
    every value is the same the interval is the point itself and p is 0 (a non-zero mean) or
    1 (all zero).

    >>> round(mean_interval(4, 0.5, 0.2).low, 4)
    0.1818
    """
    if n < 2 or sd is None or math.isnan(sd):
        return Interval(mean, None, None, None)
    if sd == 0.0:
        return Interval(mean, mean, mean, 0.0 if mean != 0.0 else 1.0)
    error = sd / math.sqrt(n)
    half = t_quantile(1.0 - alpha / 2.0, n - 1) * error
    return Interval(mean, mean - half, mean + half, two_sided_p(mean / error, n - 1))


def paired_test(n: int, mean_diff: float, sd_diff: float | None, alpha: float = 0.05) -> Interval:
    """The paired t-test: the mean of the per-pair differences, its interval and p-value."""
    return mean_interval(n, mean_diff, sd_diff, alpha)


def verdict(
    n: int, diff: float | None, p_value: float | None, alpha: float, *, higher_is_better: bool
) -> Verdict:
    """``regressed`` / ``improved`` when significant at ``alpha`` in that direction."""
    if n < 2 or diff is None or p_value is None:
        return "insufficient data"
    if p_value >= alpha or diff == 0.0:
        return "no significant change"
    better = diff > 0.0 if higher_is_better else diff < 0.0
    return "improved" if better else "regressed"
