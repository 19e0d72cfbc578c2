"""`abflow.decide`: the flow's decision path as a pure library call on sufficient statistics."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from abflow import health
from abflow import stats as st
from abflow.analysis import build_insights
from abflow.decisions.rules import DecisionInputs, Recommendation
from abflow.decisions.rules import decide as apply_rules
from abflow.definitions import Experiment, load_experiment_file, parse_experiment
from abflow.results import CheckOutcome, InsightRow, SufficientStats

_RUN_ID = uuid.UUID(int=0)
ArmStats = st.MeanStats | st.ProportionStats | st.RatioStats | st.QuantileStats


def load_definition(definition: Experiment | Mapping[str, Any] | str | Path) -> Experiment:
    """An experiment from a parsed model, a YAML dict, or the path of a YAML file."""
    if isinstance(definition, Experiment):
        return definition
    if isinstance(definition, str | Path):
        return load_experiment_file(Path(definition))
    return parse_experiment(dict(definition))


def to_sufficient(metric_key: str, variant_key: str, s: ArmStats) -> SufficientStats:
    """The warehouse's row shape for one arm's statistics (overall segment)."""
    if isinstance(s, st.ProportionStats):
        # Binary outcomes: Σy² = Σy.
        return SufficientStats(metric_key, variant_key, "all", s.n, s.n, s.sum, s.sum)
    if isinstance(s, st.RatioStats):
        return SufficientStats(
            metric_key,
            variant_key,
            "all",
            s.n,
            s.n,
            s.m_sum,
            s.m_sum_squares,
            denominator_sum=s.d_sum,
            denominator_sum_squares=s.d_sum_squares,
            sum_products=s.m_d_sum_of_products,
        )
    if isinstance(s, st.QuantileStats):
        # the order statistics; units = clusters over events, else the observations
        return SufficientStats(
            metric_key,
            variant_key,
            "all",
            s.n_clusters or s.n,
            s.n_clusters or s.n,
            0.0,
            0.0,
            quantile_n=s.n,
            quantile=s.quantile,
            quantile_lower=s.lower,
            quantile_upper=s.upper,
            n_clusters=s.n_clusters,
            below_sum=s.below_sum,
            below_sum_squares=s.below_sum_squares,
            events_sum=s.events_sum,
            events_sum_squares=s.events_sum_squares,
            below_events_sum_products=s.below_events_sum_products,
        )
    return SufficientStats(metric_key, variant_key, "all", s.n, s.n, s.sum, s.sum_squares)


def evaluate(
    experiment: Experiment,
    stats: list[SufficientStats],
    units_by_variant: dict[str, int],
    days_since_start: float,
    checks: list[CheckOutcome],
    *,
    run_id: uuid.UUID = _RUN_ID,
    as_of: datetime | None = None,
    period_stats: list[SufficientStats] | None = None,
) -> tuple[list[Any], list[InsightRow], Recommendation]:
    """variant_stats rows, insights and the recommendation: the one path flows and library share.

    `period_stats`: a bandit's per-(arm, allocation period) rows (period-weighted estimates).
    """
    when = as_of or experiment.start_at + timedelta(days=days_since_start)
    variant_rows, insights = build_insights(
        run_id, experiment, when, stats, days_since_start, period_stats
    )
    rec = apply_rules(
        DecisionInputs(
            experiment=experiment,
            insights=insights,
            variant_stats=variant_rows,
            checks=checks,
            days_since_start=days_since_start,
            units_by_variant=units_by_variant,
        )
    )
    return variant_rows, insights, rec


def decide(
    definition: Experiment | Mapping[str, Any] | str | Path,
    stats: Mapping[str, Mapping[str, ArmStats]],
    days_since_start: float,
) -> Recommendation:
    """The recommendation the scheduled flow would make from these per-arm statistics."""
    experiment = load_definition(definition)
    keys = {v.key for v in experiment.variants}
    unknown = set(stats) - keys
    if unknown:
        raise ValueError(f"stats: unknown variant(s) {', '.join(sorted(unknown))}")
    metrics = {m.key for m in experiment.metrics}
    rows = []
    for variant_key, per_metric in stats.items():
        for metric_key, s in per_metric.items():
            if metric_key not in metrics:
                raise ValueError(f"stats[{variant_key}]: unknown metric {metric_key!r}")
            rows.append(to_sufficient(metric_key, variant_key, s))
    primary = experiment.primary_metric.key
    # Units per arm: the primary metric's n (every metric of a unit-level analysis has the same).
    units = {
        v: int(per_metric[primary].n) for v, per_metric in stats.items() if primary in per_metric
    }
    checks = [health.srm_check(experiment, units)] if units else []
    return evaluate(experiment, rows, units, days_since_start, checks)[2]
