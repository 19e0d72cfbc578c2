"""Pure analysis: sufficient statistics in, variant_stats and insights rows out (no I/O)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Literal, cast
from uuid import UUID

from abflow import stats as st
from abflow.bandit_periods import batched_comparison, by_period
from abflow.decisions.plan import (
    FALLBACK_TUNING,
    mixture_tuning,
    planned_sample,
    primary_control,
)
from abflow.definitions import Experiment, Metric, Prior, PriorSpec
from abflow.results import InsightRow, SufficientStats, VariantStatRow
from abflow.stats import frequentist, sequential
from abflow.stats.frequentist import Alternative

StatsObject = (
    st.MeanStats
    | st.ProportionStats
    | st.RatioStats
    | st.RegressionAdjustedStats
    | st.RegressionAdjustedRatioStats
    | st.QuantileStats
)


@dataclass(frozen=True)
class Comparison:
    """Relative and absolute comparison of one treatment against control."""

    relative: st.CompareResult
    absolute: st.CompareResult
    method: str
    error: str | None
    # Variance of each arm's (possibly CUPED-adjusted) mean, for Fieller's relative interval.
    mean_c: float = 0.0
    mean_t: float = 0.0
    var_mean_c: float = 0.0
    var_mean_t: float = 0.0
    n_total: float = 0.0
    tuning: float = 0.0
    alternative: Alternative = "two-sided"


QUANTILE_METHODS = {"unit": "quantile_order_stats", "event": "quantile_order_stats_clustered"}


def _finite(x: float | None, default: float = 0.0) -> float:
    return default if x is None or not math.isfinite(x) else float(x)


def to_stats(
    metric: Metric, s: SufficientStats
) -> st.MeanStats | st.ProportionStats | st.RatioStats | st.QuantileStats:
    """Build the stats-engine input for one variant from its warehouse sufficient statistics."""
    if metric.kind == "proportion":
        return st.ProportionStats(n=s.units, sum=s.sum)
    if metric.kind == "ratio":
        return st.RatioStats(
            n=s.units,
            m_sum=s.sum,
            m_sum_squares=s.sum_squares,
            d_sum=s.denominator_sum or 0.0,
            d_sum_squares=s.denominator_sum_squares or 0.0,
            m_d_sum_of_products=s.sum_products or 0.0,
        )
    if metric.kind == "quantile":
        return quantile_stats(metric, s)
    return st.MeanStats(n=s.units, sum=s.sum, sum_squares=s.sum_squares)


def quantile_stats(metric: Metric, s: SufficientStats) -> st.QuantileStats:
    """The arm's quantile statistic from its order statistics (Yao, Li & Lu 2024; gbstats)."""
    if not s.quantile_n or s.quantile is None:
        return st.QuantileStats(n=0, nu=float(metric.quantile or 0.5), quantile=0, lower=0, upper=0)
    return st.QuantileStats(
        n=s.quantile_n,
        nu=float(metric.quantile or 0.5),
        quantile=s.quantile,
        lower=_finite(s.quantile_lower, s.quantile),
        upper=_finite(s.quantile_upper, s.quantile),
        # over events: clustered by unit (gbstats QuantileClusteredStatistic)
        n_clusters=s.n_clusters if metric.level == "event" else None,
        below_sum=_finite(s.below_sum),
        below_sum_squares=_finite(s.below_sum_squares),
        events_sum=_finite(s.events_sum),
        events_sum_squares=_finite(s.events_sum_squares),
        below_events_sum_products=_finite(s.below_events_sum_products),
    )


def variant_stat_row(
    run_id: UUID, experiment: Experiment, metric: Metric, s: SufficientStats
) -> VariantStatRow:
    """One `variant_stats` row with mean and variance per SPEC §4 conventions."""
    mean, variance = _mean_variance(metric, s)
    raw_mean, raw_variance = _mean_variance(metric, s.uncapped) if s.uncapped else (None, None)
    # every sum, the capping flag and the caps are copied as the warehouse returned them
    copied = {
        f.name: getattr(s, f.name)
        for f in fields(VariantStatRow)
        if f.name in _STATS_FIELDS
    }
    return VariantStatRow(
        run_id=run_id,
        experiment_key=experiment.key,
        mean=mean,
        variance=variance,
        uncapped_mean=raw_mean,
        uncapped_variance=raw_variance,
        **copied,
    )


