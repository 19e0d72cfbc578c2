"""Assemble one run's result from warehouse aggregates and checks (pure; no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from abflow import health, novelty
from abflow.analysis import extra_statistics
from abflow.bandit_periods import ESTIMATOR, Period, by_period, split_periods
from abflow.decisions.library import evaluate
from abflow.definitions import Experiment
from abflow.results import (
    AnalysisRunRow,
    CheckOutcome,
    ExperimentResult,
    ExposureSummary,
    RecommendationRow,
    RunStatus,
    SufficientStats,
)


def days_since_start(experiment: Experiment, as_of: datetime) -> float:
    """Days the experiment has run by as_of (capped at end_at)."""
    end = min(as_of, experiment.end_at) if experiment.end_at else as_of
    return max(0.0, (end - experiment.start_at).total_seconds() / 86400)


def assemble_result(
    *,
    run_id: UUID,
    experiment: Experiment,
    as_of: datetime,
    flow_run_id: str | None,
    started_at: datetime,
    finished_at: datetime,
    stats: list[SufficientStats],
    exposure: ExposureSummary,
    quality_checks: list[CheckOutcome],
    periods: Sequence[Period] = (),
) -> ExperimentResult:
    """Turn sufficient statistics and checks into every row one run writes.

    `periods`: a bandit's allocation periods (weights in force from each start), matching the
    '#period=N' rows of `stats`; they drive the period-weighted estimates and the SRM check.
    """
    stats, period_stats = split_periods(stats)
    if experiment.allocation != "bandit":
        period_stats, periods = [], ()
    period_counts = _period_counts(experiment, period_stats, periods)
    stats, cohort_stats = novelty.split_cohort_stats(stats)
    checks = [
        *quality_checks,
        *health.exposure_checks(experiment, exposure, period_counts or None),
        *health.segment_srm_checks(experiment, stats),
        health.contamination_check(experiment, stats),
        health.traffic_check(experiment, exposure, as_of),
    ]
    days = days_since_start(experiment, as_of)
    variant_rows, insights, rec = evaluate(
        experiment,
        stats,
        exposure.units_by_variant,
        days,
        checks,
        run_id=run_id,
        as_of=as_of,
        period_stats=period_stats,
    )
    # Warnings from numbers already computed; they never change the decision.
    checks += [
        *health.covariate_imbalance_checks(experiment, stats),
        health.suspicious_uplift_check(experiment, insights),
    ]
    lifts = novelty.cohort_lifts(run_id, experiment, cohort_stats)
    novelty_check = novelty.novelty_check(experiment, lifts) if cohort_stats else None
    if novelty_check is not None:
        checks.append(novelty_check)
    critical = health.critical_failures(checks)
    status: RunStatus = "unhealthy" if critical else "succeeded"
    message = (
        "critical checks failed: " + ", ".join(c.check_name for c in critical)
        if critical
        else f"{rec.decision}" + (f" {rec.variant_key}" if rec.variant_key else "")
    )
    run = AnalysisRunRow(
        run_id=run_id,
        experiment_key=experiment.key,
        as_of=as_of,
        flow_run_id=flow_run_id,
        started_at=started_at,
        finished_at=finished_at,
        status=status,
        message=message,
        units=exposure.total_units,
        excluded_units=exposure.multiple_exposure_units
        + sum(exposure.unknown_variant_units.values()),
        days_since_start=round(days, 4),
    )
    return ExperimentResult(
        run=run,
        variant_stats=tuple(variant_rows),
        insights=tuple(insights),
        health_checks=tuple(c.to_row(run_id, experiment.key) for c in checks),
        recommendation=RecommendationRow(
            run_id=run_id,
            experiment_key=experiment.key,
            decision=rec.decision,
            variant_key=rec.variant_key,
            rationale=rec.rationale,
            days_remaining=None if rec.days_remaining is None else round(rec.days_remaining, 2),
            details={
                **rec.details,
                **extra_statistics(experiment, stats),
                **_bandit_details(experiment, period_counts),
            },
        ),
        lift_by_exposure_age=tuple(cl.row for cl in lifts),
    )


def _period_counts(
    experiment: Experiment, period_stats: list[SufficientStats], periods: Sequence[Period]
) -> list[health.PeriodCounts]:
    """Units per arm first exposed in each allocation period, with the weights then in force."""
    if not periods:
        return []
    rows = dict(by_period(period_stats, experiment.primary_metric.key))
    keys = [v.key for v in experiment.variants]
    return [
        health.PeriodCounts(
            start=p.start,
            weights={k: float(p.weights.get(k, 0.0)) for k in keys},
            counts={k: rows[i][k].exposed_units if k in rows.get(i, {}) else 0 for k in keys},
        )
        for i, p in enumerate(sorted(periods, key=lambda p: p.start), start=1)
    ]


def _bandit_details(
    experiment: Experiment, period_counts: list[health.PeriodCounts]
) -> dict[str, Any]:
    """The recommendation's record of how a bandit was estimated and its weight history."""
    if experiment.allocation != "bandit":
        return {}
    return {
        "bandit": {
            "period_weighted": bool(period_counts),
            "estimator": ESTIMATOR if period_counts else "pooled (no allocation periods known)",
            "weight_history": [
                {
                    "start": pc.start.isoformat(),
                    "weights": dict(pc.weights),
                    "units": dict(pc.counts),
                }
                for pc in period_counts
            ],
        }
    }
