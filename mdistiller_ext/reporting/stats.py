"""Seed statistics for reports: mean and sample std, and the two-sample comparison the study and the
parity benchmark use (Welch's t-test with exact Student's t quantiles for fractional degrees of
freedom). Pure Python, no scipy, so a report is the same on every machine (tested against scipy)."""
import math
from typing import List, Optional, Sequence, Tuple


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; reports show no spread for one run)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularized incomplete beta function (modified Lentz), for
    x < (a + 1) / (a + b + 2), where it converges quickly."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10000):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-16:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` (any positive real) degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


def t_critical(df: float, p: float = 0.975) -> float:
    """The p-quantile of Student's t with ``df`` degrees of freedom (p >= 0.5), exact for fractional df
    (bisection on the distribution function to double precision)."""
    if not 0.5 <= p < 1.0 or df <= 0:
        raise ValueError(f"t_critical needs 0.5 <= p < 1 and df > 0, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    return 0.5 * (lo + hi)


def two_sided_p(d: float, se: float, df: float) -> float:
    """The two-sided p-value of a difference ``d`` with standard error ``se`` on ``df`` degrees of freedom."""
    if se == 0:
        return 0.0 if d != 0 else 1.0
    return 2.0 * (1.0 - t_cdf(abs(d) / se, df))


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float, float]]:
    """(mean(a) - mean(b), its standard error, Welch-Satterthwaite degrees of freedom), or None where a side
    has fewer than two values.

    A single run has no measured spread, and borrowing the other side's would let two nearly equal seeds
    of one arm decide a claim about an arm run once (the CIFAR-100 study's first seeds did exactly that:
    a CE-only last-epoch spread of 0.01 over two seeds "contradicted" a single run). Two sides with no
    variation at all: SE 0, df n_a + n_b - 2."""
    if len(a) < 2 or len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    if va + vb == 0:
        return ma - mb, 0.0, float(len(a) + len(b) - 2)
    return ma - mb, math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))


def holm(pvalues: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Holm's step-down adjustment of a family's p-values (None: a comparison without a test, left out of
    the family): the i-th smallest of m becomes max over j <= i of min(1, (m - j + 1) p_(j)), so that
    rejecting where the adjusted p < alpha holds the family-wise error rate at alpha."""
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m = len(tested)
    out: List[Optional[float]] = [None] * len(pvalues)
    running = 0.0
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out