_STATS_FIELDS = frozenset(f.name for f in fields(SufficientStats)) - {"uncapped"}


def _mean_variance(metric: Metric, s: SufficientStats) -> tuple[float | None, float | None]:
    obj = to_stats(metric, s)
    ok = s.units > 0 and not (metric.kind == "ratio" and not s.denominator_sum)
    if metric.kind == "quantile":
        ok = obj.n > 0
    mean = _finite(obj.mean) if ok else None
    variance = _finite(obj.variance) if ok and obj.n > 1 else None
    return mean, variance


_RATIO_CUPED_SUMS = (
    "covariate_sum",
    "covariate_sum_squares",
    "covariate_sum_products",
    "denominator_covariate_sum",
    "denominator_covariate_sum_squares",
    "denominator_covariate_sum_products",
    "covariate_cross_sum_products",
    "numerator_denominator_covariate_sum_products",
    "covariate_denominator_sum_products",
)


def ratio_cuped_stats(r: SufficientStats) -> st.RegressionAdjustedRatioStats:
    """The ratio-CUPED input of one arm (θ = 0 until set)."""
    return st.RegressionAdjustedRatioStats(
        n=r.units,
        m_sum=r.sum,
        m_sum_squares=r.sum_squares,
        d_sum=r.denominator_sum or 0.0,
        d_sum_squares=r.denominator_sum_squares or 0.0,
        m_d_sum_of_products=r.sum_products or 0.0,
        m_pre_sum=r.covariate_sum or 0.0,
        m_pre_sum_squares=r.covariate_sum_squares or 0.0,
        d_pre_sum=r.denominator_covariate_sum or 0.0,
        d_pre_sum_squares=r.denominator_covariate_sum_squares or 0.0,
        m_post_m_pre_sum_of_products=r.covariate_sum_products or 0.0,
        d_post_d_pre_sum_of_products=r.denominator_covariate_sum_products or 0.0,
        m_pre_d_pre_sum_of_products=r.covariate_cross_sum_products or 0.0,
        m_post_d_pre_sum_of_products=r.numerator_denominator_covariate_sum_products or 0.0,
        m_pre_d_post_sum_of_products=r.covariate_denominator_sum_products or 0.0,
    )


def _ratio_cuped_inputs(
    arms: dict[str, SufficientStats],
) -> tuple[dict[str, StatsObject] | None, str | None]:
    """Ratio CUPED (gbstats ratio_ra) with θ from all arms, or (None, reason)."""
    rows = list(arms.values())
    if any(getattr(r, f) is None for r in rows for f in _RATIO_CUPED_SUMS):
        return None, "cuped_no_covariate"
    ra = [ratio_cuped_stats(r) for r in rows]
    theta = st.ratio_cuped_theta(ra)
    if theta is None:
        # No pre-exposure denominator (or no variance in the pre-period ratio): fall back.
        return None, "cuped_theta_undefined"
    adjusted: list[StatsObject] = [replace(a, theta=theta) for a in ra]
    return dict(zip(arms.keys(), adjusted, strict=True)), None


