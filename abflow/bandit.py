"""Thompson-sampling traffic allocation on the primary metric (pure: no database, no Prefect)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from abflow.bandit_periods import period_index, stratified_arms, usable_periods
from abflow.definitions import Experiment
from abflow.results import VariantStatRow
from abflow.stats import MeanStats, ProportionStats, RatioStats

if TYPE_CHECKING:
    from scipy.stats import rv_continuous

BanditStats = ProportionStats | MeanStats | RatioStats
Direction = Literal["increase", "decrease"]

# Weights are written to experiment_config rounded to 6 decimals (promotion.reweight); producing
# them already on that grid keeps reruns with unchanged data a no-op there.
_WEIGHT_UNITS = 1_000_000
# Each arm's posterior is gridded over its central 1 - 2e-12 mass; the rest cannot move P(best).
_TAIL = 1e-12
_GRID_POINTS = 4001
# Quadrature that misses total mass by more than this falls back to seeded Monte Carlo.
_QUAD_TOLERANCE = 1e-4


@dataclass(frozen=True)
class BanditDecision:
    """New traffic weights, each arm's chance of being best, and why."""

    weights: dict[str, float]
    probabilities: dict[str, float]
    reweighted: bool
    reason: str


def _posterior(s: BanditStats) -> rv_continuous:
    """Beta(1+conversions, 1+failures) for proportions; N(mean, var/n) for means and ratios."""
    # imported here: scipy.stats costs ~0.5 s to import, and only bandits need it (every
    # `abflow run` imports this module through the analysis flow)
    from scipy import stats as sps

    if isinstance(s, ProportionStats):
        conversions = min(max(float(s.sum), 0.0), float(s.n))
        return sps.beta(1.0 + conversions, 1.0 + float(s.n) - conversions)
    n = max(int(s.n), 1)
    sd = math.sqrt(max(float(s.variance), 0.0) / n)
    # A zero-variance arm is a point mass; a tiny positive scale keeps the maths finite and
    # still splits exact ties evenly.
    sd = max(sd, 1e-12 * max(1.0, abs(float(s.mean))))
    return sps.norm(float(s.mean), sd)


def probability_best(
    arms: Sequence[tuple[str, BanditStats]], *, direction: Direction = "increase"
) -> dict[str, float]:
    """P(arm is best) by quadrature of ∫ f_i(x) Π_{j≠i} F_j(x) dx (1 - F_j for 'decrease')."""
    if not arms:
        return {}
    if len(arms) == 1:
        return {arms[0][0]: 1.0}
    dists = [_posterior(s) for _, s in arms]
    # One grid per arm over its own bulk, merged: a narrow posterior's cdf step is then resolved
    # even inside a wide posterior's range.
    grid = np.unique(
        np.concatenate([np.linspace(d.ppf(_TAIL), d.isf(_TAIL), _GRID_POINTS) for d in dists])
    )
    log_pdf = np.array([d.logpdf(grid) for d in dists])
    log_beaten = np.array(
        [d.logcdf(grid) if direction == "increase" else d.logsf(grid) for d in dists]
    )
    out: dict[str, float] = {}
    for i, (key, _) in enumerate(arms):
        others = np.delete(log_beaten, i, axis=0).sum(axis=0)
        integrand = np.exp(np.where(np.isfinite(log_pdf[i]), log_pdf[i] + others, -np.inf))
        out[key] = float(np.trapezoid(integrand, grid))
    return out


def monte_carlo_probability_best(
    arms: Sequence[tuple[str, BanditStats]],
    *,
    direction: Direction = "increase",
    seed: int = 0,
    draws: int = 200_000,
) -> dict[str, float]:
    """P(arm is best) as the share of seeded posterior draws in which the arm wins."""
    rng = np.random.default_rng(seed)
    dists = [_posterior(s) for _, s in arms]
    wins = np.zeros(len(arms), dtype=np.int64)
    done = 0
    # Chunks bound memory at O(arms x 250k) whatever the number of draws.
    while done < draws:
        size = min(250_000, draws - done)
        sample = np.array([d.rvs(size=size, random_state=rng) for d in dists])
        best = sample.argmax(axis=0) if direction == "increase" else sample.argmin(axis=0)
        wins += np.bincount(best, minlength=len(arms))
        done += size
    return {key: float(w) / draws for (key, _), w in zip(arms, wins, strict=True)}


