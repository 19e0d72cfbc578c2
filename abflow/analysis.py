"""Pure analysis: sufficient statistics in, variant_stats and insights rows out (no I/O)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from uuid import UUID

from abflow import stats as st
from abflow.definitions import Experiment, Metric
from abflow.results import InsightRow, SufficientStats, VariantStatRow

StatsObject = st.MeanStats | st.ProportionStats | st.RatioStats | st.RegressionAdjustedStats


@dataclass(frozen=True)
class Comparison:
    """Relative and absolute comparison of one treatment against control."""

    relative: st.CompareResult
    absolute: st.CompareResult
    method: str
    error: str | None


def _finite(x: float | None, default: float = 0.0) -> float:
    return default if x is None or not math.isfinite(x) else float(x)


def to_stats(metric: Metric, s: SufficientStats) -> StatsObject:
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
    return st.MeanStats(n=s.units, sum=s.sum, sum_squares=s.sum_squares)


def variant_stat_row(
    run_id: UUID, experiment: Experiment, metric: Metric, s: SufficientStats
) -> VariantStatRow:
    """One `variant_stats` row with mean and variance per SPEC §4 conventions."""
    obj = to_stats(metric, s)
    ok = s.units > 0 and not (metric.kind == "ratio" and not s.denominator_sum)
    mean = _finite(obj.mean) if ok else None
    variance = _finite(obj.variance) if ok and s.units > 1 else None
    return VariantStatRow(
        run_id=run_id,
        experiment_key=experiment.key,
        metric_key=s.metric_key,
        variant_key=s.variant_key,
        segment=s.segment,
        units=s.units,
        mean=mean,
        variance=variance,
        sum=s.sum,
        sum_squares=s.sum_squares,
        denominator_sum=s.denominator_sum,
        denominator_sum_squares=s.denominator_sum_squares,
        sum_products=s.sum_products,
        covariate_sum=s.covariate_sum,
        covariate_sum_squares=s.covariate_sum_squares,
        covariate_sum_products=s.covariate_sum_products,
    )


def _cuped_inputs(
    experiment: Experiment, metric: Metric, arms: dict[str, SufficientStats]
) -> tuple[dict[str, StatsObject] | None, str | None]:
    """CUPED inputs with θ pooled over all arms, or (None, reason) when CUPED does not apply."""
    if experiment.analysis.cuped is None:
        return None, None
    if metric.kind == "ratio":
        return None, "cuped_not_applied_ratio"
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
) -> Comparison:
    """Relative and absolute comparisons under the experiment's analysis settings."""
    a = experiment.analysis
    test = a.test if metric.kind == "proportion" else "welch"
    kwargs = dict(
        engine=a.engine,
        alpha=a.alpha if alpha is None else alpha,
        sequential=a.sequential,
        sequential_tuning=a.sequential_tuning,
        test=test,
        prior=a.prior,
    )
    rel = st.compare(control, treatment, difference="relative", **kwargs)  # type: ignore[arg-type]
    abs_ = st.compare(control, treatment, difference="absolute", **kwargs)  # type: ignore[arg-type]
    return Comparison(relative=rel, absolute=abs_, method=rel.method, error=rel.error or abs_.error)


def build_insights(
    run_id: UUID,
    experiment: Experiment,
    as_of: datetime,
    stats: list[SufficientStats],
) -> tuple[list[VariantStatRow], list[InsightRow]]:
    """All variant_stats and insights rows of one run, with multiple-testing adjustment applied."""
    grouped: dict[tuple[str, str], dict[str, SufficientStats]] = defaultdict(dict)
    for s in stats:
        grouped[(s.metric_key, s.segment)][s.variant_key] = s
    control_key = experiment.control.key
    variant_rows: list[VariantStatRow] = []
    insights: list[InsightRow] = []
    inputs: list[tuple[Metric, StatsObject, StatsObject]] = []
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
            for t in experiment.treatments:
                if t.key not in arms:
                    continue
                c_raw, t_raw = to_stats(metric, arms[control_key]), to_stats(metric, arms[t.key])
                c_in = cuped[control_key] if cuped else c_raw
                t_in = cuped[t.key] if cuped else t_raw
                cmp = compare_arms(experiment, metric, c_in, t_in)
                row = _insight_row(
                    run_id,
                    experiment,
                    as_of,
                    metric,
                    segment,
                    t.key,
                    arms[control_key],
                    arms[t.key],
                    c_raw,
                    t_raw,
                    cmp,
                    cuped is not None,
                )
                if cuped_note and row.error is None and segment == "all":
                    # Recorded, not fatal: the comparison itself is the unadjusted one.
                    row = replace(row, method=f"{row.method}({cuped_note})")
                insights.append(row)
                inputs.append((metric, c_in, t_in))
    return variant_rows, adjust_insights(experiment, insights, inputs)