def _cuped_inputs(
    experiment: Experiment, metric: Metric, arms: dict[str, SufficientStats]
) -> tuple[dict[str, StatsObject] | None, str | None]:
    """CUPED inputs with θ pooled over all arms, or (None, reason) when CUPED does not apply."""
    if experiment.analysis.cuped is None:
        return None, None
    if metric.kind == "ratio":
        return _ratio_cuped_inputs(arms)
    if metric.kind == "quantile":
        return None, None  # the method column names the quantile estimator instead
    rows = list(arms.values())
    if any(r.covariate_sum is None for r in rows):
        return None, "cuped_no_covariate"
    reg = [
        st.RegressionAdjustedStats(
            n=r.units,
            sum=r.sum,
            sum_squares=r.sum_squares,
            pre_sum=r.covariate_sum or 0.0,
            pre_sum_squares=r.covariate_sum_squares or 0.0,
            post_pre_sum_of_products=r.covariate_sum_products or 0.0,
        )
        for r in rows
    ]
    theta = st.cuped_theta(reg)
    if theta is None:
        # Zero pre-period variance (e.g. no pre-exposure activity): fall back, say why.
        return None, "cuped_theta_undefined"
    adjusted = st.cuped_adjust(reg, theta)
    return dict(zip(arms.keys(), adjusted, strict=True)), None


def compare_arms(
    experiment: Experiment,
    metric: Metric,
    control: StatsObject,
    treatment: StatsObject,
    alpha: float | None = None,
    tuning: float | None = None,
) -> Comparison:
    """Relative and absolute comparisons under the experiment's analysis settings."""
    a = experiment.analysis
    test = a.test if metric.kind == "proportion" else "welch"
    n_star = float(tuning or a.sequential_tuning or FALLBACK_TUNING)
    alternative = metric_alternative(metric)
    kwargs = dict(
        engine=a.engine,
        alpha=a.alpha if alpha is None else alpha,
        sequential=a.sequential,
        sequential_tuning=n_star,
        test=test,
        prior=stats_prior(metric.prior if metric.prior is not None else a.prior),
        alternative=alternative,
    )
    rel = st.compare(control, treatment, difference="relative", **kwargs)  # type: ignore[arg-type]
    abs_ = st.compare(control, treatment, difference="absolute", **kwargs)  # type: ignore[arg-type]
    return Comparison(
        relative=rel,
        absolute=abs_,
        method=abs_.method,
        error=abs_.error or rel.error,
        mean_c=_finite(control.mean),
        mean_t=_finite(treatment.mean),
        var_mean_c=_var_mean(control),
        var_mean_t=_var_mean(treatment),
        n_total=float(control.n + treatment.n),
        tuning=n_star,
        alternative=alternative,
    )


def metric_alternative(metric: Metric) -> Alternative:
    """`sided: one` tests only in the metric's direction; two-sided otherwise."""
    if metric.sided == "one":
        return "greater" if metric.direction == "increase" else "less"
    return "two-sided"


def stats_prior(prior: Prior) -> st.NormalPrior | Literal["flat", "proper"]:
    """The stats engine's prior for a definition's `prior` setting."""
    if isinstance(prior, PriorSpec):
        return st.NormalPrior(prior.mean, prior.stddev)
    return prior


def _var_mean(s: StatsObject) -> float:
    """Variance of an arm's mean estimate, 0 when undefined."""
    try:
        v = float(s.variance) / float(s.n) if s.n > 0 else 0.0
    except (ArithmeticError, ValueError):
        return 0.0
    return v if math.isfinite(v) and v > 0 else 0.0


def primary_tuning(
    experiment: Experiment, stats: list[SufficientStats]
) -> tuple[int | None, float]:
    """(planned units per variant, mixture N*) from the primary metric's overall control arm."""
    primary = experiment.primary_metric
    control = primary_control(experiment, stats)
    planned = None
    if control is not None and control.units > 1:
        obj = to_stats(primary, control)
        planned = planned_sample(experiment, _finite(obj.mean, 0.0), _finite(obj.variance, 0.0))
    return planned, mixture_tuning(experiment, planned)


@dataclass(frozen=True)
class _Pair:
    """One treatment-vs-control comparison before multiplicity adjustment."""

    metric: Metric
    segment: str
    variant_key: str
    control: SufficientStats
    treatment: SufficientStats
    control_obj: StatsObject
    treatment_obj: StatsObject
    cmp: Comparison
    cuped: bool
    cuped_note: str | None
    period_weighted: bool = False
    uncapped: dict[str, float | None] | None = None