def floored_weights(
    probabilities: Mapping[str, float], floor: float, total: float = 1.0
) -> dict[str, float]:
    """Probabilities with every arm at least `floor`, summing to `total`, on a 1e-6 grid."""
    keys = list(probabilities)
    if not keys:
        return {}
    budget = round(total * _WEIGHT_UNITS)
    # An unattainable floor (k x floor > total) degrades to the equal split it implies.
    floor_units = min(round(floor * _WEIGHT_UNITS), budget // len(keys))
    p = {k: max(float(probabilities[k]), 0.0) for k in keys}
    pinned: set[str] = set()
    # Water-filling: arms whose share falls under the floor are pinned to it; the remaining mass
    # is split over the others in proportion to their probabilities, until no arm falls under.
    # It terminates with a free arm left: the free shares average at least the floor.
    while True:
        free = [k for k in keys if k not in pinned]
        mass = budget - floor_units * len(pinned)
        total = sum(p[k] for k in free)
        share = {k: mass * (p[k] / total if total > 0 else 1.0 / len(free)) for k in free}
        low = {k for k, v in share.items() if v < floor_units}
        if not low:
            break
        pinned |= low
    raw = {**{k: float(floor_units) for k in pinned}, **share}
    # Largest remainder: integer micro-units that sum exactly to 10^6 and keep every floor.
    units = {k: math.floor(v) for k, v in raw.items()}
    short = budget - sum(units.values())
    for k in sorted(keys, key=lambda k: (units[k] - raw[k], keys.index(k)))[:short]:
        units[k] += 1
    return {k: units[k] / _WEIGHT_UNITS for k in keys}


def thompson_weights(
    arms: Sequence[tuple[str, BanditStats]],
    *,
    floor: float = 0.01,
    min_units: int = 100,
    direction: Direction = "increase",
    seed: int = 0,
    draws: int = 200_000,
    current: Mapping[str, float] | None = None,
    top_two: float | None = None,
) -> BanditDecision:
    """Thompson-sampling weights: P(arm is best) with a per-arm floor; unchanged while data is thin.

    `current` are the weights in force (equal split when omitted); they are returned as they are
    when any arm has fewer than `min_units` units. `seed`/`draws` drive the Monte Carlo fallback
    used only if quadrature loses mass. `top_two` (β) gives top-two Thompson sampling.
    Priors: Beta(1, 1) on a rate; flat on a mean or ratio (the normal likelihood alone).
    """
    keys = [k for k, _ in arms]
    if len(set(keys)) != len(keys) or len(keys) < 2:
        raise ValueError("thompson_weights needs at least two arms with distinct keys")
    kept = dict(current) if current is not None else {k: 1.0 / len(keys) for k in keys}
    # An arm whose metric is undefined (a ratio with no denominator yet) says nothing about its
    # value: it keeps the weight it has; the others share the rest (never cut on missing data).
    undefined = [k for k, st_ in arms if not _defined(st_)]
    defined = [(k, st_) for k, st_ in arms if k not in undefined]
    if len(defined) < 2:
        names = ", ".join(undefined)
        return BanditDecision(
            weights=kept,
            probabilities={},
            reweighted=False,
            reason=f"weights unchanged: the primary metric is undefined for {names}",
        )
    mass = 1.0 - sum(kept.get(k, 0.0) for k in undefined)
    arms = defined
    probs = probability_best(arms, direction=direction)
    method = "quadrature"
    if not all(math.isfinite(v) for v in probs.values()) or (
        abs(sum(probs.values()) - 1.0) > _QUAD_TOLERANCE
    ):
        probs = monte_carlo_probability_best(arms, direction=direction, seed=seed, draws=draws)
        method = f"Monte Carlo ({draws} draws, seed {seed})"
    else:
        # Remove the (tiny) quadrature error so the probabilities are a distribution.
        total = sum(probs.values())
        probs = {k: v / total for k, v in probs.items()}
    probs_txt = ", ".join(f"{k} {v * 100:.1f}%" for k, v in probs.items())
    thin = [(k, int(s.n)) for k, s in arms if int(s.n) < min_units]
    if thin:
        which = ", ".join(f"{k} has {n}" for k, n in thin)
        return BanditDecision(
            weights=kept,
            probabilities=probs,
            reweighted=False,
            reason=(
                f"weights unchanged: {which} units, fewer than the {min_units} required per arm "
                f"before reweighting (P(best) so far: {probs_txt})"
            ),
        )
    weights = floored_weights(_top_two(probs, top_two) if top_two else probs, floor, mass)
    weights = {**{k: kept[k] for k in undefined}, **weights}
    weights = {k: weights[k] for k in [*keys]}
    weights_txt = ", ".join(f"{k} {v * 100:.1f}%" for k, v in weights.items())
    better = "highest" if direction == "increase" else "lowest"
    return BanditDecision(
        weights=weights,
        probabilities=probs,
        reweighted=True,
        reason=(
            f"Thompson sampling: P({better} primary metric) {probs_txt} by {method}; "
            f"weights {weights_txt} (floor {floor * 100:g}% per arm)"
        ),
    )


def _defined(s: BanditStats) -> bool:
    """Whether an arm's statistics define the metric (ratios need a non-zero denominator)."""
    if isinstance(s, RatioStats):
        return s.valid and s.d_sum != 0
    return bool(s.valid)


def _top_two(probs: Mapping[str, float], beta: float) -> dict[str, float]:
    """Top-two Thompson allocation (Russo 2016): the leader with β, else a re-drawn challenger."""
    # Leader I ~ P(best); the challenger is re-sampled until it differs from I, so
    # P(J = i | I = j) = p_i / (1 − p_j) and ψ_i = β·p_i + (1 − β)·Σ_{j≠i} p_j·p_i/(1 − p_j).
    out = {}
    for i, p_i in probs.items():
        challenger = sum(
            p_j * p_i / (1.0 - p_j) for j, p_j in probs.items() if j != i and p_j < 1.0
        )
        out[i] = beta * p_i + (1.0 - beta) * challenger
    total = sum(out.values())
    return {k: v / total for k, v in out.items()} if total > 0 else dict(probs)


def primary_arms(
    experiment: Experiment, rows: Iterable[VariantStatRow], segment: str = "all"
) -> list[tuple[str, BanditStats]]:
    """The primary metric's statistics per variant in one segment, in definition order."""
    m = experiment.primary_metric
    by_variant = {r.variant_key: r for r in rows if r.metric_key == m.key and r.segment == segment}
    arms: list[tuple[str, BanditStats]] = []
    for v in experiment.variants:
        r = by_variant.get(v.key)
        # An arm without rows has no units yet, which holds the weights (min_units).
        n, total, squares = (r.units, r.sum, r.sum_squares) if r else (0, 0.0, 0.0)
        if m.kind == "proportion":
            arms.append((v.key, ProportionStats(n=n, sum=total)))
        elif m.kind == "ratio" and r is not None:
            arms.append(
                (
                    v.key,
                    RatioStats(
                        n=n,
                        m_sum=total,
                        m_sum_squares=squares,
                        d_sum=r.denominator_sum or 0.0,
                        d_sum_squares=r.denominator_sum_squares or 0.0,
                        m_d_sum_of_products=r.sum_products or 0.0,
                    ),
                )
            )
        else:
            arms.append((v.key, MeanStats(n=n, sum=total, sum_squares=squares)))
    return arms


def period_weighted_arms(
    experiment: Experiment, rows: Iterable[VariantStatRow]
) -> list[tuple[str, BanditStats]] | None:
    """Primary-metric arms post-stratified on allocation period, for Thompson sampling.

    Each (arm, period) cell enters as its posterior: Beta(1 + conversions, 1 + failures) for a
    rate, the normal likelihood (flat prior) for a mean or ratio; the arm's posterior is the
    normal with the period-weighted mean and variance (bandit_periods.stratified_arms). Arms
    whose metric is undefined overall stay as they are (thompson_weights keeps their weight).
    None without per-period rows or when no period has data for every defined arm.
    """
    rows = list(rows)
    pooled = primary_arms(experiment, rows)
    undefined = {k for k, s in pooled if not _defined(s)}
    labels = sorted(
        {r.segment for r in rows if period_index(r.segment) is not None},
        key=lambda seg: period_index(seg) or 0,
    )
    if not labels:
        return None
    per_period = []
    for label in labels:
        in_period = {r.variant_key for r in rows if r.segment == label}
        per_period.append(
            {
                k: s
                for k, s in primary_arms(experiment, rows, label)
                if k in in_period and k not in undefined
            }
        )
    if usable_periods(per_period) == 0:
        return None
    weighted = stratified_arms(per_period, beta_prior=True)
    return [(k, weighted.get(k, s) if k not in undefined else s) for k, s in pooled]


def allocate(
    experiment: Experiment,
    rows: Iterable[VariantStatRow],
    current: Mapping[str, float] | None = None,
) -> BanditDecision:
    """thompson_weights on the experiment's primary metric with its bandit settings.

    With per-period rows ('#period=N' segments) the arms are period-weighted, so neither a
    drifting baseline nor the bandit's own reweights move the next weights.
    """
    d = experiment.decision
    rows = list(rows)
    kept = dict(current) if current is not None else {v.key: v.weight for v in experiment.variants}
    arms = period_weighted_arms(experiment, rows)
    if arms is None and any(period_index(r.segment) is not None for r in rows):
        return BanditDecision(
            weights=kept,
            probabilities={},
            reweighted=False,
            reason="weights unchanged: no allocation period has data for every arm yet",
        )
    return thompson_weights(
        arms or primary_arms(experiment, rows),
        floor=d.bandit_floor,
        min_units=d.bandit_min_units,
        direction=experiment.primary_metric.direction,
        seed=d.seed,
        current=kept,
        top_two=d.bandit_top_two,
    )
