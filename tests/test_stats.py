"""Seed statistics: golden values by hand, and against scipy where it is installed."""
import math

import pytest

from mdistiller_ext.reporting.stats import incomplete_beta, mean_std, t_cdf, t_critical, two_sided_p, welch


def test_mean_std():
    assert mean_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx((2.5, math.sqrt(5 / 3)))
    assert mean_std([7.0]) == (7.0, 0.0)


def test_welch_by_hand():
    # s_a^2 = 1, s_b^2 = 0.25, n = 3 each: SE^2 = 1/3 + 1/12 = 5/12; df = (5/12)^2 / ((1/9 + 1/144) / 2)
    d, se, df = welch([71.0, 72.0, 73.0], [70.0, 70.5, 71.0])
    assert d == pytest.approx(1.5) and se == pytest.approx(math.sqrt(5 / 12))
    assert df == pytest.approx((5 / 12) ** 2 / ((1 / 9 + 1 / 144) / 2)) and df == pytest.approx(2.9411764705882346)
    # a single run has no spread of its own and borrows none: no test, on either side
    assert welch([60.0], [70.0, 71.0, 72.0]) is None
    assert welch([70.0, 71.0, 72.0], [60.0]) is None
    assert welch([1.0], [2.0]) is None
    assert welch([1.0, 1.0], [3.0, 3.0]) == (-2.0, 0.0, 2.0)


def test_t_quantiles_by_hand():
    # closed forms: df 1 is Cauchy, t = tan(pi (p - 1/2)); df 2: t = (2p - 1) sqrt(2 / (1 - (2p - 1)^2))
    assert t_critical(1.0) == pytest.approx(math.tan(math.pi * 0.475), rel=1e-10)
    assert t_critical(2.0) == pytest.approx(0.95 * math.sqrt(2 / (1 - 0.95 ** 2)), rel=1e-10)
    assert t_critical(1e7) == pytest.approx(1.959963984540054, rel=1e-6)  # the normal's quantile
    # fractional df lie between their neighbours (a table rounding df down would give t(2) = 4.303 here)
    assert t_critical(3.0) < t_critical(2.94) < t_critical(2.0)
    assert t_cdf(0.0, 3.3) == 0.5 and t_cdf(t_critical(4.6), 4.6) == pytest.approx(0.975, abs=1e-12)
    assert incomplete_beta(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # 1 - sum_{k<2} C(4,k) .4^k .6^(4-k)
    assert two_sided_p(2.0, 1.0, 1e7) == pytest.approx(0.0455002638963584, rel=1e-6)
    with pytest.raises(ValueError):
        t_critical(2.0, 0.3)


def test_against_scipy():
    sp = pytest.importorskip("scipy.stats")
    for df in (1.0, 1.37, 2.0, 2.94, 3.2, 4.0, 5.5, 8.0, 11.0, 29.9, 100.0, 1000.0):
        assert t_critical(df) == pytest.approx(sp.t.ppf(0.975, df), rel=1e-9)
        for p in (0.6, 0.9, 0.995):
            assert t_critical(df, p) == pytest.approx(sp.t.ppf(p, df), rel=1e-9)
        for t in (0.1, 1.0, 2.5, 7.0):
            assert t_cdf(t, df) == pytest.approx(sp.t.cdf(t, df), abs=1e-12)
    a, b = [81.2, 80.7, 81.9, 81.0], [78.6, 78.4, 79.1]
    d, se, df = welch(a, b)
    ref = sp.ttest_ind(a, b, equal_var=False)
    assert d / se == pytest.approx(ref.statistic) and df == pytest.approx(ref.df)