def period_arms(
    experiment: Experiment, metric: Metric, period_stats: list[SufficientStats]
) -> list[dict[str, st.MeanStats | st.ProportionStats | st.RatioStats]] | None:
    """A bandit's per-period arm statistics of one metric; None for fixed allocation."""
    if experiment.allocation != "bandit" or not period_stats or metric.kind == "quantile":
        return None  # quantiles: order statistics of periods do not combine; pooled instead
    per_period = [
        {k: cast(st.MeanStats | st.ProportionStats | st.RatioStats, to_stats(metric, r))
         for k, r in arms.items()}
        for _, arms in by_period(period_stats, metric.key)
    ]
    return per_period or None


def build_insights(
    run_id: UUID,
    experiment: Experiment,
    as_of: datetime,
    stats: list[SufficientStats],
    days: float | None = None,
    period_stats: list[SufficientStats] | None = None,
) -> tuple[list[VariantStatRow], list[InsightRow]]:
    """All variant_stats and insights rows of one run, with multiple-testing adjustment applied.

    `period_stats`: a bandit's per-(arm, allocation period) rows ('#period=N' segments). Its
    overall comparisons then use the period-weighted estimates, and the rows are kept in
    variant_stats; they never become comparisons of their own.
    """
    grouped: dict[tuple[str, str], dict[str, SufficientStats]] = defaultdict(dict)
    for s in stats:
        grouped[(s.metric_key, s.segment)][s.variant_key] = s
    control_key = experiment.control.key
    _, tuning = primary_tuning(experiment, stats)
    variant_rows: list[VariantStatRow] = []
    pairs: list[_Pair] = []
    by_metric = {m.key: m for m in experiment.metrics}
    for s in period_stats or ():
        if s.metric_key in by_metric:
            variant_rows.append(variant_stat_row(run_id, experiment, by_metric[s.metric_key], s))
    for metric in experiment.metrics:
        segments = sorted(
            {seg for (mk, seg) in grouped if mk == metric.key}, key=lambda x: (x != "all", x)
        )
        for segment in segments:
            arms = grouped[(metric.key, segment)]
            for v in experiment.variants:
                if v.key in arms:
                    variant_rows.append(variant_stat_row(run_id, experiment, metric, arms[v.key]))
            if control_key not in arms:
                continue
            cuped, cuped_note = _cuped_inputs(experiment, metric, arms)
            per_period = (
                period_arms(experiment, metric, period_stats or []) if segment == "all" else None
            )
            for t in experiment.treatments:
                if t.key not in arms:
                    continue
                c_raw, t_raw = to_stats(metric, arms[control_key]), to_stats(metric, arms[t.key])
                c_in = cuped[control_key] if cuped else c_raw
                t_in = cuped[t.key] if cuped else t_raw
                # A bandit's overall comparison: period by period, never pooled over its moving
                # weights (bandit_periods.batched_comparison); CUPED is not combined with it.
                weighted = (
                    batched_comparison(per_period, control_key, t.key) if per_period else None
                )
                pair_cuped, pair_note = cuped is not None, cuped_note
                if weighted is not None:
                    c_in, t_in = weighted
                    pair_cuped = False
                    if experiment.analysis.cuped is not None:
                        pair_note = "cuped_not_applied_period_weighted"
                pairs.append(
                    _Pair(
                        metric,
                        segment,
                        t.key,
                        arms[control_key],
                        arms[t.key],
                        c_in,
                        t_in,
                        compare_arms(experiment, metric, c_in, t_in, tuning=tuning),
                        pair_cuped,
                        pair_note,
                        weighted is not None,
                        _uncapped(experiment, metric, arms, t.key, tuning),
                    )
                )
    rows = _adjusted_rows(run_id, experiment, as_of, pairs)
    if days and days > 0:
        kinds = {m.key: m.kind for m in experiment.metrics}
        # a difference of quantiles does not scale with volume: no impact for quantile metrics
        rows = [
            r
            if kinds[r.metric_key] == "quantile"
            else _with_impact(
                r, grouped[(r.metric_key, r.segment)], days, kinds[r.metric_key] == "ratio"
            )
            for r in rows
        ]
    return variant_rows, rows


