"""Sample size, minimum detectable effect and days remaining (two-sample normal approximation)."""

from __future__ import annotations

import math
from typing import Literal

from scipy import special

from abflow.stats.sequential import planned_boundary_z

PowerKind = Literal["proportion", "mean"]

# Convention (matches statsmodels NormalIndPower with ratio=1, two-sided, both rejection tails):
#   power(n) = Φ(d·√(n/2) − z_{1−α'/2}) + Φ(−d·√(n/2) − z_{1−α'/2}),  d = δ/σ̄,
#   σ̄² = (σC² + σT²)/2, so σ̄²·2/n is the unpooled variance of the difference at n per arm.
# Proportions use σ² = p(1−p) in each arm (the normal approximation of the Welch/z test we run),
# not Cohen's arcsine h. With k variants α' = α/(k−1): Bonferroni over the k−1 comparisons.


def _alpha_per_comparison(alpha: float, variants: int) -> float:
    """Bonferroni share of α for the variants−1 treatment-vs-control comparisons."""
    return alpha / max(variants - 1, 1)


def _critical(alpha: float, sequential: bool) -> float:
    """|z| a comparison must exceed: z_{1−α/2}, or the confidence sequence's boundary at N*."""
    # Sequential plans put the mixture's tuning N* at the planned sample, where the boundary is
    # 3.04 standard errors at α = 0.05 instead of 1.96 (abflow.stats.sequential.planned_boundary_z).
    return planned_boundary_z(alpha) if sequential else float(special.ndtri(1.0 - alpha / 2.0))


def _power(d: float, n: float, alpha: float, sequential: bool = False) -> float:
    """Two-sided normal power at standardized effect d with n units per arm."""
    crit = _critical(alpha, sequential)
    shift = abs(d) * math.sqrt(n / 2.0)
    return float(special.ndtr(shift - crit) + special.ndtr(-shift - crit))


def _check(alpha: float, power: float, variants: int) -> None:
    """Reject planning inputs that make the calculation meaningless."""
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if not 0.0 < power < 1.0:
        raise ValueError("power must be in (0, 1)")
    if variants < 2:
        raise ValueError("variants must be at least 2")


def _effect(
    baseline: float, mde: float, relative: bool, kind: PowerKind, std: float | None
) -> tuple[float, float]:
    """(absolute effect δ, pooled σ̄) for the planning convention above."""
    delta = mde * abs(baseline) if relative else mde
    if kind == "proportion":
        treated = baseline + delta
        if not (0.0 < baseline < 1.0 and 0.0 < treated < 1.0):
            raise ValueError("baseline and baseline+effect must be rates in (0, 1)")
        sd = math.sqrt((baseline * (1 - baseline) + treated * (1 - treated)) / 2.0)
    else:
        if std is None or not std > 0:
            raise ValueError("kind='mean' needs a positive std")
        sd = float(std)
    return delta, sd


def sample_size_per_variant(
    baseline: float,
    mde: float,
    *,
    relative: bool,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    kind: PowerKind = "proportion",
    std: float | None = None,
    sequential: bool = False,
) -> int:
    """Units per variant to detect mde with the given power (statsmodels NormalIndPower match)."""
    _check(alpha, power, variants)
    if mde == 0 or not math.isfinite(mde):
        raise ValueError("mde must be a finite non-zero effect")
    if relative and baseline == 0:
        raise ValueError("a relative mde needs a non-zero baseline")
    delta, sd = _effect(baseline, mde, relative, kind, std)
    a = _alpha_per_comparison(alpha, variants)
    d = delta / sd
    # One-tail closed form is an upper bound (the far tail only adds power); solve exactly below.
    upper = 2.0 * ((_critical(a, sequential) + special.ndtri(power)) / d) ** 2
    from scipy import optimize  # 0.3 s of imports (linalg, sparse): only when solving

    n = optimize.brentq(
        lambda x: _power(d, x, a, sequential) - power,
        upper * 1e-9,
        upper,
        xtol=1e-10,
        rtol=1e-14,
        maxiter=500,
    )
    return max(int(math.ceil(n - 1e-9)), 2)


def minimum_detectable_effect(
    baseline: float,
    n_per_variant: float,
    *,
    relative: bool,
    alpha: float = 0.05,
    power: float = 0.8,
    variants: int = 2,
    kind: PowerKind = "proportion",
    std: float | None = None,
    sequential: bool = False,
) -> float:
    """Smallest positive effect detectable with n units per variant (inverse of sample size)."""
    _check(alpha, power, variants)
    if relative and baseline == 0:
        raise ValueError("a relative mde needs a non-zero baseline")
    # No data yet is not an error: answer for one unit, i.e. "only a huge effect is detectable".
    n = max(float(n_per_variant), 1.0) if math.isfinite(float(n_per_variant)) else 1.0
    a = _alpha_per_comparison(alpha, variants)
    d_upper = (_critical(a, sequential) + special.ndtri(power)) / math.sqrt(n / 2.0)
    from scipy import optimize

    d = optimize.brentq(
        lambda x: _power(x, n, a, sequential) - power,
        0.0,
        float(d_upper),
        xtol=1e-14,
        rtol=1e-14,
        maxiter=500,
    )
    if kind == "mean":
        _, sd = _effect(baseline, 1.0, False, kind, std)
        delta = d * sd
    else:
        if not 0.0 < baseline < 1.0:
            raise ValueError("baseline must be a rate in (0, 1)")
        p = baseline
        cap = 1.0 - p - 1e-12

        def gap(x: float) -> float:
            q = p + x
            return x / math.sqrt((p * (1 - p) + q * (1 - q)) / 2.0) - d

        # d(δ) increases with δ; if even the largest possible lift is not enough, report that cap.
        delta = cap if gap(cap) < 0 else optimize.brentq(gap, 0.0, cap, xtol=1e-15, rtol=1e-14)
    return delta / abs(baseline) if relative else delta


def days_remaining(
    units_so_far_per_variant: int, required_per_variant: int, days_elapsed: float
) -> float | None:
    """Days until required units at the observed daily rate; None when the rate is unknown."""
    if units_so_far_per_variant >= required_per_variant:
        return 0.0
    if not (days_elapsed > 0 and units_so_far_per_variant > 0) or not math.isfinite(days_elapsed):
        return None
    rate = units_so_far_per_variant / days_elapsed
    return (required_per_variant - units_so_far_per_variant) / rate
