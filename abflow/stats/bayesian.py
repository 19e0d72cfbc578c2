"""Bayesian normal-approximation lift posterior, risk and exact Beta-Binomial P(B>A)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special

from abflow.stats.models import ProportionStats

# Proper prior on the relative lift, N(0, 0.3²) (GrowthBook's default informative prior).
PROPER_PRIOR_MEAN = 0.0
PROPER_PRIOR_VARIANCE = 0.3**2


@dataclass(frozen=True)
class NormalPrior:
    """A normal prior N(mean, stddev²) on the relative lift (GrowthBook's custom prior)."""

    mean: float
    stddev: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.stddev) and self.stddev > 0):
            raise ValueError("a normal prior needs a finite mean and a positive finite stddev")


PROPER_PRIOR = NormalPrior(PROPER_PRIOR_MEAN, math.sqrt(PROPER_PRIOR_VARIANCE))

# Above this many series terms the closed form is summed in chunks to bound memory.
_CHUNK = 1_000_000
# Beyond this many terms the series costs ~0.1 s and gains nothing: at such counts lgamma round-off
# (~1e-8) dominates both methods, so switch to O(1) quadrature.
_MAX_SERIES_TERMS = 250_000


def posterior_normal(
    data_mean: float, data_variance: float, prior_mean: float, prior_variance: float | None
) -> tuple[float, float]:
    """Normal-normal conjugate posterior (precision-weighted); flat prior when variance is None."""
    if prior_variance is None or prior_variance <= 0:
        return data_mean, data_variance
    data_precision = 1.0 / data_variance
    prior_precision = 1.0 / prior_variance
    post_precision = data_precision + prior_precision
    post_mean = (data_precision * data_mean + prior_precision * prior_mean) / post_precision
    return post_mean, 1.0 / post_precision


def chance_to_win(mean: float, std: float) -> float:
    """P(lift > 0) under N(mean, std²) (gbstats chance to beat control)."""
    if std <= 0:
        return 0.5 if mean == 0 else (1.0 if mean > 0 else 0.0)
    return float(special.ndtr(mean / std))


def expected_losses(mean: float, std: float) -> tuple[float, float]:
    """(risk of choosing treatment E[max(0,−Δ)], risk of keeping control E[max(0,Δ)])."""
    # Truncated-normal expected loss as in GrowthBook gbstats get_risk: (1−P(Δ>0))·E[−Δ|Δ<0]
    # = σφ(μ/σ) − μΦ(−μ/σ), and symmetrically for control; written in closed form.
    if std <= 0:
        return max(-mean, 0.0), max(mean, 0.0)
    z = mean / std
    pdf = math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    risk_treatment = std * pdf - mean * float(special.ndtr(-z))
    risk_control = std * pdf + mean * float(special.ndtr(z))
    # Cancellation in the far tail can leave a tiny negative number; losses are ≥ 0 by definition.
    return max(risk_treatment, 0.0), max(risk_control, 0.0)


def _p_x_greater(ax: int, bx: float, ay: float, by: float) -> float:
    """P(X>Y), X~Beta(ax,bx) with integer ax, Y~Beta(ay,by): Evan Miller's closed-form sum."""
    # P = Σ_{i<ax} B(ay+i, by+bx) / ((bx+i) B(1+i, bx) B(ay, by)), summed in log space.
    const = special.betaln(ay, by)
    pieces: list[float] = []
    for start in range(0, ax, _CHUNK):
        i = np.arange(start, min(start + _CHUNK, ax), dtype=np.float64)
        log_terms = (
            special.betaln(ay + i, by + bx) - np.log(bx + i) - special.betaln(1.0 + i, bx) - const
        )
        pieces.append(float(special.logsumexp(log_terms)))
    return float(math.exp(special.logsumexp(pieces)))


def _p_x_greater_quad(ax: float, bx: float, ay: float, by: float) -> float:
    """P(X>Y) = ∫ f_X(x) F_Y(x) dx by adaptive quadrature over X's bulk (±40 sd)."""
    mean = ax / (ax + bx)
    sd = math.sqrt(ax * bx / ((ax + bx) ** 2 * (ax + bx + 1.0)))
    lo, hi = max(0.0, mean - 40.0 * sd), min(1.0, mean + 40.0 * sd)
    from scipy import integrate  # only for huge counts; not imported by every run

    value, _ = integrate.quad(
        lambda x: (
            math.exp((ax - 1) * math.log(x) + (bx - 1) * math.log1p(-x) - special.betaln(ax, bx))
            * float(special.betainc(ay, by, x))
            if 0.0 < x < 1.0
            else 0.0
        ),
        lo,
        hi,
        points=[mean],
        limit=200,
        epsabs=1e-12,
        epsrel=1e-10,
    )
    return value


def beta_binomial_chance_to_win(control: ProportionStats, treatment: ProportionStats) -> float:
    """P(pB > pA) under Beta(1,1) priors: Evan Miller closed form, quadrature for huge counts."""
    if not (control.valid and treatment.valid):
        return 0.5
    a_a, b_a = 1.0 + float(control.sum), 1.0 + float(control.n - control.sum)
    a_b, b_b = 1.0 + float(treatment.sum), 1.0 + float(treatment.n - treatment.sum)
    params = (a_a, b_a, a_b, b_b)
    if min(params) > _MAX_SERIES_TERMS or not all(float(v).is_integer() for v in params):
        p = _p_x_greater_quad(a_b, b_b, a_a, b_a)
        return min(max(p, 0.0), 1.0) if math.isfinite(p) else 0.5
    # Four equivalent series (swap arms, or compare failure rates 1−p); pick the shortest so the
    # cost is O(min count) and 10M-unit arms stay fast.
    options = [
        (a_b, lambda: _p_x_greater(int(a_b), b_b, a_a, b_a)),
        (a_a, lambda: 1.0 - _p_x_greater(int(a_a), b_a, a_b, b_b)),
        (b_a, lambda: _p_x_greater(int(b_a), a_a, b_b, a_b)),
        (b_b, lambda: 1.0 - _p_x_greater(int(b_b), a_b, b_a, a_a)),
    ]
    _, fn = min(options, key=lambda o: o[0])
    p = fn()
    return min(max(p, 0.0), 1.0) if math.isfinite(p) else 0.5
