"""A bandit's operating characteristics when its weights and the baseline move (pure, seeded).

Each simulated experiment runs the product's own path period by period: the units of a period
are split by the weights then in force, their conversions drawn at that period's base rate
(which drifts), the sufficient statistics go through `pipeline`'s analysis exactly as the
warehouse would return them (overall rows and '#period=N' rows), and `bandit.allocate` sets the
next period's weights from the variant_stats rows. At the end the reported lift's interval is
checked against the true effect. `python -m abflow.decisions.bandit_sim` prints the figures.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from abflow import bandit
from abflow.analysis import build_insights
from abflow.bandit_periods import period_segment
from abflow.definitions import Experiment, parse_experiment
from abflow.results import InsightRow, SufficientStats

START = datetime(2026, 11, 2, tzinfo=UTC)


def bandit_experiment(
    *,
    top_two: float | None = None,
    sequential: bool = False,
    floor: float = 0.01,
    min_units: int = 100,
    key: str = "bandit_sim",
    start: datetime = START,
) -> Experiment:
    """A two-arm bandit on a conversion rate (fixed-horizon 95% intervals unless sequential)."""
    decision: dict[str, object] = {"bandit_floor": floor, "bandit_min_units": min_units}
    if top_two is not None:
        decision["bandit_top_two"] = top_two
    return parse_experiment(
        {
            "key": key,
            "name": "Simulated bandit",
            "status": "running",
            "start_at": start.isoformat(),
            "allocation": "bandit",
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "b", "weight": 0.5},
            ],
            "metrics": [
                {"key": "conversion", "kind": "proportion", "event": "purchase", "role": "primary"}
            ],
            "analysis": {"sequential": sequential, "min_sample_size": 2},
            "decision": decision,
        }
    )


def proportion_rows(segment: str, counts: dict[str, tuple[int, float]]) -> list[SufficientStats]:
    """Warehouse rows of one segment of a conversion metric: {arm: (units, conversions)}."""
    return [
        SufficientStats("conversion", k, segment, n, n, c, c)
        for k, (n, c) in counts.items()
        if n > 0
    ]


def analyse(
    experiment: Experiment,
    per_period: Sequence[dict[str, tuple[int, float]]],
    current: dict[str, float] | None = None,
) -> tuple[InsightRow, bandit.BanditDecision, dict[str, float]]:
    """The run after these periods: the primary insight, the next weights, and pooled means."""
    pooled: dict[str, tuple[int, float]] = {}
    period_rows: list[SufficientStats] = []
    for i, counts in enumerate(per_period, start=1):
        period_rows += proportion_rows(period_segment(i), counts)
        for k, (n, c) in counts.items():
            n0, c0 = pooled.get(k, (0, 0.0))
            pooled[k] = (n0 + n, c0 + c)
    days = len(per_period)
    rows, insights = build_insights(
        uuid.UUID(int=0), experiment, START + timedelta(days=days),
        proportion_rows("all", pooled), days, period_rows,
    )  # fmt: skip
    return (
        insights[0],
        bandit.allocate(experiment, rows, current),
        {k: c / n if n else 0.0 for k, (n, c) in pooled.items()},
    )


@dataclass(frozen=True)
class BanditSimulation:
    """Coverage of the reported absolute lift's interval and the weight of arm b per period."""

    runs: int
    effect: float
    coverage: float
    mean_lift: float
    # weight of b in force in period p (index 0: the initial split), per run
    trajectories: np.ndarray

    @property
    def mean_trajectory(self) -> list[float]:
        """Mean weight of b per period over runs."""
        return [float(x) for x in self.trajectories.mean(axis=0)]


def simulate(
    *,
    runs: int = 1000,
    periods: int = 6,
    per_period: int = 4000,
    effect: float = 0.0,
    base: float = 0.10,
    drift: float = 0.02,
    seed: int = 19,
    experiment: Experiment | None = None,
) -> BanditSimulation:
    """`runs` bandits of `periods` periods; the base rate rises by `drift` a period.

    `effect` is b's relative effect on the rate; the interval is checked against the true
    period-weighted absolute effect (effect × the mean base rate, periods being equal in size).
    """
    e = experiment or bandit_experiment()
    rng = np.random.default_rng(seed)
    rates = [base + drift * p for p in range(periods)]
    true_abs = effect * float(np.mean(rates))
    covered = 0
    lifts = []
    trajectories = np.zeros((runs, periods + 1))
    for run in range(runs):
        weights = {"control": 0.5, "b": 0.5}
        history: list[dict[str, tuple[int, float]]] = []
        trajectories[run, 0] = weights["b"]
        for p, rate in enumerate(rates):
            n_b = int(rng.binomial(per_period, weights["b"]))
            n_c = per_period - n_b
            history.append(
                {
                    "control": (n_c, float(rng.binomial(n_c, rate))),
                    "b": (n_b, float(rng.binomial(n_b, rate * (1 + effect)))),
                }
            )
            insight, decision, _ = analyse(e, history, weights)
            if decision.reweighted:
                weights = dict(decision.weights)
            trajectories[run, p + 1] = weights["b"]
        covered += insight.abs_ci_low <= true_abs <= insight.abs_ci_high
        lifts.append(insight.rel_lift)
    return BanditSimulation(
        runs=runs,
        effect=effect,
        coverage=covered / runs,
        mean_lift=float(np.mean(lifts)),
        trajectories=trajectories,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Print coverage and the mean weight trajectory of arm b for the given scenario."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--periods", type=int, default=6)
    ap.add_argument("--per-period", type=int, default=4000)
    ap.add_argument("--effect", type=float, default=0.0)
    ap.add_argument("--drift", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--top-two", type=float, default=None)
    args = ap.parse_args(argv)
    sim = simulate(
        runs=args.runs,
        periods=args.periods,
        per_period=args.per_period,
        effect=args.effect,
        drift=args.drift,
        seed=args.seed,
        experiment=bandit_experiment(top_two=args.top_two),
    )
    final = sim.trajectories[:, -1]
    print(f"runs {sim.runs}, effect {sim.effect:+.0%}, drift {args.drift:+.3f}/period")
    print(f"95% interval covers the true effect in {sim.coverage:.1%} of runs")
    print(f"mean reported relative lift {sim.mean_lift:+.2%}")
    print("mean weight of b per period:", " ".join(f"{w:.3f}" for w in sim.mean_trajectory))
    q = np.quantile(final, [0.1, 0.5, 0.9])
    print(
        f"final weight of b: mean {final.mean():.3f} ± {final.std() / np.sqrt(len(final)):.3f} "
        f"(se), deciles 10/50/90: {q[0]:.3f} {q[1]:.3f} {q[2]:.3f}"
    )


if __name__ == "__main__":
    main()
