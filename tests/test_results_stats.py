"""The statistics of results, checked against independent computations.

Independent references: published table values, a numerical integration of the t density with
numpy, ClickHouse's own ``studentTTestOneSample`` (t, p-value and confidence interval), and
Wilson's formula written out here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalhouse.evaluators.results import mean_interval, paired_test, t_quantile, two_sided_p
from evalhouse.evaluators.results._stats import Interval, bounded, score_interval, verdict
from evalhouse.store import Store

# t(0.975, df) from a printed table of Student's t.
TABLE = {1: 12.7062, 2: 4.3027, 5: 2.5706, 9: 2.2622, 30: 2.0423, 120: 1.9799}


@pytest.mark.parametrize(("df", "expected"), sorted(TABLE.items()))
def test_quantiles_match_the_printed_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=1e-4)
    assert t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-4)


def _tail_by_integration(t: float, df: int) -> float:
    """P(|T| > t) by integrating the t density with the trapezoid rule."""
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    x = np.linspace(0.0, abs(t), 400_001)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(x * x / df))
    return float(1.0 - 2.0 * np.trapezoid(density, x))


@pytest.mark.parametrize(("t", "df"), [(0.3, 3), (1.0, 7), (2.5, 12), (4.0, 40), (1.7, 1)])
def test_p_values_match_a_numerical_integration(t: float, df: int) -> None:
    assert two_sided_p(t, df) == pytest.approx(_tail_by_integration(t, df), abs=1e-7)


def test_large_samples_approach_the_normal_distribution() -> None:
    assert t_quantile(0.975, 100_000) == pytest.approx(1.959985, abs=1e-5)
    assert two_sided_p(1.959964, 1e7) == pytest.approx(0.05, abs=1e-6)


@pytest.mark.parametrize(
    "values",
    [
        [0.1, 0.2, -0.3, 0.5, 0.4],
        [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
        [0.91, 0.93, 0.88, 0.95, 0.9, 0.92],
        list(np.linspace(-1, 3, 57) ** 2),
    ],
)
def test_interval_and_p_value_match_clickhouse(bare_store: Store, values: list[float]) -> None:
    x = np.array(values)
    ours = mean_interval(len(x), float(x.mean()), float(x.std(ddof=1)), 0.05)
    ((theirs,),) = bare_store.query(
        "SELECT studentTTestOneSample(0.95)(x, 0) FROM (SELECT arrayJoin({v:Array(Float64)}) AS x)",
        {"v": values},
    )
    # A named tuple: (t_statistic, p_value, confidence_interval_low, ..._high).
    _, p_value, low, high = theirs.values() if isinstance(theirs, dict) else theirs
    assert ours.mean == pytest.approx(float(x.mean()))
    assert ours.low == pytest.approx(low, rel=1e-9, abs=1e-12)
    assert ours.high == pytest.approx(high, rel=1e-9, abs=1e-12)
    assert ours.p_value == pytest.approx(p_value, rel=1e-6, abs=1e-15)


def test_degenerate_samples() -> None:
    assert mean_interval(1, 0.7, None) == mean_interval(1, 0.7, math.nan)
    single = mean_interval(1, 0.7, None)
    assert (single.low, single.high, single.p_value) == (None, None, None)
    constant = paired_test(5, 0.25, 0.0)
    assert (constant.low, constant.high, constant.p_value) == (0.25, 0.25, 0.0)
    assert paired_test(5, 0.0, 0.0).p_value == 1.0


def test_verdicts_need_significance_in_the_direction_of_the_change() -> None:
    assert verdict(10, -0.2, 0.01, 0.05, higher_is_better=True) == "regressed"
    assert verdict(10, 0.2, 0.01, 0.05, higher_is_better=True) == "improved"
    assert verdict(10, 0.2, 0.2, 0.05, higher_is_better=True) == "no significant change"
    assert verdict(10, 0.2, 0.01, 0.005, higher_is_better=True) == "no significant change"
    # Metrics: lower is better.
    assert verdict(10, 30.0, 0.001, 0.05, higher_is_better=False) == "regressed"
    assert verdict(10, -30.0, 0.001, 0.05, higher_is_better=False) == "improved"
    assert verdict(1, -0.9, None, 0.05, higher_is_better=True) == "insufficient data"


def _wilson(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson's score interval, from its formula (Wilson 1927)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


@pytest.mark.parametrize(("successes", "n"), [(3, 4), (9, 10), (10, 10), (0, 5), (1, 1), (57, 80)])
def test_pass_fail_scores_get_wilsons_interval(successes: int, n: int) -> None:
    values = np.array([1.0] * successes + [0.0] * (n - successes))
    sd = float(values.std(ddof=1)) if n > 1 else None
    interval = score_interval(n, float(values.mean()), sd, 0.05, pass_fail=True)
    low, high = _wilson(successes, n)
    assert interval.method == "wilson"
    assert (interval.low, interval.high) == (
        pytest.approx(max(0, low)),
        pytest.approx(min(1, high)),
    )


def test_the_interval_that_left_zero_to_one_now_stays_inside() -> None:
    """Issue 17: 3 of 4 rows passing printed [-0.046, 1.546] with the t interval."""
    old = mean_interval(4, 0.75, 0.5)
    assert old.low == pytest.approx(-0.046, abs=1e-3) and old.high == pytest.approx(1.546, abs=1e-3)
    new = score_interval(4, 0.75, 0.5, 0.05, pass_fail=True)
    assert (round(new.low or 0, 3), round(new.high or 0, 3)) == (0.301, 0.954)


@pytest.mark.parametrize(
    "values",
    [
        [0.9, 0.95, 1.0],
        [0.0, 0.05, 0.1, 0.02],
        [0.2, 0.5, 0.8, 0.4, 0.6, 0.7, 0.3],
        list(np.linspace(0.5, 1.0, 200)),
    ],
)
def test_continuous_scores_stay_in_bounds_and_approach_the_t_interval(values: list[float]) -> None:
    x = np.array(values)
    n, m, sd = len(x), float(x.mean()), float(x.std(ddof=1))
    interval = score_interval(n, m, sd, 0.05, pass_fail=False)
    assert interval.method == "wilson_effective_n"
    assert interval.low is not None and interval.high is not None
    assert 0.0 <= interval.low < m < interval.high <= 1.0
    if n >= 100:  # far from the bounds, with many values: the t interval
        t = mean_interval(n, m, sd)
        assert (interval.low, interval.high) == (
            pytest.approx(t.low, abs=2e-3),
            pytest.approx(t.high, abs=2e-3),
        )


def test_degenerate_score_intervals() -> None:
    assert score_interval(0, None, None, 0.05, pass_fail=True).method is None
    one = score_interval(1, 0.4, None, 0.05, pass_fail=False)
    assert (one.low, one.high, one.method) == (None, None, None)  # no spread to measure
    same = score_interval(5, 0.7, 0.0, 0.05, pass_fail=False)
    assert (same.low, same.high) == (0.7, 0.7)


def test_differences_of_scores_are_bounded_to_plus_minus_one() -> None:
    wide = mean_interval(3, 0.9, 0.3)
    assert wide.high is not None and wide.high > 1
    clipped = bounded(wide, -1.0, 1.0)
    assert (clipped.low, clipped.high, clipped.p_value) == (wide.low, 1.0, wide.p_value)
    assert bounded(Interval(0.0, None, None, None), -1, 1).low is None


def test_metrics_below_their_practical_threshold_are_unchanged() -> None:
    """Issue 17: +3.4 ms with p=0.026 is significant, not meaningful."""
    assert verdict(40, 3.4, 0.026, 0.05, higher_is_better=False, min_change=50.0) == "unchanged"
    assert verdict(40, 3.4, 0.9, 0.05, higher_is_better=False, min_change=50.0) == "unchanged"
    assert verdict(40, 80.0, 0.001, 0.05, higher_is_better=False, min_change=50.0) == "regressed"
    assert verdict(40, 80.0, 0.2, 0.05, higher_is_better=False, min_change=50.0) == (
        "no significant change"
    )
    assert verdict(1, 80.0, None, 0.05, higher_is_better=False, min_change=50.0) == (
        "insufficient data"
    )
