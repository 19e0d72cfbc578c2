"""compare(): one treatment vs control from sufficient statistics (GrowthBook gbstats parity)."""

from __future__ import annotations

import math
from typing import Literal

from abflow.stats import bayesian, frequentist, sequential
from abflow.stats.models import (
    INVALID_INPUT,
    N_TOO_SMALL,
    NUMERICAL_ERROR,
    ZERO_CONTROL_MEAN,
    ZERO_DENOMINATOR,
    ZERO_VARIANCE,
    CompareResult,
    ProportionStats,
    RatioStats,
    RegressionAdjustedRatioStats,
    Stats,
    neutral_result,
)
from abflow.stats.quantile import QuantileStats

Difference = Literal["relative", "absolute"]
Engine = Literal["frequentist", "bayesian"]
Test = Literal["welch", "z_pooled"]
Prior = Literal["flat", "proper"] | bayesian.NormalPrior


def _method(control: Stats, engine: str, sequential_: bool, test: str) -> str:
    """Short name of the method actually used (z_pooled applies to proportions only)."""
    if engine == "bayesian":
        # Sequential Bayesian: the posterior as before, but evidence is the normal-mixture Bayes
        # factor, whose inverse is the always-valid p-value (Ville's inequality bounds its peeks).
        return "bayesian_sequential" if sequential_ else "bayesian_normal"
    if sequential_:
        return "sequential_cs"
    if test == "z_pooled" and isinstance(control, ProportionStats):
        return "z_pooled"
    return "welch_t"


