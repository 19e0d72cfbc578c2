"""Sufficient-statistic containers and the comparison result (GrowthBook gbstats conventions)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Final

from abflow.stats.quantile import QuantileStats

# Error codes carried in CompareResult.error; strings so they can be written to the warehouse as is.
N_TOO_SMALL: Final = "n_too_small"
ZERO_VARIANCE: Final = "zero_variance"
ZERO_CONTROL_MEAN: Final = "zero_control_mean"
ZERO_DENOMINATOR: Final = "zero_denominator"
INVALID_INPUT: Final = "invalid_input"
NUMERICAL_ERROR: Final = "numerical_error"


def _finite(*values: float) -> bool:
    """True when every value is a finite real number."""
    return all(math.isfinite(v) for v in values)


def sample_variance(n: float, total: float, total_squares: float) -> float:
    """Sample variance (Σy² − (Σy)²/n)/(n−1); 0 when undefined (GrowthBook gbstats)."""
    if n <= 1:
        return 0.0
    # Clamp: the textbook one-pass formula can go slightly negative through cancellation.
    return max((total_squares - total * total / n) / (n - 1), 0.0)


def sample_covariance(n: float, sum_x: float, sum_y: float, sum_xy: float) -> float:
    """Sample covariance (Σxy − ΣxΣy/n)/(n−1); 0 when undefined (gbstats compute_covar)."""
    if n <= 1:
        return 0.0
    return (sum_xy - sum_x * sum_y / n) / (n - 1)


@dataclass(frozen=True, slots=True)
class MeanStats:
    """Per-variant sufficient statistics of a numeric metric: n, Σy, Σy²."""

    n: int
    sum: float
    sum_squares: float

    @property
    def valid(self) -> bool:
        """True when the sums are finite and n is non-negative."""
        return _finite(float(self.n), float(self.sum), float(self.sum_squares)) and self.n >= 0

    @property
    def mean(self) -> float:
        """Sample mean Σy/n (0 when n = 0)."""
        return float(self.sum) / self.n if self.n > 0 else 0.0

    @property
    def unadjusted_mean(self) -> float:
        """Mean before any covariate adjustment (same as mean here)."""
        return self.mean

    @property
    def variance(self) -> float:
        """Sample variance with n−1 denominator (SPEC §4)."""
        return sample_variance(float(self.n), float(self.sum), float(self.sum_squares))

    @property
    def std_error(self) -> float:
        """Standard error of the mean, sqrt(variance/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ProportionStats:
    """Per-variant sufficient statistics of a binary metric: n units, sum conversions."""

    n: int
    sum: float

    @property
    def valid(self) -> bool:
        """True when 0 ≤ conversions ≤ n and both are finite."""
        return _finite(float(self.n), float(self.sum)) and 0 <= self.sum <= self.n

    @property
    def mean(self) -> float:
        """Conversion rate sum/n (0 when n = 0)."""
        return float(self.sum) / self.n if self.n > 0 else 0.0

    @property
    def unadjusted_mean(self) -> float:
        """Mean before any covariate adjustment (same as mean here)."""
        return self.mean

    @property
    def variance(self) -> float:
        """Bernoulli variance p(1−p), GrowthBook gbstats ProportionStatistic convention."""
        p = self.mean
        return max(p * (1.0 - p), 0.0)

    @property
    def std_error(self) -> float:
        """Standard error of the rate, sqrt(p(1−p)/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RatioStats:
    """Per-variant sums of a ratio metric M/D (e.g. revenue per session) over n units."""

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    m_d_sum_of_products: float

    @property
    def valid(self) -> bool:
        """True when all sums are finite and n is non-negative."""
        values = (self.n, self.m_sum, self.m_sum_squares, self.d_sum, self.d_sum_squares)
        return _finite(*map(float, values), float(self.m_d_sum_of_products)) and self.n >= 0

    @property
    def mean(self) -> float:
        """Ratio of sums Σm/Σd (0 when Σd = 0)."""
        return float(self.m_sum) / float(self.d_sum) if self.d_sum != 0 else 0.0

    @property
    def unadjusted_mean(self) -> float:
        """Mean before any covariate adjustment (same as mean here)."""
        return self.mean

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance of Σm/Σd (GrowthBook gbstats RatioStatistic)."""
        n = float(self.n)
        if n <= 1 or self.d_sum == 0:
            return 0.0
        mean_m = float(self.m_sum) / n
        mean_d = float(self.d_sum) / n
        var_m = sample_variance(n, float(self.m_sum), float(self.m_sum_squares))
        var_d = sample_variance(n, float(self.d_sum), float(self.d_sum_squares))
        cov = sample_covariance(
            n, float(self.m_sum), float(self.d_sum), float(self.m_d_sum_of_products)
        )
        try:
            v = var_m / mean_d**2 - 2.0 * cov * mean_m / mean_d**3 + mean_m**2 * var_d / mean_d**4
        except (ArithmeticError, ValueError):
            # Extreme sums (Σd ~ 1e-200 underflows mean_d⁴): undefined, reported as an error row.
            return math.nan
        return max(v, 0.0) if math.isfinite(v) else math.nan

    @property
    def std_error(self) -> float:
        """Standard error of the ratio, sqrt(variance/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RegressionAdjustedStats:
    """CUPED sums: post metric y, pre-exposure covariate x, Σxy and θ (Deng et al. 2013)."""

    n: int
    sum: float
    sum_squares: float
    pre_sum: float
    pre_sum_squares: float
    post_pre_sum_of_products: float
    theta: float = 0.0

    @property
    def valid(self) -> bool:
        """True when all sums and θ are finite and n is non-negative."""
        values = (self.n, self.sum, self.sum_squares, self.pre_sum, self.pre_sum_squares)
        extra = (float(self.post_pre_sum_of_products), float(self.theta))
        return _finite(*map(float, values), *extra) and self.n >= 0

    @property
    def unadjusted_mean(self) -> float:
        """Post-period mean ȳ before adjustment."""
        return float(self.sum) / self.n if self.n > 0 else 0.0

    @property
    def pre_mean(self) -> float:
        """Pre-period covariate mean x̄."""
        return float(self.pre_sum) / self.n if self.n > 0 else 0.0

    @property
    def mean(self) -> float:
        """Adjusted mean ȳ − θx̄ (gbstats RegressionAdjustedStatistic)."""
        return self.unadjusted_mean - float(self.theta) * self.pre_mean

    @property
    def post_variance(self) -> float:
        """Sample variance of y."""
        return sample_variance(float(self.n), float(self.sum), float(self.sum_squares))

    @property
    def pre_variance(self) -> float:
        """Sample variance of x."""
        return sample_variance(float(self.n), float(self.pre_sum), float(self.pre_sum_squares))

    @property
    def covariance(self) -> float:
        """Sample covariance of y and x."""
        products = float(self.post_pre_sum_of_products)
        return sample_covariance(float(self.n), float(self.sum), float(self.pre_sum), products)

    @property
    def variance(self) -> float:
        """Per-unit variance of y − θx: σy² + θ²σx² − 2θσxy (Deng et al. 2013 CUPED)."""
        t = float(self.theta)
        return max(self.post_variance + t * t * self.pre_variance - 2.0 * t * self.covariance, 0.0)

    @property
    def std_error(self) -> float:
        """Standard error of the adjusted mean, sqrt(variance/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


@dataclass(frozen=True, slots=True)
class RegressionAdjustedRatioStats:
    """Ratio CUPED: post ratio M/D adjusted by the pre-exposure ratio Mpre/Dpre.

    gbstats' RegressionAdjustedRatioStatistic ("ratio_ra"): with per-unit means
    β = (m̄, d̄, m̄pre, d̄pre) and their 4x4 sample covariance Λ, the adjusted ratio is
    m̄/d̄ − θ·m̄pre/d̄pre and its per-unit delta-method variance is ∇ᵀΛ∇ with
    ∇ = (1/d̄, −m̄/d̄², −θ/d̄pre, θ·m̄pre/d̄pre²).
    """

    n: int
    m_sum: float
    m_sum_squares: float
    d_sum: float
    d_sum_squares: float
    m_d_sum_of_products: float
    m_pre_sum: float
    m_pre_sum_squares: float
    d_pre_sum: float
    d_pre_sum_squares: float
    m_post_m_pre_sum_of_products: float
    d_post_d_pre_sum_of_products: float
    m_pre_d_pre_sum_of_products: float
    m_post_d_pre_sum_of_products: float
    m_pre_d_post_sum_of_products: float
    theta: float = 0.0

    @property
    def valid(self) -> bool:
        """True when all sums and θ are finite and n is non-negative."""
        values = [float(getattr(self, f.name)) for f in fields(self)]
        return _finite(*values) and self.n >= 0

    @property
    def mean_post(self) -> float:
        """Post-exposure ratio Σm/Σd (0 when Σd = 0)."""
        return float(self.m_sum) / float(self.d_sum) if self.d_sum != 0 else 0.0

    @property
    def mean_pre(self) -> float:
        """Pre-exposure ratio Σmpre/Σdpre (0 when Σdpre = 0)."""
        return float(self.m_pre_sum) / float(self.d_pre_sum) if self.d_pre_sum != 0 else 0.0

    @property
    def unadjusted_mean(self) -> float:
        """The post-exposure ratio before adjustment."""
        return self.mean_post

    @property
    def mean(self) -> float:
        """Adjusted ratio m̄/d̄ − θ·m̄pre/d̄pre (0 when a denominator sum is 0, as gbstats)."""
        if self.d_sum == 0 or self.d_pre_sum == 0:
            return 0.0
        return self.mean_post - float(self.theta) * self.mean_pre

    def _means(self) -> tuple[float, float, float, float]:
        n = float(self.n)
        return (
            float(self.m_sum) / n,
            float(self.d_sum) / n,
            float(self.m_pre_sum) / n,
            float(self.d_pre_sum) / n,
        )

    def _lambda(self) -> list[list[float]]:
        """Sample covariance matrix of (m, d, mpre, dpre) per unit."""
        n = float(self.n)
        sums = (self.m_sum, self.d_sum, self.m_pre_sum, self.d_pre_sum)
        squares = (self.m_sum_squares, self.d_sum_squares, self.m_pre_sum_squares,
                   self.d_pre_sum_squares)
        products = {
            (0, 1): self.m_d_sum_of_products,
            (0, 2): self.m_post_m_pre_sum_of_products,
            (0, 3): self.m_post_d_pre_sum_of_products,
            (1, 2): self.m_pre_d_post_sum_of_products,
            (1, 3): self.d_post_d_pre_sum_of_products,
            (2, 3): self.m_pre_d_pre_sum_of_products,
        }
        lam = [[0.0] * 4 for _ in range(4)]
        for i in range(4):
            lam[i][i] = sample_variance(n, float(sums[i]), float(squares[i]))
        for (i, j), p in products.items():
            lam[i][j] = lam[j][i] = sample_covariance(n, float(sums[i]), float(sums[j]), float(p))
        return lam

    def gradient(self, theta: float) -> tuple[float, float, float, float]:
        """∇ of m̄/d̄ − θ·m̄pre/d̄pre with respect to β (zeros when a mean denominator is 0)."""
        m, d, mp, dp = self._means()
        if d == 0 or dp == 0:
            return (0.0, 0.0, 0.0, 0.0)
        return (1.0 / d, -m / d**2, -theta / dp, theta * mp / dp**2)

    def quadratic(self, a: tuple[float, ...], b: tuple[float, ...]) -> float:
        """aᵀΛb."""
        lam = self._lambda()
        return sum(a[i] * lam[i][j] * b[j] for i in range(4) for j in range(4))

    @property
    def variance(self) -> float:
        """Per-unit delta-method variance ∇ᵀΛ∇ of the adjusted ratio (gbstats ratio_ra)."""
        if self.n <= 1:
            return 0.0
        g = self.gradient(float(self.theta))
        try:
            v = self.quadratic(g, g)
        except (ArithmeticError, ValueError):
            return math.nan
        return max(v, 0.0) if math.isfinite(v) else math.nan

    @property
    def std_error(self) -> float:
        """Standard error of the adjusted ratio, sqrt(variance/n)."""
        return math.sqrt(self.variance / self.n) if self.n > 0 else 0.0


# QuantileStats (abflow.stats.quantile) is compared like a mean: q̂ and its order-statistic variance
Stats = (
    MeanStats | ProportionStats | RatioStats | RegressionAdjustedStats
    | RegressionAdjustedRatioStats | QuantileStats
)


@dataclass(frozen=True, slots=True)
class CompareResult:
    """Treatment-vs-control comparison; neutral values and an error code when degenerate."""

    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    std_error: float
    chance_to_win: float
    risk: float  # expected loss of choosing treatment, E[max(0, −lift)]
    risk_control: float  # expected loss of keeping control, E[max(0, lift)]
    method: str
    df: float | None = None
    error: str | None = None
    control_mean: float = 0.0
    treatment_mean: float = 0.0


def neutral_result(
    method: str, error: str, control_mean: float = 0.0, treatment_mean: float = 0.0
) -> CompareResult:
    """Neutral result for degenerate inputs: estimate 0, CI 0..0, p 1, chance 0.5, risk 0."""
    safe_c = control_mean if math.isfinite(control_mean) else 0.0
    safe_t = treatment_mean if math.isfinite(treatment_mean) else 0.0
    return CompareResult(
        estimate=0.0,
        ci_low=0.0,
        ci_high=0.0,
        p_value=1.0,
        std_error=0.0,
        chance_to_win=0.5,
        risk=0.0,
        risk_control=0.0,
        method=method,
        df=None,
        error=error,
        control_mean=safe_c,
        treatment_mean=safe_t,
    )