def _uncapped(
    experiment: Experiment,
    metric: Metric,
    arms: dict[str, SufficientStats],
    treatment_key: str,
    tuning: float,
) -> dict[str, float | None] | None:
    """A capped metric's comparison on its raw values (same test and CUPED), shown beside it.

    Not adjusted for multiplicity and never used by decisions: it shows what capping changed.
    """
    control_key = experiment.control.key
    raw = {k: s.uncapped for k, s in arms.items() if s.uncapped is not None}
    if control_key not in raw or treatment_key not in raw:
        return None
    cuped, _ = _cuped_inputs(experiment, metric, raw)
    c_in = cuped[control_key] if cuped else to_stats(metric, raw[control_key])
    t_in = cuped[treatment_key] if cuped else to_stats(metric, raw[treatment_key])
    cmp = compare_arms(experiment, metric, c_in, t_in, tuning=tuning)
    rel = cmp.relative
    return {
        "uncapped_control_mean": _finite(c_in.unadjusted_mean),
        "uncapped_variant_mean": _finite(t_in.unadjusted_mean),
        "uncapped_rel_lift": None if rel.error else _finite(rel.estimate),
        "uncapped_rel_ci_low": None if rel.error else _finite(rel.ci_low),
        "uncapped_rel_ci_high": None if rel.error else _finite(rel.ci_high),
        "uncapped_p_value": _finite(_evidence(cmp).p_value, 1.0),
    }


def _with_impact(
    row: InsightRow, arms: dict[str, SufficientStats], days: float, ratio: bool
) -> InsightRow:
    """Scaled impact: the absolute effect times the eligible volume per day (GrowthBook)."""
    if not row.comparable:
        return row
    volume = sum((s.denominator_sum or 0.0) if ratio else s.units for s in arms.values()) / days
    return replace(
        row,
        impact_per_day=_finite(row.abs_lift * volume),
        impact_ci_low=_finite(row.abs_ci_low * volume),
        impact_ci_high=_finite(row.abs_ci_high * volume),
    )


def decision_family(metric_role: str, segment: str) -> str:
    """Multiplicity family of a comparison: primary, guardrail, or everything else (SPEC §4)."""
    if segment != "all":
        return "other"
    if metric_role in ("primary", "guardrail"):
        return metric_role
    return "other"


def _adjusted_rows(
    run_id: UUID, experiment: Experiment, as_of: datetime, pairs: list[_Pair]
) -> list[InsightRow]:
    """Insight rows with each family's correction applied to p-values, significance and CIs."""
    a = experiment.analysis
    raw_p = [_evidence(p.cmp).p_value for p in pairs]
    families: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(pairs):
        families[decision_family(p.metric.role, p.segment)].append(i)
    adjusted = [_finite(v, 1.0) for v in raw_p]
    levels = [a.alpha] * len(pairs)
    for idx in families.values():
        ps = [raw_p[i] for i in idx]
        for i, q, lvl in zip(
            idx,
            st.adjust_p_values(ps, a.correction),
            st.ci_levels(a.alpha, ps, a.correction),
            strict=True,
        ):
            adjusted[i], levels[i] = _finite(q, 1.0), lvl
    rows = []
    for p, p_adj, level in zip(pairs, adjusted, levels, strict=True):
        row = _insight_row(run_id, experiment, as_of, p, level)
        row = replace(row, p_value_adjusted=min(1.0, max(0.0, p_adj)))
        row = replace(row, significant=_significant(experiment, row, level))
        if p.uncapped:
            row = replace(row, **p.uncapped)  # type: ignore[arg-type]
        if p.metric.kind == "quantile":
            # name the estimator: order-statistic bounds (Yao, Li & Lu 2024), clustered by unit
            # over events (Deng, Knoblich & Lu 2018), as gbstats Quantile(Clustered)Statistic
            row = replace(row, method=f"{row.method}({QUANTILE_METHODS[p.metric.level or 'unit']})")
        elif p.cuped_note and row.error is None and p.segment == "all":
            # Recorded, not fatal: the comparison itself is the unadjusted one.
            row = replace(row, method=f"{row.method}({p.cuped_note})")
        rows.append(row)
    return rows


