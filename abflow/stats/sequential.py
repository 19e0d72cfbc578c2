"""Always-valid asymptotic confidence sequences (Howard et al. 2021; gbstats sequential test)."""

from __future__ import annotations

import math


def _rho(alpha: float, tuning: float) -> float:
    """Mixture width ρ, boundary tightest at N* units (Waudby-Smith et al. 2023 eq. 161)."""
    log_a = math.log(alpha)
    return math.sqrt((-2.0 * log_a + math.log(-2.0 * log_a + 1.0)) / tuning)


def cs_half_width(variance: float, n_total: float, alpha: float, tuning: float) -> float:
    """Half-width of the two-sided normal-mixture CS at level 1−α (Waudby-Smith et al. eq. 9)."""
    # gbstats SequentialTwoSidedTTest: s² = Var(lift)·N is the per-unit variance, N = nA + nB.
    rho = _rho(alpha, tuning)
    nr2 = n_total * rho * rho
    s2 = variance * n_total
    return math.sqrt(s2) * math.sqrt(
        2.0 * (nr2 + 1.0) * math.log(math.sqrt(nr2 + 1.0) / alpha) / (n_total * rho) ** 2
    )


def cs_p_value(
    estimate: float, variance: float, n_total: float, alpha: float, tuning: float
) -> float:
    """Always-valid p: smallest α' whose CS (ρ fixed at the configured α) excludes 0."""
    # Inverting cs_half_width in α' with ρ held fixed gives the normal-mixture likelihood
    # ratio bound p = min(1, sqrt(1+Nρ²)·exp(−z²Nρ²/(2(1+Nρ²)))), z² = estimate²/variance
    # (Howard et al. 2021; same statistic as gbstats). p ≤ α  ⇔  the reported CS excludes 0.
    rho = _rho(alpha, tuning)
    nr2 = n_total * rho * rho
    z2 = estimate * estimate / variance
    log_p = 0.5 * math.log1p(nr2) - 0.5 * z2 * nr2 / (1.0 + nr2)
    return min(1.0, math.exp(min(log_p, 0.0)))


def cs_boundary_z(
    n_total: float, alpha: float, tuning: float, rho_alpha: float | None = None
) -> float:
    """CS half-width in standard errors at N units: the |z| an effect must exceed to be called."""
    # half = se · sqrt(2(Nρ²+1)·log(sqrt(Nρ²+1)/α) / (Nρ²)); ρ is fixed by the configured α
    # (rho_alpha), α here may be a multiplicity-adjusted level (Howard et al. 2021, eq. 14).
    rho = _rho(alpha if rho_alpha is None else rho_alpha, tuning)
    nr2 = max(n_total, 1.0) * rho * rho
    return math.sqrt(2.0 * (nr2 + 1.0) * math.log(math.sqrt(nr2 + 1.0) / alpha) / nr2)


# The mixture is tuned to a quarter of the planned sample: the boundary is then within ~10% of
# its minimum from N*/4 to 16·N*, so large effects can stop early and the plan keeps its power.
PLAN_OVER_TUNING = 4.0


def planned_boundary_z(alpha: float) -> float:
    """The CS boundary in standard errors at the planned sample N = 4·N* (3.13 at α = 0.05)."""
    # Nρ² = 4c with c = −2·log α + log(1 − 2·log α), whatever N* is: a constant of α, the
    # sequential analogue of z_{1−α/2} for planning.
    return cs_boundary_z(PLAN_OVER_TUNING, alpha, 1.0)
