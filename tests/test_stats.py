"""Seed statistics: golden values by hand, and against scipy where it is installed."""
import math

import pytest

from mdistiller_ext.stats import T_975, mean_std, t_critical, welch


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([7.0]) == (7.0, 0.0)


def test_welch_by_hand():
    # s_a^2 = 1, s_b^2 = 0.25, n = 3 each: SE^2 = 1/3 + 1/12 = 5/12; df = (5/12)^2 / ((1/9 + 1/144) / 2)
    d, se, df = welch([71.0, 72.0, 73.0], [70.0, 70.5, 71.0])
    assert d == pytest.approx(1.5) and se == pytest.approx(math.sqrt(5 / 12))
    assert df == pytest.approx((5 / 12) ** 2 / ((1 / 9 + 1 / 144) / 2)) and df == pytest.approx(2.9411764705882346)
    # a single run borrows the other side's spread (s = 1): SE = sqrt(1 + 1/3), df = 3 - 1
    assert welch([60.0], [70.0, 71.0, 72.0]) == pytest.approx((-11.0, math.sqrt(4 / 3), 2.0))
    assert welch([70.0, 71.0, 72.0], [60.0]) == pytest.approx((11.0, math.sqrt(4 / 3), 2.0))
    assert welch([1.0], [2.0]) is None
    assert welch([1.0, 1.0], [3.0, 3.0]) == (-2.0, 0.0, 2.0)


def test_t_critical_rounds_df_down():
    assert t_critical(2.94) == 4.303 and t_critical(11.0) == 2.228 and t_critical(1000.0) == 2.042
    assert t_critical(0.5) == 12.706


def test_against_scipy():
    sp = pytest.importorskip("scipy.stats")
    for df, value in T_975.items():
        assert value == pytest.approx(sp.t.ppf(0.975, df), abs=5e-4)
    a, b = [81.2, 80.7, 81.9, 81.0], [78.6, 78.4, 79.1]
    d, se, df = welch(a, b)
    ref = sp.ttest_ind(a, b, equal_var=False)
    assert d / se == pytest.approx(ref.statistic) and df == pytest.approx(ref.df)
