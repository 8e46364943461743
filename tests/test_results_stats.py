"""Student's t in plain Python, checked against independent computations.

Independent references: published table values, a numerical integration of the t density with
numpy, and ClickHouse's own ``studentTTestOneSample`` (t, p-value and confidence interval).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from evalhouse.evaluators.results import mean_interval, paired_test, t_quantile, two_sided_p
from evalhouse.evaluators.results._stats import verdict
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