def _validate(
    control: Stats,
    treatment: Stats,
    difference: str,
    engine: str,
    alpha: float,
    tuning: float,
    test: str,
    alternative: str,
    prior: Prior,
) -> None:
    """Raise on programming errors (bad arguments); data problems are never raised."""
    if type(control) is not type(treatment):
        raise TypeError("control and treatment must be the same statistics type")
    if difference not in ("relative", "absolute"):
        raise ValueError(f"unknown difference {difference!r}")
    if engine not in ("frequentist", "bayesian"):
        raise ValueError(f"unknown engine {engine!r}")
    if test not in ("welch", "z_pooled"):
        raise ValueError(f"unknown test {test!r}")
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown alternative {alternative!r}")
    if not isinstance(prior, bayesian.NormalPrior) and prior not in ("flat", "proper"):
        raise ValueError(f"unknown prior {prior!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError("alpha must be in (0, 1)")
    if not (tuning > 0 and math.isfinite(tuning)):
        raise ValueError("sequential_tuning must be positive")


def _degenerate(control: Stats, treatment: Stats, relative: bool) -> str | None:
    """Error code for inputs no test can use, in a fixed order of precedence."""
    if not (control.valid and treatment.valid):
        return INVALID_INPUT
    if control.n <= 1 or treatment.n <= 1:
        return N_TOO_SMALL
    if isinstance(control, QuantileStats) and isinstance(treatment, QuantileStats):
        # the rank bounds fall outside the sample: no order statistic bounds the quantile
        if not (control.bounds_inside and treatment.bounds_inside):
            return N_TOO_SMALL
    ratios = (RatioStats, RegressionAdjustedRatioStats)
    if isinstance(control, ratios) and isinstance(treatment, ratios):
        if control.d_sum == 0 or treatment.d_sum == 0:
            return ZERO_DENOMINATOR
    if control.variance <= 0 and treatment.variance <= 0:
        return ZERO_VARIANCE
    if relative and control.unadjusted_mean == 0:
        return ZERO_CONTROL_MEAN
    return None


def compare(
    control: Stats,
    treatment: Stats,
    *,
    difference: Difference = "relative",
    engine: Engine = "frequentist",
    alpha: float = 0.05,
    sequential: bool = False,
    sequential_tuning: float = 5000.0,
    test: Test = "welch",
    alternative: frequentist.Alternative = "two-sided",
    prior: Prior = "flat",
) -> CompareResult:
    """Lift of treatment over control with CI, p-value, chance to win and risk; never NaN."""
    _validate(
        control, treatment, difference, engine, alpha, sequential_tuning, test, alternative, prior
    )
    method = _method(control, engine, sequential, test)
    relative = difference == "relative"
    mean_c, mean_t = float(control.unadjusted_mean), float(treatment.unadjusted_mean)
    error = _degenerate(control, treatment, relative)
    if error is not None:
        return neutral_result(method, error, mean_c, mean_t)
    try:
        result = _compute(
            control, treatment, method, relative, alpha, sequential_tuning, alternative, prior, test
        )
    except (ArithmeticError, ValueError):
        result = NUMERICAL_ERROR
    if isinstance(result, str):
        return neutral_result(method, result, mean_c, mean_t)
    if not all(
        math.isfinite(v)
        for v in (
            result.estimate,
            result.ci_low,
            result.ci_high,
            result.p_value,
            result.std_error,
            result.chance_to_win,
            result.risk,
            result.risk_control,
            result.control_mean,
            result.treatment_mean,
        )
    ):
        return neutral_result(method, NUMERICAL_ERROR, mean_c, mean_t)
    return result


def _compute(
    control: Stats,
    treatment: Stats,
    method: str,
    relative: bool,
    alpha: float,
    tuning: float,
    alternative: frequentist.Alternative,
    prior: Prior,
    test: str = "welch",
) -> CompareResult | str:
    """The non-degenerate path; an error code instead when the lift variance vanishes."""
    n_c, n_t = float(control.n), float(treatment.n)
    var_c, var_t = float(control.variance), float(treatment.variance)
    # CUPED: the difference uses adjusted means, the relative scale and its delta-method
    # variance use the unadjusted control/treatment means (gbstats frequentist_diff/variance).
    raw_c, raw_t = float(control.unadjusted_mean), float(treatment.unadjusted_mean)
    estimate = frequentist.lift_estimate(
        float(control.mean), float(treatment.mean), relative, raw_c
    )
    variance = frequentist.lift_variance(var_c, raw_c, n_c, var_t, raw_t, n_t, relative)
    if relative and not variance > 0:
        # Treatment outcomes all zero (σT = μT = 0, σC > 0): the delta-method variance collapses
        # to 0 although the lift is uncertain. Keep the leading term var_abs/μC² (control mean
        # treated as known) so a real −100% drop is still tested rather than reported neutral.
        variance = frequentist.lift_variance(var_c, raw_c, n_c, var_t, raw_t, n_t, False) / raw_c**2
    if not variance > 0:
        return ZERO_VARIANCE
    se = math.sqrt(variance)
    df: float | None = frequentist.welch_df(var_c, n_c, var_t, n_t)
    p_value = frequentist.t_p_value(estimate / se, df, "two-sided") if df else 1.0

    if method.startswith("bayesian"):
        if method == "bayesian_sequential":
            # 1/p is the Bayes factor of N(0, τ²)-mixed alternatives against no effect (Howard et
            # al. 2021): a nonnegative martingale under H0, so P(ever p ≤ α) ≤ α under daily looks.
            p_value = sequential.cs_p_value(estimate, variance, n_c + n_t, alpha, tuning)
        prior_var: float | None = None
        prior_mean = 0.0
        normal = bayesian.PROPER_PRIOR if prior == "proper" else prior
        if isinstance(normal, bayesian.NormalPrior):
            # The prior is on the relative lift; rescale by |μC| for absolute lifts.
            scale = 1.0 if relative else raw_c**2
            prior_var = normal.stddev**2 * scale
            prior_mean = normal.mean * math.sqrt(scale)
            if not prior_var > 0:
                prior_var = None
        post_mean, post_var = bayesian.posterior_normal(estimate, variance, prior_mean, prior_var)
        post_sd = math.sqrt(post_var)
        q = frequentist.z_quantile(alpha, "two-sided")
        estimate, se, df = post_mean, post_sd, None
        low, high = post_mean - q * post_sd, post_mean + q * post_sd
    elif method == "sequential_cs":
        # One-sided (gbstats SequentialOneSided*TTest): the side of the two-sided CS at 2α, its
        # mixture tuned at 2α too, so the one-sided p is half the two-sided one at 2α.
        one_sided = alternative != "two-sided"
        level = 2.0 * alpha if one_sided else alpha
        half = sequential.cs_half_width(variance, n_c + n_t, level, tuning)
        p_value = sequential.cs_p_value(estimate, variance, n_c + n_t, level, tuning)
        if (
            test == "z_pooled"
            and isinstance(control, ProportionStats)
            and isinstance(treatment, ProportionStats)
        ):
            # Honour test: z_pooled under monitoring: the pooled (score) z in the same bound.
            z = frequentist.pooled_z_statistic(float(control.sum), n_c, float(treatment.sum), n_t)
            p_value = sequential.cs_p_value(z, 1.0, n_c + n_t, level, tuning)
        if one_sided:
            # A lift in the wrong direction can never be evidence for the alternative.
            wrong_way = estimate <= 0 if alternative == "greater" else estimate >= 0
            p_value = 1.0 if wrong_way else p_value / 2.0
        df = None
        low, high = estimate - half, estimate + half
    elif method == "z_pooled":
        if not (isinstance(control, ProportionStats) and isinstance(treatment, ProportionStats)):
            return NUMERICAL_ERROR  # unreachable: _method picks z_pooled for proportions only
        z = frequentist.pooled_z_statistic(float(control.sum), n_c, float(treatment.sum), n_t)
        p_value = frequentist.z_p_value(z, alternative)
        # Pooled SE is the null-hypothesis SE; the interval uses the unpooled (Wald) SE.
        q = frequentist.z_quantile(alpha, alternative)
        df = None
        low, high = estimate - q * se, estimate + q * se
    else:
        df = float(df or 1.0)
        p_value = frequentist.t_p_value(estimate / se, df, alternative)
        q = frequentist.t_quantile(alpha, df, alternative)
        low, high = estimate - q * se, estimate + q * se

    # Frequentist engines also report the normal-approximation chance to win and risk (flat prior).
    ctw = bayesian.chance_to_win(estimate, se)
    risk_t, risk_c = bayesian.expected_losses(estimate, se)
    return CompareResult(
        estimate=estimate,
        ci_low=low,
        ci_high=high,
        p_value=p_value,
        std_error=se,
        chance_to_win=ctw,
        risk=risk_t,
        risk_control=risk_c,
        method=method,
        df=df,
        error=None,
        control_mean=raw_c,
        treatment_mean=raw_t,
    )
