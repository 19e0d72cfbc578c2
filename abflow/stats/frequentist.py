"""Fixed-horizon lift tests: Welch t and pooled two-proportion z (GrowthBook gbstats)."""

from __future__ import annotations

import math
from typing import Literal

from scipy import special

Alternative = Literal["two-sided", "greater", "less"]


def lift_estimate(
    mean_c: float, mean_t: float, relative: bool, mean_c_unadjusted: float | None = None
) -> float:
    """Absolute μT−μC or relative (μT−μC)/|μC| lift (gbstats frequentist_diff)."""
    base = mean_c if mean_c_unadjusted is None else mean_c_unadjusted
    diff = mean_t - mean_c
    return diff / abs(base) if relative else diff


def lift_variance(
    var_c: float, mean_c: float, n_c: float, var_t: float, mean_t: float, n_t: float, relative: bool
) -> float:
    """Lift variance: σT²/nT+σC²/nC, or delta method σT²/(μC²nT)+σC²μT²/(μC⁴nC) (gbstats)."""
    if relative:
        return var_t / (mean_c**2 * n_t) + var_c * mean_t**2 / (mean_c**4 * n_c)
    return var_t / n_t + var_c / n_c


def welch_df(var_c: float, n_c: float, var_t: float, n_t: float) -> float:
    """Welch–Satterthwaite degrees of freedom (Welch 1947; gbstats TwoSidedTTest.dof)."""
    a = var_t / n_t
    b = var_c / n_c
    denom = a * a / (n_t - 1) + b * b / (n_c - 1)
    # Both variances zero is screened out earlier; guard anyway so df stays finite.
    return (a + b) ** 2 / denom if denom > 0 else n_c + n_t - 2.0


def t_p_value(stat: float, df: float, alternative: Alternative) -> float:
    """p-value of a Student t statistic for the given alternative (scipy.special.stdtr)."""
    if alternative == "greater":
        p = float(special.stdtr(df, -stat))
    elif alternative == "less":
        p = float(special.stdtr(df, stat))
    else:
        p = 2.0 * float(special.stdtr(df, -abs(stat)))
    return min(max(p, 0.0), 1.0)


def z_p_value(stat: float, alternative: Alternative) -> float:
    """p-value of a standard normal statistic for the given alternative (scipy.special.ndtr)."""
    if alternative == "greater":
        p = float(special.ndtr(-stat))
    elif alternative == "less":
        p = float(special.ndtr(stat))
    else:
        p = 2.0 * float(special.ndtr(-abs(stat)))
    return min(max(p, 0.0), 1.0)


def t_quantile(alpha: float, df: float, alternative: Alternative) -> float:
    """CI multiplier: t_{1−α/2} two-sided; one-sided tests use the two-sided (1−2α) interval."""
    # A one-sided level-α test rejects exactly when the matching bound of the two-sided (1−2α)
    # interval excludes 0; reporting that interval keeps both bounds finite (no ±inf).
    q = 1.0 - alpha / 2.0 if alternative == "two-sided" else 1.0 - alpha
    return float(special.stdtrit(df, q))


def z_quantile(alpha: float, alternative: Alternative) -> float:
    """Normal CI multiplier, same one-sided convention as t_quantile."""
    q = 1.0 - alpha / 2.0 if alternative == "two-sided" else 1.0 - alpha
    return float(special.ndtri(q))


def pooled_z_statistic(conv_c: float, n_c: float, conv_t: float, n_t: float) -> float:
    """Pooled two-proportion z (p̂ pooled under H0); z² equals the 2×2 Pearson χ² (no Yates)."""
    pooled = (conv_c + conv_t) / (n_c + n_t)
    var = pooled * (1.0 - pooled) * (1.0 / n_c + 1.0 / n_t)
    if var <= 0:
        return 0.0
    return (conv_t / n_t - conv_c / n_c) / math.sqrt(var)


def fieller_ratio_interval(
    mean_c: float, var_mean_c: float, mean_t: float, var_mean_t: float, q: float
) -> tuple[float, float] | None:
    """Fieller's (1954) interval for μT/μC with independent arms; None when it is unbounded."""
    # {R : (x̄T − R·x̄C)² ≤ q²(vT + R²vC)} is a quadratic in R. At R = 1 it is exactly the test of
    # μT = μC with multiplier q, so the interval excludes 1 iff that difference test rejects;
    # unbounded when x̄C itself is not distinguishable from 0 (a ≤ 0).
    a = mean_c * mean_c - q * q * var_mean_c
    if not a > 0:
        return None
    disc = (
        mean_c * mean_c * var_mean_t
        + mean_t * mean_t * var_mean_c
        - q * q * var_mean_c * var_mean_t
    )
    root = q * math.sqrt(max(disc, 0.0))
    centre = mean_t * mean_c
    return (centre - root) / a, (centre + root) / a