def _evidence(cmp: Comparison) -> st.CompareResult:
    """The comparison whose p-value tests μT = μC: the absolute difference, whatever the scale."""
    # The relative delta-method statistic is biased by direction at small counts (its variance
    # shrinks with μT), so both scales share the symmetric test of the difference.
    return cmp.absolute if cmp.absolute.error is None else cmp.relative


def _significant(experiment: Experiment, row: InsightRow, level: float | None = None) -> bool:
    a = experiment.analysis
    if not row.comparable:
        return False
    if a.engine == "bayesian" and not a.sequential:
        # GrowthBook's fixed-horizon rule: chance to beat control ≥ 1−α (95%) or ≤ α, with α the
        # level the row's family correction tests it at (so `correction` is honoured here too).
        t = a.alpha if level is None else level
        return row.chance_to_beat_control >= 1 - t or row.chance_to_beat_control <= t
    return row.p_value_adjusted < a.alpha


def _multiplier(cmp: Comparison, level: float, base_alpha: float) -> float | None:
    """Interval multiplier (in standard errors) of the evidence test at the given α."""
    r = cmp.absolute
    # One-sided rows report the two-sided (1−2α) interval, whose matching bound is the test's.
    if r.method == "welch_t" and r.df:
        return frequentist.t_quantile(level, r.df, cmp.alternative)
    if r.method == "z_pooled":
        return frequentist.z_quantile(level, cmp.alternative)
    if r.method == "sequential_cs":
        k = 1.0 if cmp.alternative == "two-sided" else 2.0
        return sequential.cs_boundary_z(
            cmp.n_total, k * level, cmp.tuning, rho_alpha=k * base_alpha
        )
    return None


def _intervals(
    cmp: Comparison, level: float, base_alpha: float, raw_control_mean: float
) -> tuple[float, float, float, float]:
    """(abs low, abs high, rel low, rel high) at level α, relative by Fieller when bounded."""
    abs_, rel = cmp.absolute, cmp.relative
    q = _multiplier(cmp, level, base_alpha)
    if q is None or abs_.error is not None:
        # Bayesian credible intervals (or neutral rows) are reported as computed.
        return abs_.ci_low, abs_.ci_high, rel.ci_low, rel.ci_high
    lo, hi = abs_.estimate - q * abs_.std_error, abs_.estimate + q * abs_.std_error
    if rel.error is not None:
        return lo, hi, rel.ci_low, rel.ci_high
    ratio = frequentist.fieller_ratio_interval(
        cmp.mean_c, cmp.var_mean_c, cmp.mean_t, cmp.var_mean_t, q
    )
    if ratio is None or raw_control_mean == 0:
        return lo, hi, rel.estimate - q * rel.std_error, rel.estimate + q * rel.std_error
    # Relative lift (μT−μC)/|μC_raw| = (R−1)·μC/|μC_raw| for R = μT/μC (monotone in R).
    scale = cmp.mean_c / abs(raw_control_mean)
    ends = sorted(((ratio[0] - 1.0) * scale, (ratio[1] - 1.0) * scale))
    return lo, hi, ends[0], ends[1]


