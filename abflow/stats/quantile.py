"""Quantile metrics from a few order statistics (GrowthBook gbstats QuantileStatistic).

Method: the sample quantile q̂ and its standard error from the order statistics at the rank bounds
of a 95% distribution-free interval, after Yao, Li & Lu (2024), "Quantile metrics in online
experiments" (the estimator GrowthBook ships as gbstats `QuantileStatistic`):

    p± = ν ± z₀.₉₇₅·sqrt(ν(1−ν)/n)        (binomial rank bounds of the ν-quantile)
    q̂ = Q(ν),  L = Q(p−),  U = Q(p+)     (Q: linear interpolation between order statistics,
                                          PostgreSQL's percentile_cont / numpy method="linear")
    σ² = (n−1)·((U − L) / (2·z₀.₉₇₅))²   (per-observation variance: se(q̂) = sqrt(σ²/n))

Arms are then compared like means (difference, delta-method relative lift, Welch t), as gbstats
does. For quantiles over events (several per unit) the iid variance is scaled by the design
effect of the indicator 1{y ≤ q̂} (gbstats `QuantileClusteredStatistic`): the delta-method
variance of the ratio Σᵢsᵢ/Σᵢmᵢ over units i (sᵢ events at or below q̂, mᵢ events; Deng,
Knoblich & Lu 2018, "Applying the delta method in metric analytics") divided by ν(1−ν)/n.

The warehouse computes q̂, L, U, n and the cluster moments (sql/queries/metric_quantiles.sql);
`order_statistics` is the same computation on an in-memory array, for tests and simulations.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

# Rank bounds are always those of a 95% interval (gbstats: alpha 0.05 in the bound query); the
# test's own alpha applies to the comparison.
BOUND_Z = 1.959963984540054  # -scipy.special.ndtri(0.025), written out: no SciPy import here
LEVEL_EPSILON = 1e-8  # gbstats clamps the bound levels to [1e-8, 1 - 1e-8]


def bound_levels(nu: float, n: int) -> tuple[float, float]:
    """Quantile levels p−, p+ whose order statistics bound the ν-quantile (Yao, Li & Lu 2024)."""
    half = BOUND_Z * math.sqrt(nu * (1.0 - nu) / n) if n > 0 else 1.0
    return max(nu - half, LEVEL_EPSILON), min(nu + half, 1.0 - LEVEL_EPSILON)


def interpolated(sorted_values: Sequence[float], p: float) -> float:
    """Q(p) by linear interpolation between order statistics (percentile_cont, numpy linear)."""
    n = len(sorted_values)
    h = (n - 1) * p  # 0-based position
    lo = math.floor(h)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo]))


@dataclass(frozen=True, slots=True)
class QuantileStats:
    """One arm's ν-quantile: n observations, q̂ and the order statistics at the rank bounds.

    With `n_clusters` set (quantiles over events), the cluster moments of sᵢ (events of unit i at
    or below q̂) and mᵢ (events of unit i) make the variance account for events of one unit being
    correlated (gbstats QuantileClusteredStatistic).
    """

    n: int
    nu: float
    quantile: float
    lower: float
    upper: float
    n_clusters: int | None = None
    below_sum: float = 0.0
    below_sum_squares: float = 0.0
    events_sum: float = 0.0
    events_sum_squares: float = 0.0
    below_events_sum_products: float = 0.0

    @property
    def valid(self) -> bool:
        """True when every number is finite, n ≥ 0 and the bounds are ordered."""
        values = (
            float(self.n),
            self.nu,
            self.quantile,
            self.lower,
            self.upper,
            self.below_sum,
            self.below_sum_squares,
            self.events_sum,
            self.events_sum_squares,
            self.below_events_sum_products,
        )
        if not all(math.isfinite(v) for v in values) or self.n < 0:
            return False
        return self.n == 0 or self.lower <= self.quantile <= self.upper

    @property
    def bounds_inside(self) -> bool:
        """False when n is too small for the rank bounds to fall inside the sample (gbstats)."""
        z2 = BOUND_Z**2
        return self.n > z2 * self.nu / (1.0 - self.nu) and self.n > z2 * (1.0 - self.nu) / self.nu

    @property
    def mean(self) -> float:
        """The estimate q̂ (what variant_stats.mean holds for a quantile metric)."""
        return float(self.quantile)

    @property
    def unadjusted_mean(self) -> float:
        """Same as mean (no covariate adjustment for quantiles)."""
        return self.mean

    @property
    def iid_variance(self) -> float:
        """Per-observation variance (n−1)((U−L)/2z)² (gbstats QuantileStatistic.variance_init)."""
        if self.n <= 1:
            return 0.0
        width = (float(self.upper) - float(self.lower)) / (2.0 * BOUND_Z)
        return (self.n - 1) * width * width

    @property
    def cluster_variance(self) -> float | None:
        """Delta-method variance of Σs/Σm over units (Deng, Knoblich & Lu 2018); None if iid."""
        k = self.n_clusters
        if k is None:
            return None
        if k <= 1 or self.events_sum <= 0:
            return 0.0
        mu_s = self.below_sum / k
        mu_m = self.events_sum / k
        var_s = (self.below_sum_squares / k - mu_s * mu_s) * k / (k - 1)
        var_m = (self.events_sum_squares / k - mu_m * mu_m) * k / (k - 1)
        cov = (self.below_events_sum_products / k - mu_s * mu_m) * k / (k - 1)
        num = var_s - 2.0 * mu_s * cov / mu_m + mu_s**2 * var_m / mu_m**2
        return max(num / (k * mu_m**2), 0.0)

    @property
    def variance(self) -> float:
        """Per-observation variance; clustered: scaled by the design effect of 1{y ≤ q̂}."""
        v_iid = self.iid_variance
        v_cluster = self.cluster_variance
        if v_cluster is None:
            return v_iid
        if self.n <= 1 or self.nu <= 0:
            return 0.0
        return v_iid * v_cluster / (self.nu * (1.0 - self.nu) / self.n)

    @property
    def std_error(self) -> float:
        """Standard error of q̂, sqrt(variance/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


def order_statistics(
    values: Sequence[float], nu: float, clusters: Sequence[object] | None = None
) -> QuantileStats:
    """QuantileStats of in-memory values, computed as the warehouse SQL does (tests, simulation).

    `clusters` (one label per value, e.g. the unit id) makes it the clustered statistic.
    """
    pairs = sorted(
        ((float(v), c) for v, c in zip(values, clusters or [None] * len(values), strict=True)),
        key=lambda vc: vc[0],
    )
    ordered = [v for v, _ in pairs]
    n = len(ordered)
    if n == 0:
        return QuantileStats(n=0, nu=nu, quantile=0.0, lower=0.0, upper=0.0)
    p_lo, p_hi = bound_levels(nu, n)
    q = interpolated(ordered, nu)
    stats = QuantileStats(
        n=n,
        nu=nu,
        quantile=q,
        lower=interpolated(ordered, p_lo),
        upper=interpolated(ordered, p_hi),
    )
    if clusters is None:
        return stats
    below: dict[object, int] = {}
    events: dict[object, int] = {}
    for v, c in pairs:
        events[c] = events.get(c, 0) + 1
        below[c] = below.get(c, 0) + (1 if v <= q else 0)
    s = [below[c] for c in events]
    m = [events[c] for c in events]
    return replace(
        stats,
        n_clusters=len(m),
        below_sum=float(sum(s)),
        below_sum_squares=float(sum(x * x for x in s)),
        events_sum=float(sum(m)),
        events_sum_squares=float(sum(x * x for x in m)),
        below_events_sum_products=float(sum(a * b for a, b in zip(s, m, strict=True))),
    )
