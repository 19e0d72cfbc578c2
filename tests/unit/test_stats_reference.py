"""compare() against independent references: scipy t-tests, statsmodels z-tests, hand formulas."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from abflow.stats import MeanStats, ProportionStats, RatioStats, compare

RTOL = 1e-6


def _mean_stats(y: np.ndarray) -> MeanStats:
    return MeanStats(n=int(y.size), sum=float(y.sum()), sum_squares=float((y * y).sum()))


def _raw(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(10.0, 2.0, n)
    if kind == "revenue":  # skewed, zero-inflated purchase values
        return np.where(rng.random(n) < 0.3, rng.lognormal(3.0, 1.2, n), 0.0)
    if kind == "lognormal":
        return rng.lognormal(0.0, 1.5, n)
    raise AssertionError(kind)


# (kind, n_control, n_treatment, treatment shift): tiny n, balanced, 20:1 unbalanced, skewed.
MEAN_CASES = [
    ("normal", 2, 2, 0.0),
    ("normal", 3, 3, 1.0),
    ("normal", 2, 5, 0.5),
    ("normal", 50, 60, 0.3),
    ("normal", 1000, 1000, 0.1),
    ("normal", 2000, 100, 0.2),
    ("revenue", 5000, 5000, 1.0),
    ("revenue", 20000, 1000, 2.0),
    ("lognormal", 300, 310, 0.0),
    ("lognormal", 40, 800, 0.5),
]


@pytest.mark.parametrize(("kind", "n_c", "n_t", "shift"), MEAN_CASES)
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_welch_means_match_scipy_ttest_ind(
    kind: str, n_c: int, n_t: int, shift: float, alternative: str
) -> None:
    c = _raw(kind, n_c, seed=n_c + 7)
    t = _raw(kind, n_t, seed=n_t + 11) + shift
    ref = stats.ttest_ind(t, c, equal_var=False, alternative=alternative)
    kwargs: dict[str, Any] = {"difference": "absolute", "alternative": alternative}
    r = compare(_mean_stats(c), _mean_stats(t), **kwargs)
    assert r.error is None and r.method == "welch_t"
    assert r.estimate == pytest.approx(t.mean() - c.mean(), rel=RTOL, abs=1e-12)
    assert r.p_value == pytest.approx(float(ref.pvalue), rel=RTOL, abs=1e-300)
    assert r.df == pytest.approx(float(ref.df), rel=RTOL)
    if alternative == "two-sided":
        lo, hi = ref.confidence_interval(0.95)
        assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=RTOL)
    elif alternative == "greater":
        # Our one-sided convention: the finite bound equals scipy's one-sided 95% bound.
        assert r.ci_low == pytest.approx(ref.confidence_interval(0.95).low, rel=RTOL)
    else:
        assert r.ci_high == pytest.approx(ref.confidence_interval(0.95).high, rel=RTOL)


# (conversions_c, n_c, conversions_t, n_t): balanced, 20:1 unbalanced, tiny, 10M per arm.
PROP_CASES = [
    (100, 1000, 120, 1000),
    (1, 2, 2, 2),
    (1, 3, 2, 3),
    (500, 10_000, 40, 500),
    (40, 500, 560, 10_000),
    (4_000, 100_000, 4_150, 100_000),
    (30, 200, 20, 200),
    (500_000, 10_000_000, 501_500, 10_000_000),
    (5_000_000, 10_000_000, 5_002_000, 10_000_000),
    (99, 100, 95, 100),
]


def _welch_df(v_c: float, n_c: int, v_t: float, n_t: int) -> float:
    a, b = v_t / n_t, v_c / n_c
    return (a + b) ** 2 / (a * a / (n_t - 1) + b * b / (n_c - 1))


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PROP_CASES)
def test_welch_proportions_match_ttest_ind_from_stats(
    x_c: int, n_c: int, x_t: int, n_t: int
) -> None:
    p_c, p_t = x_c / n_c, x_t / n_t
    v_c, v_t = p_c * (1 - p_c), p_t * (1 - p_t)
    ref = stats.ttest_ind_from_stats(
        p_t, math.sqrt(v_t), n_t, p_c, math.sqrt(v_c), n_c, equal_var=False
    )
    df = _welch_df(v_c, n_c, v_t, n_t)
    half = stats.t.ppf(0.975, df) * math.sqrt(v_t / n_t + v_c / n_c)
    r = compare(ProportionStats(n_c, x_c), ProportionStats(n_t, x_t), difference="absolute")
    assert r.error is None
    assert r.p_value == pytest.approx(float(ref.pvalue), rel=RTOL)
    assert r.estimate / r.std_error == pytest.approx(float(ref.statistic), rel=RTOL)
    assert (r.ci_low, r.ci_high) == pytest.approx((p_t - p_c - half, p_t - p_c + half), rel=RTOL)


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PROP_CASES)
def test_relative_delta_method_matches_hand_computation(
    x_c: int, n_c: int, x_t: int, n_t: int
) -> None:
    p_c, p_t = x_c / n_c, x_t / n_t
    v_c, v_t = p_c * (1 - p_c), p_t * (1 - p_t)
    rel = (p_t - p_c) / p_c
    var = v_t / (p_c**2 * n_t) + v_c * p_t**2 / (p_c**4 * n_c)
    df = _welch_df(v_c, n_c, v_t, n_t)
    half = stats.t.ppf(0.95, df) * math.sqrt(var)  # 90% CI
    p = 2 * stats.t.sf(abs(rel) / math.sqrt(var), df)
    r = compare(ProportionStats(n_c, x_c), ProportionStats(n_t, x_t), alpha=0.10)
    assert r.estimate == pytest.approx(rel, rel=RTOL, abs=1e-12)
    assert r.std_error == pytest.approx(math.sqrt(var), rel=RTOL)
    assert (r.ci_low, r.ci_high) == pytest.approx((rel - half, rel + half), rel=RTOL, abs=1e-12)
    assert r.p_value == pytest.approx(p, rel=RTOL)


@pytest.mark.parametrize(("x_c", "n_c", "x_t", "n_t"), PROP_CASES)
def test_z_pooled_matches_chi2_and_proportions_ztest(
    x_c: int, n_c: int, x_t: int, n_t: int
) -> None:
    c, t = ProportionStats(n_c, x_c), ProportionStats(n_t, x_t)
    r = compare(c, t, difference="absolute", test="z_pooled")
    table = np.array([[x_t, n_t - x_t], [x_c, n_c - x_c]])
    chi2_p = stats.chi2_contingency(table, correction=False).pvalue
    z_ref, p_ref = proportions_ztest([x_t, x_c], [n_t, n_c])
    assert r.method == "z_pooled" and r.error is None
    assert r.p_value == pytest.approx(float(chi2_p), rel=RTOL)
    assert r.p_value == pytest.approx(float(p_ref), rel=RTOL)
    lo, hi = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", compare="diff")
    assert (r.ci_low, r.ci_high) == pytest.approx((lo, hi), rel=RTOL, abs=1e-12)
    for alternative, sm_alt in (("greater", "larger"), ("less", "smaller")):
        kwargs: dict[str, Any] = {"alternative": alternative, "test": "z_pooled"}
        one = compare(c, t, difference="absolute", **kwargs)
        _, p_one = proportions_ztest([x_t, x_c], [n_t, n_c], alternative=sm_alt)
        assert one.p_value == pytest.approx(float(p_one), rel=RTOL)
    # Relative lift: same null, same pooled p-value.
    assert compare(c, t, test="z_pooled").p_value == pytest.approx(float(p_ref), rel=RTOL)


def test_z_pooled_on_means_falls_back_to_welch() -> None:
    c, t = MeanStats(10, 10.0, 30.0), MeanStats(10, 12.0, 35.0)
    assert compare(c, t, test="z_pooled").method == "welch_t"


# Ratio metric (revenue per session): compare against the delta method written out by hand.
def test_ratio_delta_method_matches_hand_computation() -> None:
    rng = np.random.default_rng(5)
    arms = []
    for n, lam in ((4000, 3.0), (3500, 3.2)):
        d = rng.poisson(lam, n) + 1.0
        m = d * rng.gamma(2.0, 5.0, n)
        arms.append((m, d))
    stats_ = [
        RatioStats(m.size, m.sum(), (m * m).sum(), d.sum(), (d * d).sum(), (m * d).sum())
        for m, d in arms
    ]

    def ratio_var(m: np.ndarray, d: np.ndarray) -> float:
        cov = np.cov(m, d, ddof=1)
        mm, md = m.mean(), d.mean()
        return (cov[0, 0] / md**2 - 2 * cov[0, 1] * mm / md**3 + mm**2 * cov[1, 1] / md**4) / m.size

    (mc, dc), (mt, dt) = arms
    rc, rt = mc.sum() / dc.sum(), mt.sum() / dt.sum()
    vc, vt = ratio_var(mc, dc), ratio_var(mt, dt)
    r = compare(stats_[0], stats_[1], difference="absolute")
    assert r.estimate == pytest.approx(rt - rc, rel=RTOL)
    assert r.std_error == pytest.approx(math.sqrt(vc + vt), rel=RTOL)
    rel = compare(stats_[0], stats_[1])
    assert rel.estimate == pytest.approx((rt - rc) / rc, rel=RTOL)
    assert rel.std_error**2 == pytest.approx(vt / rc**2 + vc * rt**2 / rc**4, rel=RTOL)


def test_bayesian_flat_and_proper_prior_match_conjugate_normal() -> None:
    c, t = ProportionStats(5000, 500), ProportionStats(5000, 560)
    freq = compare(c, t)
    flat = compare(c, t, engine="bayesian")
    z = stats.norm(freq.estimate, freq.std_error)
    assert flat.estimate == pytest.approx(freq.estimate, rel=RTOL)
    assert flat.chance_to_win == pytest.approx(z.sf(0.0), rel=RTOL)
    assert (flat.ci_low, flat.ci_high) == pytest.approx(tuple(z.ppf([0.025, 0.975])), rel=RTOL)
    # Expected losses by quadrature of the normal posterior.
    from scipy.integrate import quad

    lo, hi = freq.estimate - 12 * freq.std_error, freq.estimate + 12 * freq.std_error
    risk_t = quad(lambda x: max(-x, 0) * z.pdf(x), lo, hi, points=[0.0])[0]
    risk_c = quad(lambda x: max(x, 0) * z.pdf(x), lo, hi, points=[0.0])[0]
    assert flat.risk == pytest.approx(risk_t, rel=1e-6)
    assert flat.risk_control == pytest.approx(risk_c, rel=1e-6)
    assert flat.p_value == pytest.approx(freq.p_value, rel=RTOL)
    proper = compare(c, t, engine="bayesian", prior="proper")
    prec = 1 / freq.std_error**2 + 1 / 0.09
    assert proper.std_error == pytest.approx(math.sqrt(1 / prec), rel=RTOL)
    assert proper.estimate == pytest.approx(freq.estimate / freq.std_error**2 / prec, rel=RTOL)
    assert abs(proper.estimate) < abs(flat.estimate)  # shrinkage towards 0


def test_sequential_cs_matches_gbstats_formula() -> None:
    c, t = ProportionStats(20000, 2000), ProportionStats(20000, 2150)
    r = compare(c, t, sequential=True, difference="absolute")
    fixed = compare(c, t, difference="absolute")
    n, alpha, tuning = 40000, 0.05, 5000.0
    rho = math.sqrt((-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning)
    s2 = fixed.std_error**2 * n
    half = math.sqrt(s2) * math.sqrt(
        2 * (n * rho**2 + 1) * math.log(math.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2
    )
    assert r.method == "sequential_cs"
    assert (r.ci_low, r.ci_high) == pytest.approx((r.estimate - half, r.estimate + half), rel=RTOL)
    assert r.ci_high - r.ci_low > fixed.ci_high - fixed.ci_low  # wider than fixed horizon
    # The always-valid p crosses alpha exactly where the CS starts to exclude 0.
    assert (r.p_value < alpha) == (r.ci_low > 0 or r.ci_high < 0)
