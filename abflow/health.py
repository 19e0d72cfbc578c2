"""Health checks beside the GX expectations: SRM, exposure, sample, traffic, balance, uplift."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from abflow import stats as st
from abflow.bandit_periods import srm_by_period
from abflow.definitions import Experiment
from abflow.results import CheckOutcome, ExposureSummary, InsightRow, SufficientStats
from abflow.stats import srm_p_value


@dataclass(frozen=True)
class PeriodCounts:
    """Units first exposed in one allocation period and the weights in force in it."""

    start: datetime
    weights: Mapping[str, float]
    counts: Mapping[str, int]


def srm_check(
    experiment: Experiment,
    counts: dict[str, int],
    *,
    name: str = "srm",
    periods: Sequence[PeriodCounts] | None = None,
) -> CheckOutcome:
    """Pearson chi-square SRM, tiered: warn below srm_warn_threshold, fail below srm_threshold.

    A bandit's expectation is the weights in force when each unit was first exposed: `periods`
    (from the promotions history) sums one χ² per allocation period (bandit_periods.srm_by_period).
    Without them (the library's `decide`, no reweight known) its defined weights are in force.
    """
    a = experiment.analysis
    keys = [v.key for v in experiment.variants]
    observed = [counts.get(k, 0) for k in keys]
    weights = [v.weight for v in experiment.variants]
    total = sum(observed)
    if experiment.allocation == "bandit" and periods:
        p = srm_by_period([pc.counts for pc in periods], [pc.weights for pc in periods])
        details: dict[str, object] = {
            "counts": dict(zip(keys, observed, strict=True)),
            "periods": [
                {
                    "start": pc.start.isoformat(),
                    "weights": {k: round(float(w), 6) for k, w in pc.weights.items()},
                    "counts": {k: int(pc.counts.get(k, 0)) for k in keys},
                    "expected": _expected(pc.counts, pc.weights, keys),
                }
                for pc in periods
            ],
            "note": "against the weights in force in each allocation period (bandit reweights)",
        }
    else:
        p = srm_p_value(observed, weights) if total > 0 else 1.0
        details = {
            "counts": dict(zip(keys, observed, strict=True)),
            "expected": {k: round(total * w, 1) for k, w in zip(keys, weights, strict=True)},
        }
    failed = p < a.srm_threshold
    warned = p < a.srm_warn_threshold
    return CheckOutcome(
        check_name=name,
        severity="critical" if failed or not warned else "warning",
        passed=not warned,
        observed=p,
        threshold=a.srm_threshold if failed else a.srm_warn_threshold,
        details=details,
    )


def _expected(
    counts: Mapping[str, int], weights: Mapping[str, float], keys: Sequence[str]
) -> dict[str, float]:
    """Expected units per arm in one period: its units split by the weights in force."""
    live = {k: float(weights.get(k, 0.0)) for k in keys}
    total_w = sum(w for w in live.values() if w > 0)
    n = sum(counts.get(k, 0) for k in keys if live[k] > 0)
    return {k: round(n * w / total_w, 1) if total_w > 0 else 0.0 for k, w in live.items()}


def segment_srm_checks(experiment: Experiment, stats: list[SufficientStats]) -> list[CheckOutcome]:
    """SRM per segment level, from exposed units of the primary metric rows."""
    if experiment.allocation == "bandit":
        # Per-segment counts are pooled over allocation periods, whose weights differ; the
        # overall check tests each period against its own weights instead.
        return []
    primary = experiment.primary_metric.key
    by_segment: dict[str, dict[str, int]] = defaultdict(dict)
    for s in stats:
        if s.metric_key == primary and s.segment != "all":
            by_segment[s.segment][s.variant_key] = s.exposed_units
    return [
        srm_check(experiment, counts, name=f"srm[{segment}]")
        for segment, counts in sorted(by_segment.items())
    ]


def contamination_check(experiment: Experiment, stats: list[SufficientStats]) -> CheckOutcome:
    """Share of analysed units with the primary metric's event after the start, before exposure."""
    primary = experiment.primary_metric.key
    rows = [s for s in stats if s.metric_key == primary and s.segment == "all"]
    units = sum(s.exposed_units for s in rows)
    dirty = sum(s.contaminated_units for s in rows)
    share = dirty / units if units else 0.0
    limit = experiment.analysis.contamination_warn
    return CheckOutcome(
        check_name="contamination",
        severity="warning",
        passed=share <= limit,
        observed=share,
        threshold=limit,
        details={
            "units": dirty,
            "by_variant": {s.variant_key: s.contaminated_units for s in rows},
            "note": f"units with '{experiment.primary_metric.numerator_event}' before their "
            "first exposure; those events are never counted in the metric",
        },
    )


def exposure_checks(
    experiment: Experiment,
    exposure: ExposureSummary,
    periods: Sequence[PeriodCounts] | None = None,
) -> list[CheckOutcome]:
    """Multiple exposure, unknown variants, minimum sample, and SRM over first exposures."""
    a = experiment.analysis
    total_seen = (
        exposure.total_units
        + exposure.multiple_exposure_units
        + sum(exposure.unknown_variant_units.values())
    )
    multi_share = exposure.multiple_exposure_units / total_seen if total_seen else 0.0
    unknown_units = sum(exposure.unknown_variant_units.values())
    # Configured variants only: a key the summary holds for anything else is no arm to wait for.
    smallest = min(
        (exposure.units_by_variant.get(v.key, 0) for v in experiment.variants), default=0
    )
    return [
        srm_check(experiment, exposure.units_by_variant, periods=periods),
        CheckOutcome(
            check_name="multiple_exposure",
            severity="warning",
            passed=multi_share <= a.multiple_exposure_warn,
            observed=multi_share,
            threshold=a.multiple_exposure_warn,
            details={
                "units": exposure.multiple_exposure_units,
                "sample": list(exposure.sample_multiple),
                "note": "units seen in more than one variant are always excluded",
            },
        ),
        CheckOutcome(
            check_name="unknown_variants",
            severity="warning",
            passed=unknown_units == 0,
            observed=float(unknown_units),
            threshold=0.0,
            details={"units_by_variant": exposure.unknown_variant_units},
        ),
        CheckOutcome(
            check_name="min_sample",
            severity="warning",
            passed=smallest >= a.min_sample_size,
            observed=float(smallest),
            threshold=float(a.min_sample_size),
            details={"units_by_variant": exposure.units_by_variant},
        ),
    ]


def traffic_check(
    experiment: Experiment, exposure: ExposureSummary, as_of: datetime
) -> CheckOutcome:
    """Traffic stopping: no new exposure for over 48 h while the experiment is running."""
    last = exposure.last_exposed_at
    window_end = min(as_of, experiment.end_at) if experiment.end_at else as_of
    hours = (window_end - last).total_seconds() / 3600 if last else None
    stopped = hours is None or hours > 48
    return CheckOutcome(
        check_name="traffic",
        severity="critical" if last is None else "warning",
        passed=not stopped,
        observed=hours,
        threshold=48.0,
        details={
            "last_exposed_at": last.isoformat() if last else None,
            "note": "no exposures at all" if last is None else "hours since last exposure",
        },
    )


def critical_failures(checks: list[CheckOutcome]) -> list[CheckOutcome]:
    """Checks that block decisions and promotion."""
    return [c for c in checks if not c.passed and c.severity == "critical"]


def covariate_imbalance_checks(
    experiment: Experiment, stats: list[SufficientStats]
) -> list[CheckOutcome]:
    """Pre-exposure balance of each CUPED covariate, treatment vs control (a warning)."""
    # Randomisation makes pre-exposure behaviour equal across arms; a tiny p-value says the
    # assignment (or the covariate's window) is broken. GrowthBook flags p < 0.001.
    a = experiment.analysis
    overall = {(s.metric_key, s.variant_key): s for s in stats if s.segment == "all"}
    control = experiment.control.key
    worst: tuple[float, str, str] | None = None
    tested: dict[str, dict[str, float]] = {}
    for m in experiment.metrics:
        c = overall.get((m.key, control))
        if c is None or c.covariate_sum is None:
            continue
        for t in experiment.treatments:
            s = overall.get((m.key, t.key))
            if s is None or s.covariate_sum is None:
                continue
            r = st.compare(
                st.MeanStats(c.units, c.covariate_sum, c.covariate_sum_squares or 0.0),
                st.MeanStats(s.units, s.covariate_sum, s.covariate_sum_squares or 0.0),
                difference="absolute",
            )
            if r.error is not None:
                continue
            tested.setdefault(m.key, {})[t.key] = r.p_value
            if worst is None or r.p_value < worst[0]:
                worst = (r.p_value, m.key, t.key)
    if worst is None:
        return []
    p, metric, variant = worst
    passed = p >= a.covariate_imbalance_threshold
    return [
        CheckOutcome(
            check_name="covariate_imbalance",
            severity="warning",
            passed=passed,
            observed=p,
            threshold=a.covariate_imbalance_threshold,
            details={
                "p_values": tested,
                "note": "pre-exposure covariates balanced across arms"
                if passed
                else f"{metric}'s pre-exposure covariate differs between {control} and "
                f"{variant} (Welch p={p:.2g}): check the assignment and the lookback window",
            },
        )
    ]


def suspicious_uplift_check(experiment: Experiment, insights: list[InsightRow]) -> CheckOutcome:
    """Relative lifts larger than analysis.max_plausible_lift usually mean a bug (a warning)."""
    limit = experiment.analysis.max_plausible_lift
    roles = {m.key: m.role for m in experiment.metrics}
    flagged = [
        r
        for r in insights
        if r.segment == "all"
        and roles.get(r.metric_key) != "constraint"
        and r.error is None
        and abs(r.rel_lift) > limit
    ]
    biggest = max(flagged, key=lambda r: abs(r.rel_lift), default=None)
    return CheckOutcome(
        check_name="suspicious_uplift",
        severity="warning",
        passed=biggest is None,
        observed=abs(biggest.rel_lift) if biggest else None,
        threshold=limit,
        details={
            "flagged": {f"{r.metric_key}/{r.variant_key}": r.rel_lift for r in flagged},
            "note": f"{biggest.metric_key} {biggest.variant_key} {biggest.rel_lift * 100:+.1f}% "
            f"exceeds the plausible {limit * 100:.0f}%: check the metric and the tracking"
            if biggest
            else "no relative lift beyond the plausible limit",
        },
    )
