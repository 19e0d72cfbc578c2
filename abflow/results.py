"""Result records: one frozen record maps to one row of an output table (SPEC §3.3)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Literal
from uuid import UUID

RunStatus = Literal["succeeded", "failed", "unhealthy", "skipped"]
DecisionKind = Literal["ship", "keep_running", "stop_inconclusive", "rollback", "investigate"]
Severity = Literal["critical", "warning"]


class _Row:
    def as_row(self) -> dict[str, Any]:
        """The record as a column -> value mapping for the table insert."""
        return asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class SufficientStats(_Row):
    """Warehouse output for one metric x variant x segment (also a `variant_stats` row body)."""

    metric_key: str
    variant_key: str
    segment: str
    exposed_units: int
    units: int
    sum: float
    sum_squares: float
    denominator_sum: float | None = None
    denominator_sum_squares: float | None = None
    sum_products: float | None = None
    covariate_sum: float | None = None
    covariate_sum_squares: float | None = None
    covariate_sum_products: float | None = None
    contaminated_units: int = 0
    # kind: quantile (metric_quantiles.sql): n observations, q̂ and the order statistics at the
    # rank bounds; over events also the cluster moments (abflow.stats.quantile)
    quantile_n: int | None = None
    quantile: float | None = None
    quantile_lower: float | None = None
    quantile_upper: float | None = None
    n_clusters: int | None = None
    below_sum: float | None = None
    below_sum_squares: float | None = None
    events_sum: float | None = None
    events_sum_squares: float | None = None
    below_events_sum_products: float | None = None
    # Ratio CUPED (gbstats ratio_ra): the pre-exposure denominator d and its products with the
    # post numerator y, post denominator x and pre numerator c (the covariate above).
    denominator_covariate_sum: float | None = None
    denominator_covariate_sum_squares: float | None = None
    denominator_covariate_sum_products: float | None = None  # Σ x·d
    covariate_cross_sum_products: float | None = None  # Σ c·d
    numerator_denominator_covariate_sum_products: float | None = None  # Σ y·d
    covariate_denominator_sum_products: float | None = None  # Σ c·x
    # Capping: these sums are of the capped values when `capped`; the caps used (None: that
    # side not capped or no value to take a percentile of); the raw sums in `uncapped`.
    capped: bool = False
    cap_lower: float | None = None
    cap_upper: float | None = None
    denominator_cap_lower: float | None = None
    denominator_cap_upper: float | None = None
    covariate_cap_lower: float | None = None
    covariate_cap_upper: float | None = None
    denominator_covariate_cap_lower: float | None = None
    denominator_covariate_cap_upper: float | None = None
    uncapped: SufficientStats | None = None


CAP_FIELDS = (
    "cap_lower",
    "cap_upper",
    "denominator_cap_lower",
    "denominator_cap_upper",
    "covariate_cap_lower",
    "covariate_cap_upper",
    "denominator_covariate_cap_lower",
    "denominator_covariate_cap_upper",
)


@dataclass(frozen=True)
class VariantStatRow(_Row):
    """A `variant_stats` row."""

    run_id: UUID
    experiment_key: str
    metric_key: str
    variant_key: str
    segment: str
    units: int
    mean: float | None
    variance: float | None
    sum: float
    sum_squares: float
    denominator_sum: float | None
    denominator_sum_squares: float | None
    sum_products: float | None
    covariate_sum: float | None
    covariate_sum_squares: float | None
    covariate_sum_products: float | None
    # quantile metrics: the arm's 95% order-statistic interval and observations (events or units)
    quantile_lower: float | None = None
    quantile_upper: float | None = None
    quantile_n: int | None = None
    denominator_covariate_sum: float | None = None
    denominator_covariate_sum_squares: float | None = None
    denominator_covariate_sum_products: float | None = None
    covariate_cross_sum_products: float | None = None
    numerator_denominator_covariate_sum_products: float | None = None
    covariate_denominator_sum_products: float | None = None
    # Capped metrics: mean/variance/sums above are of the capped values; the caps and the raw
    # (uncapped) mean and variance beside them.
    capped: bool = False
    cap_lower: float | None = None
    cap_upper: float | None = None
    denominator_cap_lower: float | None = None
    denominator_cap_upper: float | None = None
    covariate_cap_lower: float | None = None
    covariate_cap_upper: float | None = None
    denominator_covariate_cap_lower: float | None = None
    denominator_covariate_cap_upper: float | None = None
    uncapped_mean: float | None = None
    uncapped_variance: float | None = None


@dataclass(frozen=True)
class InsightRow(_Row):
    """An `insights` row: one treatment vs control on one metric and segment."""

    run_id: UUID
    experiment_key: str
    as_of: datetime
    metric_key: str
    metric_role: str
    variant_key: str
    control_key: str
    segment: str
    method: str
    control_units: int
    variant_units: int
    control_mean: float
    variant_mean: float
    abs_lift: float
    abs_ci_low: float
    abs_ci_high: float
    rel_lift: float
    rel_ci_low: float
    rel_ci_high: float
    p_value: float
    p_value_adjusted: float
    significant: bool
    chance_to_beat_control: float
    expected_loss: float
    error: str | None
    # Absolute effect x eligible units (ratios: denominator events) per day, and its interval.
    impact_per_day: float | None = None
    impact_ci_low: float | None = None
    impact_ci_high: float | None = None
    # Capped metrics: the same comparison on the uncapped values, shown beside the capped one.
    uncapped_control_mean: float | None = None
    uncapped_variant_mean: float | None = None
    uncapped_rel_lift: float | None = None
    uncapped_rel_ci_low: float | None = None
    uncapped_rel_ci_high: float | None = None
    uncapped_p_value: float | None = None

    @property
    def comparable(self) -> bool:
        """Whether the row carries a usable test (only its relative scale may be undefined)."""
        # zero_control_mean: the relative lift is undefined, the difference is still tested.
        return self.error is None or self.error == "zero_control_mean"


@dataclass(frozen=True)
class LiftByExposureAgeRow(_Row):
    """A `lift_by_exposure_age` row: one metric's lift in one cohort of days since exposure."""

    run_id: UUID
    experiment_key: str
    metric_key: str
    variant_key: str
    control_key: str
    cohort: str
    first_day: int
    last_day: int | None
    control_units: int
    variant_units: int
    control_mean: float | None
    variant_mean: float | None
    rel_lift: float | None
    rel_ci_low: float | None
    rel_ci_high: float | None
    abs_lift: float | None
    p_value: float | None
    error: str | None


