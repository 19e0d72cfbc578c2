"""CUPED regression adjustment with a θ pooled over all arms (Deng et al. 2013; gbstats)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from abflow.stats.models import (
    RegressionAdjustedRatioStats,
    RegressionAdjustedStats,
    sample_covariance,
    sample_variance,
)


def cuped_theta(arms: Sequence[RegressionAdjustedStats]) -> float | None:
    """Pooled θ = cov(y, x)/var(x) from summed sufficient stats (gbstats compute_theta)."""
    # Pooling sums over arms (not within-arm centring) follows gbstats; the treatment shift in
    # y barely moves θ and a single θ for all arms keeps the adjusted difference unbiased.
    n = float(sum(a.n for a in arms))
    if n <= 1:
        return None
    sum_y = float(sum(a.sum for a in arms))
    sum_x = float(sum(a.pre_sum for a in arms))
    var_x = sample_variance(n, sum_x, float(sum(a.pre_sum_squares for a in arms)))
    var_y = sample_variance(n, sum_y, float(sum(a.sum_squares for a in arms)))
    if var_x <= 0 or var_y <= 0:
        return None
    cov = sample_covariance(n, sum_x, sum_y, float(sum(a.post_pre_sum_of_products for a in arms)))
    theta = cov / var_x
    return theta if math.isfinite(theta) else None


def cuped_adjust(
    arms: Sequence[RegressionAdjustedStats], theta: float | None = None
) -> list[RegressionAdjustedStats]:
    """Copies of the arms carrying the pooled θ (0, i.e. no adjustment, when θ is undefined)."""
    if theta is None:
        theta = cuped_theta(arms)
    value = 0.0 if theta is None or not math.isfinite(theta) else float(theta)
    return [dataclasses.replace(a, theta=value) for a in arms]


def ratio_cuped_theta(arms: Sequence[RegressionAdjustedRatioStats]) -> float | None:
    """θ of ratio CUPED: Σ cov(post ratio, pre ratio) / Σ var(pre ratio) over the arms.

    gbstats compute_theta_regression_adjusted_ratio: with θ = 1 the pre part of the gradient is
    (−1/d̄pre, m̄pre/d̄pre²) = −g_pre, so θ = −Σ(g_preᵀ Λ g_post)·(−1) / Σ g_preᵀ Λ g_pre, each
    arm's per-unit delta-method (co)variances summed. None (no adjustment) when undefined.
    """
    if sum(a.n for a in arms) <= 1 or any(a.n <= 1 for a in arms):
        return None
    cov = 0.0
    var_pre = 0.0
    for a in arms:
        g = a.gradient(1.0)
        post, pre = (g[0], g[1], 0.0, 0.0), (0.0, 0.0, g[2], g[3])
        cov += a.quadratic(pre, post)
        var_pre += a.quadratic(pre, pre)
    if not var_pre > 0:
        return None
    theta = -cov / var_pre
    return theta if math.isfinite(theta) else None
