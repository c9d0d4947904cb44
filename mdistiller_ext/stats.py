"""Seed statistics for reports: mean and sample std, and the two-sample comparison the study and the
parity benchmark use (Welch's t-test with Student's t critical values). Pure Python: no scipy."""
import math
from typing import Optional, Sequence, Tuple

# Student's t, two-sided 95% critical values by degrees of freedom (standard tables); a df between
# entries uses the entry below it, which is the more demanding bar.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; reports show no spread for one run)."""
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return mean, std


def t_critical(df: float) -> float:
    """t(0.975, df) from the table, rounding df down (at least 1)."""
    below = [k for k in T_975 if k <= df]
    return T_975[max(below)] if below else T_975[1]


def welch(a: Sequence[float], b: Sequence[float]) -> Optional[Tuple[float, float, float]]:
    """(mean(a) - mean(b), its standard error, degrees of freedom), or None where neither side has a spread.

    Both sides with two or more values: Welch's SE and the Welch-Satterthwaite df. One side with a single
    value: that side is assumed to vary as the other does (SE = s * sqrt(1/n_a + 1/n_b), df = n - 1 of
    the side with a spread). Two sides with no variation at all: SE 0, df n_a + n_b - 2."""
    if len(a) < 2 and len(b) < 2:
        return None
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    if len(a) < 2 or len(b) < 2:
        s, n = (sb, len(b)) if len(a) < 2 else (sa, len(a))
        return ma - mb, s * math.sqrt(1 / len(a) + 1 / len(b)), n - 1.0
    va, vb = sa ** 2 / len(a), sb ** 2 / len(b)
    if va + vb == 0:
        return ma - mb, 0.0, float(len(a) + len(b) - 2)
    return ma - mb, math.sqrt(va + vb), (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
