"""SRM, omnibus χ², Beta-Binomial, multiple testing and power against scipy/statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from abflow.stats import (
    MeanStats,
    ProportionStats,
    adjust_p_values,
    adjusted_ci_alpha,
    beta_binomial_chance_to_win,
    chi_square_omnibus,
    compare,
    days_remaining,
    minimum_detectable_effect,
    sample_size_per_variant,
    srm_p_value,
)

RTOL = 1e-6

SRM_CASES = [
    ([5000, 5000], [0.5, 0.5]),
    ([5050, 4950], [0.5, 0.5]),
    ([5300, 4700], [50, 50]),
    ([1000, 2000, 3050], [1, 2, 3]),
    ([333, 310, 357], [1 / 3, 1 / 3, 1 / 3]),
    ([900_000, 100_400], [0.9, 0.1]),
    ([4, 7], [0.5, 0.5]),
    ([10_000_000, 10_004_000], [1, 1]),
]


@pytest.mark.parametrize(("counts", "weights"), SRM_CASES)
def test_srm_matches_scipy_chisquare(counts: list[int], weights: list[float]) -> None:
    w = np.array(weights, float)
    expected = sum(counts) * w / w.sum()
    ref = stats.chisquare(counts, expected)
    assert srm_p_value(counts, weights) == pytest.approx(float(ref.pvalue), rel=RTOL, abs=1e-300)


def test_srm_ignores_zero_weight_arms() -> None:
    ref = stats.chisquare([5050, 4950], [5000, 5000]).pvalue
    assert srm_p_value([5050, 4950, 3], [0.5, 0.5, 0.0]) == pytest.approx(float(ref), rel=RTOL)


OMNIBUS_CASES = [
    ([100, 120], [1000, 1000]),
    ([100, 120, 90], [1000, 1000, 1000]),
    ([10, 15, 12, 30], [200, 210, 190, 205]),
    ([5000, 5100, 4950, 5020, 5200], [100_000] * 5),
    ([1, 0, 2], [3, 3, 4]),
    ([500_000, 501_000, 499_000], [10_000_000] * 3),
]


@pytest.mark.parametrize(("conv", "totals"), OMNIBUS_CASES)
def test_omnibus_matches_chi2_contingency(conv: list[int], totals: list[int]) -> None:
    table = np.array([[x, n - x] for x, n in zip(conv, totals, strict=True)])
    ref = stats.chi2_contingency(table, correction=False)
    stat, p, df = chi_square_omnibus(conv, totals)
    assert df == ref.dof
    assert stat == pytest.approx(float(ref.statistic), rel=RTOL)
    assert p == pytest.approx(float(ref.pvalue), rel=RTOL)


def _quad_p_b_beats_a(x_a: float, n_a: float, x_b: float, n_b: float) -> float:
    a = stats.beta(1 + x_a, 1 + n_a - x_a)
    b = stats.beta(1 + x_b, 1 + n_b - x_b)
    lo = max(0.0, min(a.mean() - 40 * a.std(), b.mean() - 40 * b.std()))
    hi = min(1.0, max(a.mean() + 40 * a.std(), b.mean() + 40 * b.std()))
    value, _ = integrate.quad(
        lambda x: b.pdf(x) * a.cdf(x),
        lo,
        hi,
        points=[a.mean(), b.mean()],
        limit=500,
        epsabs=1e-13,
        epsrel=1e-11,
    )
    return value


BETA_CASES = [
    (0, 0, 0, 0),
    (3, 10, 5, 10),
    (100, 1000, 120, 1000),
    (50, 500, 1200, 10_000),
    (1200, 10_000, 50, 500),
    (10, 10, 9, 10),
    (0, 50, 2, 50),
    (30_000, 100_000, 30_300, 100_000),
    (240_000, 480_000, 240_900, 480_000),
    (500_000, 10_000_000, 501_000, 10_000_000),
    (9_000_000, 10_000_000, 8_999_000, 10_000_000),
]


@pytest.mark.parametrize(("x_a", "n_a", "x_b", "n_b"), BETA_CASES)
def test_beta_binomial_matches_quadrature(x_a: int, n_a: int, x_b: int, n_b: int) -> None:
    ref = _quad_p_b_beats_a(x_a, n_a, x_b, n_b)
    got = beta_binomial_chance_to_win(ProportionStats(n_a, x_a), ProportionStats(n_b, x_b))
    assert got == pytest.approx(ref, rel=RTOL, abs=1e-9)


def test_beta_binomial_non_integer_counts_use_quadrature() -> None:
    ref = _quad_p_b_beats_a(10.5, 100, 14.25, 100)
    got = beta_binomial_chance_to_win(ProportionStats(100, 10.5), ProportionStats(100, 14.25))
    assert got == pytest.approx(ref, rel=RTOL)


P_VECTORS = [
    [0.01, 0.04, 0.03, 0.005],
    [0.2, 0.001, 0.049, 0.051, 0.5, 1.0],
    [0.03, 0.03, 0.03],
    [0.9],
    list(np.random.default_rng(3).uniform(0, 0.2, 25)),
]


@pytest.mark.parametrize("p_values", P_VECTORS)
@pytest.mark.parametrize(
    ("method", "sm_method"),
    [("holm", "holm"), ("benjamini_hochberg", "fdr_bh"), ("bonferroni", "bonferroni")],
)
def test_adjust_p_values_match_multipletests(
    p_values: list[float], method: str, sm_method: str
) -> None:
    ref = multipletests(p_values, method=sm_method)[1]
    got = adjust_p_values(p_values, method)  # type: ignore[arg-type]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert adjust_p_values(p_values, "none") == pytest.approx(p_values)


def test_three_treatments_bonferroni_p_and_ci_match_scipy() -> None:
    rng = np.random.default_rng(42)
    control = rng.normal(0.0, 1.0, 400)
    arms = [rng.normal(shift, 1.2, 380 + 10 * i) for i, shift in enumerate((0.05, 0.2, 0.3))]
    c = MeanStats(control.size, float(control.sum()), float((control**2).sum()))
    results = [
        compare(c, MeanStats(a.size, float(a.sum()), float((a**2).sum())), difference="absolute")
        for a in arms
    ]
    raw = [r.p_value for r in results]
    refs = [stats.ttest_ind(a, control, equal_var=False) for a in arms]
    np.testing.assert_allclose(raw, [float(r.pvalue) for r in refs], rtol=RTOL)
    np.testing.assert_allclose(
        adjust_p_values(raw, "holm"), multipletests(raw, method="holm")[1], rtol=RTOL
    )
    ci_alpha = adjusted_ci_alpha(0.05, raw, "bonferroni")
    for a, ref in zip(arms, refs, strict=True):
        a_stats = MeanStats(a.size, float(a.sum()), float((a**2).sum()))
        r = compare(c, a_stats, difference="absolute", alpha=ci_alpha)
        lo, hi = ref.confidence_interval(1 - 0.05 / 3)
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=RTOL)


def test_adjusted_ci_alpha_conventions() -> None:
    ps = [0.001, 0.02, 0.04, 0.3]
    assert adjusted_ci_alpha(0.05, ps, "none") == 0.05
    assert adjusted_ci_alpha(0.05, ps, "bonferroni") == pytest.approx(0.0125)
    assert adjusted_ci_alpha(0.05, ps, "holm") == pytest.approx(0.0125)
    # BH rejects 0.001 (0.004) and 0.02 (0.04); 0.04 → 0.0533 is not rejected: R = 2.
    assert adjusted_ci_alpha(0.05, ps, "benjamini_hochberg") == pytest.approx(0.05 * 2 / 4)


# Power: our convention is statsmodels NormalIndPower (ratio 1, two-sided, both tails) with
# d = δ / sqrt((σC² + σT²)/2), σ² = p(1−p) for rates; NOT Cohen's arcsine h.
def _d_prop(p1: float, p2: float) -> float:
    return (p2 - p1) / math.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / 2)


SAMPLE_CASES = [
    # baseline, mde, relative, alpha, power, variants
    (0.10, 0.10, True, 0.05, 0.8, 2),
    (0.10, 0.02, False, 0.05, 0.8, 2),
    (0.02, 0.05, True, 0.05, 0.9, 2),
    (0.50, 0.01, False, 0.01, 0.8, 2),
    (0.30, -0.05, True, 0.05, 0.8, 2),
    (0.10, 0.10, True, 0.05, 0.8, 4),
]


@pytest.mark.parametrize(("p", "mde", "relative", "alpha", "power", "variants"), SAMPLE_CASES)
def test_sample_size_proportion_matches_normal_ind_power(
    p: float, mde: float, relative: bool, alpha: float, power: float, variants: int
) -> None:
    p2 = p * (1 + mde) if relative else p + mde
    a = alpha / (variants - 1)  # Bonferroni over treatment-vs-control comparisons
    ref = NormalIndPower().solve_power(effect_size=abs(_d_prop(p, p2)), alpha=a, power=power)
    got = sample_size_per_variant(
        p, mde, relative=relative, alpha=alpha, power=power, variants=variants
    )
    assert got == math.ceil(ref)


@pytest.mark.parametrize(
    ("mean", "std", "mde", "relative"), [(50.0, 20.0, 0.05, True), (3.0, 7.5, 0.4, False)]
)
def test_sample_size_and_mde_mean_match_normal_ind_power(
    mean: float, std: float, mde: float, relative: bool
) -> None:
    delta = mde * mean if relative else mde
    ref_n = NormalIndPower().solve_power(effect_size=delta / std, alpha=0.05, power=0.8)
    n = sample_size_per_variant(mean, mde, relative=relative, kind="mean", std=std)
    assert n == math.ceil(ref_n)
    # NormalIndPower.solve_power stops ~5e-6 short in effect size; root-find its power() tightly.
    ref_d = optimize.brentq(
        lambda d: NormalIndPower().power(d, 1234, 0.05) - 0.8, 1e-6, 10, xtol=1e-15, rtol=1e-15
    )
    got = minimum_detectable_effect(mean, 1234, relative=relative, kind="mean", std=std)
    expected = ref_d * std / (abs(mean) if relative else 1.0)
    assert got == pytest.approx(expected, rel=RTOL)


@pytest.mark.parametrize(("p", "n"), [(0.1, 5000), (0.02, 100_000), (0.5, 300), (0.9, 2000)])
def test_mde_proportion_round_trips_through_normal_ind_power(p: float, n: int) -> None:
    rel = minimum_detectable_effect(p, n, relative=True)
    absolute = minimum_detectable_effect(p, n, relative=False)
    assert rel * p == pytest.approx(absolute, rel=1e-9)
    power = NormalIndPower().power(effect_size=_d_prop(p, p + absolute), nobs1=n, alpha=0.05)
    assert power == pytest.approx(0.8, rel=RTOL)


def test_mde_caps_at_largest_possible_lift_and_days_remaining() -> None:
    assert minimum_detectable_effect(0.5, 1, relative=False) == pytest.approx(0.5, abs=1e-9)
    assert math.isfinite(minimum_detectable_effect(3.0, 0, relative=True, kind="mean", std=1.0))
    assert days_remaining(500, 2000, 5.0) == pytest.approx(15.0)
    assert days_remaining(2500, 2000, 5.0) == 0.0
    assert days_remaining(0, 2000, 5.0) is None
    assert days_remaining(10, 2000, 0.0) is None