@dataclass(frozen=True)
class HealthCheckRow(_Row):
    """A `health_checks` row."""

    run_id: UUID
    experiment_key: str
    check_name: str
    severity: Severity
    passed: bool
    observed: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecommendationRow(_Row):
    """A `recommendations` row."""

    run_id: UUID
    experiment_key: str
    decision: DecisionKind
    variant_key: str | None
    rationale: str
    days_remaining: float | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisRunRow(_Row):
    """An `analysis_runs` row."""

    run_id: UUID
    experiment_key: str
    as_of: datetime
    flow_run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    status: RunStatus
    message: str | None
    units: int | None = None
    excluded_units: int | None = None
    days_since_start: float | None = None


@dataclass(frozen=True)
class ExposureSummary:
    """Exposure counts from assignments: per configured variant, multiple-exposure and unknown."""

    units_by_variant: dict[str, int]
    multiple_exposure_units: int
    unknown_variant_units: dict[str, int]
    first_exposed_at: datetime | None
    last_exposed_at: datetime | None
    sample_multiple: tuple[str, ...] = ()

    @property
    def total_units(self) -> int:
        """Units with exactly one configured variant (the analysed population)."""
        return sum(self.units_by_variant.values())


@dataclass(frozen=True)
class ExperimentResult:
    """Everything one analysis run of one experiment writes, in one transaction."""

    run: AnalysisRunRow
    variant_stats: tuple[VariantStatRow, ...]
    insights: tuple[InsightRow, ...]
    health_checks: tuple[HealthCheckRow, ...]
    recommendation: RecommendationRow | None
    lift_by_exposure_age: tuple[LiftByExposureAgeRow, ...] = ()

    def with_run_id(self, run_id: UUID) -> ExperimentResult:
        """The same result under another run id, every row of every table rebound."""

        def rebind(value: Any) -> Any:
            if isinstance(value, tuple):
                return tuple(replace(r, run_id=run_id) for r in value)
            return None if value is None else replace(value, run_id=run_id)

        return replace(self, **{f.name: rebind(getattr(self, f.name)) for f in fields(self)})


@dataclass(frozen=True)
class CheckOutcome:
    """One data-quality expectation or health check result, before it is tied to a run."""

    check_name: str
    severity: Severity
    passed: bool
    observed: float | None
    threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_row(self, run_id: UUID, experiment_key: str) -> HealthCheckRow:
        """Bind this outcome to a run as a `health_checks` row."""
        return HealthCheckRow(
            run_id=run_id,
            experiment_key=experiment_key,
            check_name=self.check_name,
            severity=self.severity,
            passed=self.passed,
            observed=self.observed,
            threshold=self.threshold,
            details=self.details,
        )


def failed_run(
    *,
    run_id: UUID,
    experiment_key: str,
    as_of: datetime,
    flow_run_id: str | None,
    started_at: datetime,
    finished_at: datetime,
    message: str,
) -> ExperimentResult:
    """A run record for an experiment whose analysis failed (no statistics written)."""
    return ExperimentResult(
        run=AnalysisRunRow(
            run_id=run_id,
            experiment_key=experiment_key,
            as_of=as_of,
            flow_run_id=flow_run_id,
            started_at=started_at,
            finished_at=finished_at,
            status="failed",
            message=message[:2000],
        ),
        variant_stats=(),
        insights=(),
        health_checks=(),
        recommendation=None,
    )