def _insight_row(
    run_id: UUID, experiment: Experiment, as_of: datetime, p: _Pair, level: float
) -> InsightRow:
    """One insights row; the p-value tests the difference, intervals are at the family's α."""
    cmp = p.cmp
    rel, abs_ = cmp.relative, cmp.absolute
    main = rel if rel.error is None else abs_
    beat = _finite(main.chance_to_win, 0.5)
    loss = _finite(main.risk)
    if p.metric.direction == "decrease":
        # Lower is better: flip the win probability and take the other side's expected loss.
        beat = 1.0 - beat
        loss = _finite(main.risk_control)
    raw_c = _finite(p.control_obj.unadjusted_mean) if p.control.units else 0.0
    abs_lo, abs_hi, rel_lo, rel_hi = _intervals(cmp, level, experiment.analysis.alpha, raw_c)
    return InsightRow(
        run_id=run_id,
        experiment_key=experiment.key,
        as_of=as_of,
        metric_key=p.metric.key,
        metric_role=p.metric.role,
        variant_key=p.variant_key,
        control_key=experiment.control.key,
        segment=p.segment,
        method=_evidence(cmp).method
        + ("+cuped" if p.cuped else "")
        + ("+period_weighted" if p.period_weighted else ""),
        control_units=p.control.units,
        variant_units=p.treatment.units,
        control_mean=raw_c,
        variant_mean=_finite(p.treatment_obj.unadjusted_mean) if p.treatment.units else 0.0,
        abs_lift=_finite(abs_.estimate),
        abs_ci_low=_finite(abs_lo),
        abs_ci_high=_finite(abs_hi),
        rel_lift=_finite(rel.estimate),
        rel_ci_low=_finite(rel_lo),
        rel_ci_high=_finite(rel_hi),
        p_value=_finite(_evidence(cmp).p_value, 1.0),
        p_value_adjusted=_finite(_evidence(cmp).p_value, 1.0),
        significant=False,
        chance_to_beat_control=beat,
        expected_loss=loss,
        error=cmp.error,
    )


def adjust_insights(experiment: Experiment, insights: list[InsightRow]) -> list[InsightRow]:
    """Re-apply each family's correction and significance rule to finished rows (CIs kept)."""
    a = experiment.analysis
    families: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(insights):
        families[decision_family(r.metric_role, r.segment)].append(i)
    adjusted = {i: r.p_value for i, r in enumerate(insights)}
    for idx in families.values():
        qs = st.adjust_p_values([insights[i].p_value for i in idx], a.correction)
        adjusted.update({i: _finite(q, 1.0) for i, q in zip(idx, qs, strict=True)})
    out = []
    for i, r in enumerate(insights):
        r = replace(r, p_value_adjusted=min(1.0, max(0.0, adjusted[i])))
        out.append(replace(r, significant=_significant(experiment, r)))
    return out


def extra_statistics(experiment: Experiment, stats: list[SufficientStats]) -> dict[str, object]:
    """Omnibus χ² over k>2 proportion arms and the exact Beta-Binomial P(beat control)."""
    out: dict[str, object] = {}
    if experiment.allocation == "bandit":
        # Both pool units over allocation periods, which a bandit's moving weights confound.
        return out
    overall = {(s.metric_key, s.variant_key): s for s in stats if s.segment == "all"}
    keys = [v.key for v in experiment.variants]
    control = experiment.control.key
    for m in experiment.metrics:
        if m.kind != "proportion" or any((m.key, k) not in overall for k in keys):
            continue
        arms = [overall[(m.key, k)] for k in keys]
        if len(keys) > 2 and all(a.units > 0 for a in arms):
            stat, p, df = st.chi_square_omnibus([a.sum for a in arms], [a.units for a in arms])
            out.setdefault("omnibus_chi_square", {})[m.key] = {  # type: ignore[index]
                "statistic": _finite(stat),
                "p_value": _finite(p, 1.0),
                "df": df,
            }
        c = overall[(m.key, control)]
        exact = {}
        for t in experiment.treatments:
            s = overall[(m.key, t.key)]
            if c.units and s.units:
                p_beat = st.beta_binomial_chance_to_win(
                    st.ProportionStats(n=c.units, sum=c.sum),
                    st.ProportionStats(n=s.units, sum=s.sum),
                )
                exact[t.key] = _finite(p_beat if m.direction == "increase" else 1 - p_beat, 0.5)
        if exact:
            out.setdefault("exact_chance_to_beat_control", {})[m.key] = exact  # type: ignore[index]
    return out
