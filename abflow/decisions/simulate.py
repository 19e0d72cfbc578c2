"""Operating characteristics of one definition's rules under its own daily schedule."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from statistics import median
from typing import Any

import numpy as np
from scipy import special

from abflow import health
from abflow import stats as st
from abflow.decisions.library import evaluate, to_sufficient
from abflow.definitions import Experiment, Metric
from abflow.stats.quantile import BOUND_Z

TERMINAL = ("ship", "rollback")
DECISIONS = ("ship", "rollback", "stop_inconclusive", "investigate", "keep_running")
DEFAULT_RATE = 0.10  # proportion metrics: baseline conversion rate
DEFAULT_MEAN, DEFAULT_SD = 1.0, 1.0  # mean metrics: per-unit value N(mean, sd²), CV 1 by default
RATIO_EVENTS = 5.0  # ratio metrics: Poisson denominator per unit, numerator Binomial(d, rate)


@dataclass(frozen=True)
class Scenario:
    """One simulated world: a relative effect per metric for every treatment (none = A/A)."""

    name: str
    effects: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ScenarioResult:
    """How often each decision was first reached by each day, over all simulated experiments."""

    scenario: Scenario
    runs: int
    days: int
    # cumulative share of runs that have shipped / rolled back by day d (index d-1); a run stops
    # at its first ship or rollback (the schedule acts on it), inconclusive runs go on.
    ship_by_day: list[float]
    rollback_by_day: list[float]
    stop_inconclusive_by_day: list[float]
    median_days_to_decision: float | None
    ship_variants: dict[str, int]

    @property
    def p_ship(self) -> float:
        """P(ever ship) within the simulated days."""
        return self.ship_by_day[-1] if self.ship_by_day else 0.0

    @property
    def p_rollback(self) -> float:
        """P(ever roll back) within the simulated days."""
        return self.rollback_by_day[-1] if self.rollback_by_day else 0.0

    @property
    def p_stop_inconclusive(self) -> float:
        """P(stop_inconclusive recommended at least once, without a ship/rollback before)."""
        return self.stop_inconclusive_by_day[-1] if self.stop_inconclusive_by_day else 0.0

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "scenario": self.scenario.name,
            "effects": dict(self.scenario.effects),
            "runs": self.runs,
            "days": self.days,
            "p_ship": self.p_ship,
            "p_rollback": self.p_rollback,
            "p_stop_inconclusive": self.p_stop_inconclusive,
            "median_days_to_decision": self.median_days_to_decision,
            "ship_by_day": self.ship_by_day,
            "rollback_by_day": self.rollback_by_day,
            "stop_inconclusive_by_day": self.stop_inconclusive_by_day,
            "ship_variants": self.ship_variants,
        }


def _metric_stats(
    rng: np.random.Generator,
    metric: Metric,
    n: np.ndarray,
    effect: float,
    baseline: float | None,
    sd: float | None = None,
) -> list[dict[str, np.ndarray]]:
    """Daily sufficient statistics of one arm for one metric: arrays shaped (runs, days)."""
    if metric.kind == "proportion":
        rate = (baseline if baseline is not None else DEFAULT_RATE) * (1.0 + effect)
        rate = min(max(rate, 0.0), 1.0)
        conv = rng.binomial(n, rate).astype(float)
        return [{"n": n, "sum": conv, "sum_squares": conv}]
    if metric.kind in ("mean", "quantile"):
        # quantile metrics: normal units too; _arm turns their moments into the quantile
        mean = (baseline if baseline is not None else DEFAULT_MEAN) * (1.0 + effect)
        if sd is None:
            sd = DEFAULT_SD * abs(baseline or DEFAULT_MEAN) / DEFAULT_MEAN
        # Exact for normal units: Σy ~ N(nμ, nσ²) and Σ(y−ȳ)² ~ σ²χ²(n−1), independent.
        safe = np.maximum(n, 1)
        total = rng.normal(safe * mean, np.sqrt(safe) * sd)
        ss = sd * sd * rng.chisquare(np.maximum(safe - 1, 1))
        total = np.where(n > 0, total, 0.0)
        squares = np.where(n > 0, ss + total * total / safe, 0.0)
        return [{"n": n, "sum": total, "sum_squares": squares}]
    # Ratio: the per-unit pairs are needed for Σmd, drawn per unit (fine for CLI-sized runs).
    rate = (baseline if baseline is not None else DEFAULT_RATE) * (1.0 + effect)
    rate = min(max(rate, 0.0), 1.0)
    out = {k: np.zeros(n.shape) for k in ("sum", "sum_squares", "d_sum", "d_sq", "md")}
    for idx in np.ndindex(n.shape):
        d = rng.poisson(RATIO_EVENTS, int(n[idx])).astype(float)
        m = rng.binomial(d.astype(int), rate).astype(float)
        out["sum"][idx], out["sum_squares"][idx] = m.sum(), (m * m).sum()
        out["d_sum"][idx], out["d_sq"][idx], out["md"][idx] = d.sum(), (d * d).sum(), (m * d).sum()
    return [{"n": n, **out}]


def _arm(
    metric: Metric, cum: dict[str, float]
) -> st.MeanStats | st.ProportionStats | st.RatioStats | st.QuantileStats:
    n = int(cum["n"])
    if metric.kind == "quantile":
        return _normal_quantile(metric, n, cum)
    if metric.kind == "proportion":
        return st.ProportionStats(n=n, sum=cum["sum"])
    if metric.kind == "mean":
        return st.MeanStats(n=n, sum=cum["sum"], sum_squares=cum["sum_squares"])
    return st.RatioStats(
        n=n,
        m_sum=cum["sum"],
        m_sum_squares=cum["sum_squares"],
        d_sum=cum["d_sum"],
        d_sum_squares=cum["d_sq"],
        m_d_sum_of_products=cum["md"],
    )


def _normal_quantile(metric: Metric, n: int, cum: dict[str, float]) -> st.QuantileStats:
    """A quantile metric's arm for normal units: q̂ = ȳ + s·z_ν, with the width of the
    order-statistic interval the warehouse estimator has (asymptotic sd s·sqrt(ν(1−ν))/φ(z_ν))."""
    nu = float(metric.quantile or 0.5)
    mean = st.MeanStats(n=n, sum=cum["sum"], sum_squares=cum["sum_squares"])
    sd = math.sqrt(mean.variance)
    z = float(special.ndtri(nu))
    q = mean.mean + sd * z
    half = BOUND_Z * sd * math.sqrt(nu * (1 - nu)) / (math.exp(-z * z / 2) / math.sqrt(2 * math.pi))
    half /= math.sqrt(max(n, 1))
    return st.QuantileStats(n=n, nu=nu, quantile=q, lower=q - half, upper=q + half)


def simulate(
    experiment: Experiment,
    scenario: Scenario,
    *,
    days: int = 28,
    units_per_day: int = 2000,
    runs: int = 1000,
    seed: int = 0,
    baselines: Mapping[str, float] | None = None,
    sds: Mapping[str, float] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ScenarioResult:
    """Simulate `runs` experiments analysed once a day through the flow's own decision path."""
    rng = np.random.default_rng(seed)
    baselines = baselines or {}
    sds = sds or {}
    weights = np.array([v.weight for v in experiment.variants])
    # Daily exposures split multinomially by the configured weights (so SRM behaves as in life).
    counts = rng.multinomial(units_per_day, weights / weights.sum(), size=(runs, days))
    data: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    for i, v in enumerate(experiment.variants):
        n = counts[:, :, i]
        for m in experiment.metrics:
            effect = 0.0 if v.control else float(scenario.effects.get(m.key, 0.0))
            daily = _metric_stats(rng, m, n, effect, baselines.get(m.key), sds.get(m.key))[0]
            data[(v.key, m.key)] = {k: np.cumsum(a, axis=1) for k, a in daily.items()}
    ship = np.zeros(days)
    rollback = np.zeros(days)
    inconclusive = np.zeros(days)
    first_days: list[int] = []
    ship_variants: dict[str, int] = {}
    for r in range(runs):
        stopped_seen = False
        for d in range(days):
            stats = []
            units = {}
            for v in experiment.variants:
                for m in experiment.metrics:
                    cum = {k: float(a[r, d]) for k, a in data[(v.key, m.key)].items()}
                    stats.append(to_sufficient(m.key, v.key, _arm(m, cum)))
                    if m.role == "primary":
                        units[v.key] = int(cum["n"])
            checks = [health.srm_check(experiment, units)]
            rec = evaluate(experiment, stats, units, float(d + 1), checks)[2]
            if rec.decision == "stop_inconclusive" and not stopped_seen:
                stopped_seen = True
                inconclusive[d:] += 1
            if rec.decision in TERMINAL:
                (ship if rec.decision == "ship" else rollback)[d:] += 1
                first_days.append(d + 1)
                if rec.decision == "ship" and rec.variant_key:
                    ship_variants[rec.variant_key] = ship_variants.get(rec.variant_key, 0) + 1
                break
        if progress is not None:
            progress(r + 1)
    return ScenarioResult(
        scenario=scenario,
        runs=runs,
        days=days,
        ship_by_day=[float(x / runs) for x in ship],
        rollback_by_day=[float(x / runs) for x in rollback],
        stop_inconclusive_by_day=[float(x / runs) for x in inconclusive],
        median_days_to_decision=float(median(first_days)) if first_days else None,
        ship_variants=ship_variants,
    )
