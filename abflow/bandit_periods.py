"""Bandit estimates that stay honest when weights and baselines move: stratify by period.

A bandit changes its traffic weights at each reweight, and the baseline may drift at the same
time (weekdays, a campaign). Pooling every unit then confounds arm with time (Simpson's
paradox). Within one allocation period assignment is a fixed-weight randomisation, so each
period gives an unbiased per-arm mean; post-stratification on period (Miratrix, Sekhon & Yu
2013) combines them with the same weights for every arm, w_p = N_p / N (the period's share of
all units), which is what GrowthBook's bandits do with their period weights. The variance of the
stratified mean is Σ_p w_p² σ²_{a,p} / n_{a,p}. Pure: no database, no Prefect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from scipy import stats as sps

from abflow.stats import MeanStats, ProportionStats, RatioStats

ArmStats = ProportionStats | MeanStats | RatioStats


@dataclass(frozen=True)
class Period:
    """One allocation period: from `start` (inclusive) the `weights` were in force."""

    start: datetime
    weights: Mapping[str, float]


def periods_from_history(
    initial: Mapping[str, float],
    reweights: Sequence[tuple[datetime, Mapping[str, float]]],
    start: datetime,
) -> list[Period]:
    """Periods from the experiment start and each reweight (time, new weights), in time order."""
    out = [Period(start, dict(initial))]
    for at, weights in sorted(reweights, key=lambda r: r[0]):
        if at <= out[-1].start:
            out[-1] = Period(out[-1].start, dict(weights))
        else:
            out.append(Period(at, dict(weights)))
    return out


def _mean_and_var(s: ArmStats) -> tuple[float, float] | None:
    """An arm's mean in one period and the variance of that mean; None when undefined."""
    if not s.valid or s.n < 2:
        return None
    if isinstance(s, RatioStats) and s.d_sum == 0:
        return None
    var = float(s.variance)
    if not math.isfinite(var):
        return None
    return float(s.mean), var / float(s.n)


def stratified_arms(per_period: Sequence[Mapping[str, ArmStats]]) -> dict[str, MeanStats]:
    """Per arm, the period-weighted mean as MeanStats with the stratified variance of the mean.

    Periods where some arm has no usable data are left out (their weight goes to the others):
    a period only compares arms that were all running in it.
    """
    if not per_period:
        return {}
    arms = sorted({k for p in per_period for k in p})
    usable: list[tuple[int, dict[str, tuple[float, float]]]] = []
    for p in per_period:
        found = {k: _mean_and_var(p[k]) for k in arms if k in p}
        mv = {k: v for k, v in found.items() if v is not None}
        if len(mv) == len(arms):
            usable.append((sum(int(p[k].n) for k in arms), mv))
    total = sum(n for n, _ in usable)
    out: dict[str, MeanStats] = {}
    for k in arms:
        n = sum(int(p[k].n) for p in per_period if k in p)
        if total == 0 or n < 2:
            out[k] = MeanStats(n=n, sum=0.0, sum_squares=0.0)
            continue
        mean = sum(size / total * mv[k][0] for size, mv in usable)
        var_mean = sum((size / total) ** 2 * mv[k][1] for size, mv in usable)
        # MeanStats whose mean is the stratified mean and whose variance/n is its variance.
        sigma2 = n * var_mean
        out[k] = MeanStats(n=n, sum=n * mean, sum_squares=(n - 1) * sigma2 + n * mean * mean)
    return out


def srm_by_period(
    counts: Sequence[Mapping[str, int]], weights: Sequence[Mapping[str, float]]
) -> float:
    """SRM p-value against the weights in force in each period: Σ Pearson χ², Σ (k_p − 1) df."""
    chi2 = 0.0
    df = 0
    for c, w in zip(counts, weights, strict=True):
        live = [k for k, wt in w.items() if wt > 0]
        n = sum(c.get(k, 0) for k in live)
        if n == 0 or len(live) < 2:
            continue
        total_w = sum(w[k] for k in live)
        for k in live:
            expected = n * w[k] / total_w
            chi2 += (c.get(k, 0) - expected) ** 2 / expected
        df += len(live) - 1
    return float(sps.chi2.sf(chi2, df)) if df > 0 else 1.0
