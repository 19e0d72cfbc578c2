"""Novelty and primacy: lift by days since each unit's first exposure, and the novelty_effect check.

The warehouse returns each metric's sufficient statistics per exposure-age cohort (days 0-6,
7-13, 14-20, 21+ since the unit's first exposure; sql/queries/exposure_age.sql) as rows whose
segment is '@exposure_age=<cohort>'. Here they become `lift_by_exposure_age` rows (fixed-horizon
Welch comparisons at 95%, like a segment breakdown) and one warning check: a novelty (or primacy)
effect shows as a first week whose lift differs from the weeks after it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from uuid import UUID

from scipy import special

from abflow import stats as st
from abflow.analysis import to_stats
from abflow.cohorts import COHORT_PREFIX, COHORTS
from abflow.definitions import Experiment, Metric
from abflow.results import CheckOutcome, LiftByExposureAgeRow, SufficientStats

CI_ALPHA = 0.05


def split_cohort_stats(
    stats: list[SufficientStats],
) -> tuple[list[SufficientStats], list[SufficientStats]]:
    """(the analysis' own rows, the exposure-age cohort rows) of one extraction."""
    main = [s for s in stats if not s.segment.startswith(COHORT_PREFIX)]
    cohorts = [s for s in stats if s.segment.startswith(COHORT_PREFIX)]
    return main, cohorts


@dataclass(frozen=True)
class CohortLift:
    """One treatment vs control in one cohort: the row and the comparison behind it."""

    row: LiftByExposureAgeRow
    result: st.CompareResult


def cohort_lifts(
    run_id: UUID, experiment: Experiment, cohort_stats: list[SufficientStats]
) -> list[CohortLift]:
    """Relative lift per metric, treatment and cohort (Welch t, fixed horizon, 95%)."""
    by_key: dict[tuple[str, str], dict[str, SufficientStats]] = defaultdict(dict)
    for s in cohort_stats:
        # uncapped: percentile caps are taken over the analysed units, not over cohorts
        raw = s.uncapped if s.uncapped is not None else s
        by_key[(s.metric_key, s.segment.removeprefix(COHORT_PREFIX))][s.variant_key] = raw
    control = experiment.control.key
    out: list[CohortLift] = []
    for metric in experiment.metrics:
        if metric.kind == "quantile":
            continue  # cohorts hold per-unit sums, not order statistics
        for t in experiment.treatments:
            for label, _, _ in COHORTS:
                arms = by_key.get((metric.key, label), {})
                if control not in arms or t.key not in arms:
                    continue
                out.append(_lift(run_id, experiment, metric, arms[control], arms[t.key], label))
    return out


def _lift(
    run_id: UUID,
    experiment: Experiment,
    metric: Metric,
    c: SufficientStats,
    t: SufficientStats,
    label: str,
) -> CohortLift:
    first, last = next((f, la) for lb, f, la in COHORTS if lb == label)
    c_obj, t_obj = to_stats(metric, c), to_stats(metric, t)
    test = experiment.analysis.test if metric.kind == "proportion" else "welch"
    rel = st.compare(c_obj, t_obj, difference="relative", alpha=CI_ALPHA, test=test)
    abs_ = st.compare(c_obj, t_obj, difference="absolute", alpha=CI_ALPHA, test=test)
    usable = rel.error is None
    row = LiftByExposureAgeRow(
        run_id=run_id,
        experiment_key=experiment.key,
        metric_key=metric.key,
        variant_key=t.variant_key,
        control_key=c.variant_key,
        cohort=label,
        first_day=first,
        last_day=last,
        control_units=c.units,
        variant_units=t.units,
        control_mean=_finite(c_obj.mean) if c.units else None,
        variant_mean=_finite(t_obj.mean) if t.units else None,
        rel_lift=rel.estimate if usable else None,
        rel_ci_low=rel.ci_low if usable else None,
        rel_ci_high=rel.ci_high if usable else None,
        abs_lift=abs_.estimate if abs_.error is None else None,
        p_value=rel.p_value if usable else None,
        error=rel.error,
    )
    return CohortLift(row, rel)


def novelty_check(experiment: Experiment, lifts: list[CohortLift]) -> CheckOutcome | None:
    """novelty_effect (warning): a metric's first-week lift differs from its later weeks' lift.

    Test, per metric (constraints and quantiles aside) and treatment: z = (L₀ − L̄)/sqrt(se₀² +
    se̅²), L₀ the relative lift in days 0-6 and L̄ the inverse-variance-weighted mean of the later
    cohorts' lifts; two-sided normal p, Bonferroni over the metric x treatment pairs tested,
    flagged below analysis.novelty_alpha (default 0.01). A unit adds to several cohorts, so L₀
    and L̄ are positively correlated and the variance above (which ignores that) makes the test
    conservative. None when exposure-age cohorts are off.
    """
    if not experiment.analysis.exposure_age:
        return None
    alpha = experiment.analysis.novelty_alpha
    usable: dict[tuple[str, str], dict[str, st.CompareResult]] = defaultdict(dict)
    for cl in lifts:
        if cl.result.error is None and cl.result.std_error > 0:
            usable[(cl.row.metric_key, cl.row.variant_key)][cl.row.cohort] = cl.result
    tested: dict[str, dict[str, dict[str, float]]] = {}
    for m in experiment.metrics:
        if m.role == "constraint" or m.kind == "quantile":
            continue
        for t in experiment.treatments:
            cohorts = usable.get((m.key, t.key), {})
            first = cohorts.get(COHORTS[0][0])
            later = [cohorts[label] for label, _, _ in COHORTS[1:] if label in cohorts]
            if first is None or not later:
                continue
            weights = [1.0 / r.std_error**2 for r in later]
            pooled = sum(w * r.estimate for w, r in zip(weights, later, strict=True)) / sum(weights)
            se = math.sqrt(first.std_error**2 + 1.0 / sum(weights))
            z = (first.estimate - pooled) / se
            tested.setdefault(m.key, {})[t.key] = {
                "first_week_lift": first.estimate,
                "later_lift": pooled,
                "z": z,
                "p_value": 2.0 * float(special.ndtr(-abs(z))),
            }
    pairs = [(m, v, r) for m, by_v in tested.items() for v, r in by_v.items()]
    if not pairs:
        return CheckOutcome(
            check_name="novelty_effect",
            severity="warning",
            passed=True,
            observed=None,
            threshold=alpha,
            details={
                "note": "not testable yet: no metric has a usable lift in both the first week "
                "and a later cohort since exposure"
            },
        )
    for _, _, r in pairs:
        r["p_adjusted"] = min(1.0, r["p_value"] * len(pairs))
    metric, variant, worst = min(pairs, key=lambda x: x[2]["p_adjusted"])
    p = worst["p_adjusted"]
    passed = p >= alpha
    first_lift, later_lift = worst["first_week_lift"], worst["later_lift"]
    kind = "novelty" if abs(first_lift) > abs(later_lift) else "primacy"
    return CheckOutcome(
        check_name="novelty_effect",
        severity="warning",
        passed=passed,
        observed=p,
        threshold=alpha,
        details={
            "tests": tested,
            "test": "z-test of the first-week relative lift against the inverse-variance-"
            "weighted lift of days 7+, Bonferroni over metric x treatment",
            "note": "no metric's lift differs between the first week since exposure and later"
            if passed
            else f"{variant}'s {metric} lift is {first_lift * 100:+.1f}% in days 0-6 since "
            f"exposure but {later_lift * 100:+.1f}% from day 7 on (p={p:.2g}): a {kind} "
            "effect; judge the lasting effect by the later cohorts",
        },
    )


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None