def _insight_row(
    run_id: UUID,
    experiment: Experiment,
    as_of: datetime,
    metric: Metric,
    segment: str,
    variant_key: str,
    c_s: SufficientStats,
    t_s: SufficientStats,
    c: StatsObject,
    t: StatsObject,
    cmp: Comparison,
    cuped: bool,
) -> InsightRow:
    rel, abs_ = cmp.relative, cmp.absolute
    # p-value and significance follow GrowthBook: the relative comparison, unless the control
    # mean is zero and only the absolute difference is defined.
    main = abs_ if rel.error == "zero_control_mean" and abs_.error is None else rel
    beat = _finite(main.chance_to_win, 0.5)
    loss = _finite(main.risk)
    if metric.direction == "decrease":
        # Lower is better: flip the win probability and take the other side's expected loss.
        beat = 1.0 - beat
        loss = _finite(main.risk_control)
    method = main.method + ("+cuped" if cuped else "")
    return InsightRow(
        run_id=run_id,
        experiment_key=experiment.key,
        as_of=as_of,
        metric_key=metric.key,
        metric_role=metric.role,
        variant_key=variant_key,
        control_key=experiment.control.key,
        segment=segment,
        method=method,
        control_units=c_s.units,
        variant_units=t_s.units,
        control_mean=_finite(c.mean) if c_s.units else 0.0,
        variant_mean=_finite(t.mean) if t_s.units else 0.0,
        abs_lift=_finite(abs_.estimate),
        abs_ci_low=_finite(abs_.ci_low),
        abs_ci_high=_finite(abs_.ci_high),
        rel_lift=_finite(rel.estimate),
        rel_ci_low=_finite(rel.ci_low),
        rel_ci_high=_finite(rel.ci_high),
        p_value=_finite(main.p_value, 1.0),
        p_value_adjusted=_finite(main.p_value, 1.0),
        significant=False,
        chance_to_beat_control=beat,
        expected_loss=loss,
        error=cmp.error,
    )


def adjust_insights(
    experiment: Experiment,
    insights: list[InsightRow],
    inputs: list[tuple[Metric, StatsObject, StatsObject]] | None = None,
) -> list[InsightRow]:
    """Apply the correction over treatments x non-guardrail metrics x segments, CIs included."""
    a = experiment.analysis
    family = [i for i, r in enumerate(insights) if r.metric_role != "guardrail"]
    adjusted = {i: r.p_value for i, r in enumerate(insights)}
    ci_alpha = a.alpha
    if a.correction != "none" and family:
        family_p = [insights[i].p_value for i in family]
        ps = st.adjust_p_values(family_p, a.correction)
        adjusted.update({i: _finite(p, 1.0) for i, p in zip(family, ps, strict=True)})
        ci_alpha = st.adjusted_ci_alpha(a.alpha, family_p, a.correction)
    out = []
    for i, r in enumerate(insights):
        p_adj = min(1.0, max(0.0, adjusted[i]))
        if a.engine == "bayesian":
            # GrowthBook's decision rule: chance to beat control ≥ 1-α (95%) or ≤ α.
            significant = r.error is None and (
                r.chance_to_beat_control >= 1 - a.alpha or r.chance_to_beat_control <= a.alpha
            )
        else:
            significant = r.error is None and p_adj < a.alpha
        r = replace(r, p_value_adjusted=p_adj, significant=significant)
        if inputs is not None and ci_alpha != a.alpha and i in set(family):
            # Matching adjusted CIs: the same comparison at the family-wise alpha'.
            metric, c_in, t_in = inputs[i]
            cmp = compare_arms(experiment, metric, c_in, t_in, alpha=ci_alpha)
            r = replace(
                r,
                abs_ci_low=_finite(cmp.absolute.ci_low),
                abs_ci_high=_finite(cmp.absolute.ci_high),
                rel_ci_low=_finite(cmp.relative.ci_low),
                rel_ci_high=_finite(cmp.relative.ci_high),
            )
        out.append(r)
    return out


def extra_statistics(experiment: Experiment, stats: list[SufficientStats]) -> dict[str, object]:
    """Omnibus χ² over k>2 proportion arms and the exact Beta-Binomial P(beat control)."""
    out: dict[str, object] = {}
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
