"""Calibration by simulation of sufficient statistics (fixed seeds, a few seconds in total)."""

from __future__ import annotations

import numpy as np
from scipy import stats

from abflow.stats import (
    MeanStats,
    ProportionStats,
    RegressionAdjustedStats,
    compare,
    cuped_adjust,
)


def _normal_sums(
    rng: np.random.Generator, sims: int, n: int, mu: float, sigma: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact draws of (Σy, Σy²) for n iid N(mu, sigma²): Σy normal, centred SS ~ σ²χ²(n−1)."""
    total = n * mu + np.sqrt(n) * sigma * rng.standard_normal(sims)
    centred = sigma**2 * rng.chisquare(n - 1, sims)
    return total, centred + total**2 / n


def test_aa_false_positive_rate_welch_normal_means() -> None:
    rng = np.random.default_rng(20240601)
    sims, n_c, n_t = 20_000, 40, 25
    s_c, q_c = _normal_sums(rng, sims, n_c, 5.0, 1.0)
    s_t, q_t = _normal_sums(rng, sims, n_t, 5.0, 3.0)  # unequal variances: Welch's home turf
    p = np.array(
        [
            compare(MeanStats(n_c, a, b), MeanStats(n_t, c, d), difference="absolute").p_value
            for a, b, c, d in zip(s_c, q_c, s_t, q_t, strict=True)
        ]
    )
    rate = float(np.mean(p < 0.05))
    print(f"A/A Welch normal false-positive rate: {rate:.4f}")
    assert abs(rate - 0.05) <= 0.01


def test_aa_false_positive_rate_welch_proportions_and_skewed_revenue() -> None:
    rng = np.random.default_rng(7)
    sims, n = 10_000, 2_000
    x_c = rng.binomial(n, 0.05, sims)
    x_t = rng.binomial(n, 0.05, sims)
    p_prop = np.array(
        [
            compare(ProportionStats(n, a), ProportionStats(n, b)).p_value
            for a, b in zip(x_c, x_t, strict=True)
        ]
    )
    # Skewed revenue: lognormal(0, 1) per unit, 500 units per arm, raw draws in chunks.
    p_rev: list[float] = []
    for _ in range(8):
        y = rng.lognormal(0.0, 1.0, size=(1_000, 2, 500))
        sums, squares = y.sum(axis=2), (y * y).sum(axis=2)
        p_rev.extend(
            compare(MeanStats(500, s[0], q[0]), MeanStats(500, s[1], q[1])).p_value
            for s, q in zip(sums, squares, strict=True)
        )
    rate_prop = float(np.mean(p_prop < 0.05))
    rate_rev = float(np.mean(np.array(p_rev) < 0.05))
    print(f"A/A Welch proportions: {rate_prop:.4f}, lognormal revenue: {rate_rev:.4f}")
    assert abs(rate_prop - 0.05) <= 0.01
    assert abs(rate_rev - 0.05) <= 0.01


def test_ci_coverage_absolute_and_relative() -> None:
    rng = np.random.default_rng(99)
    sims = 20_000
    # Absolute lift of normal means, unbalanced arms, true lift 0.7.
    n_c, n_t = 200, 50
    s_c, q_c = _normal_sums(rng, sims, n_c, 10.0, 1.0)
    s_t, q_t = _normal_sums(rng, sims, n_t, 10.7, 3.0)
    hits_abs = 0
    for a, b, c, d in zip(s_c, q_c, s_t, q_t, strict=True):
        r = compare(MeanStats(n_c, a, b), MeanStats(n_t, c, d), difference="absolute")
        hits_abs += r.ci_low <= 0.7 <= r.ci_high
    # Relative lift of conversion rates (delta method), true lift 0.10.
    n = 5_000
    x_c = rng.binomial(n, 0.10, sims)
    x_t = rng.binomial(n, 0.11, sims)
    hits_rel = hits_bayes = 0
    for a, b in zip(x_c, x_t, strict=True):
        r = compare(ProportionStats(n, a), ProportionStats(n, b))
        hits_rel += r.ci_low <= 0.1 <= r.ci_high
        rb = compare(ProportionStats(n, a), ProportionStats(n, b), engine="bayesian")
        hits_bayes += rb.ci_low <= 0.1 <= rb.ci_high
    cov_abs, cov_rel, cov_bayes = hits_abs / sims, hits_rel / sims, hits_bayes / sims
    print(f"coverage absolute {cov_abs:.4f}, relative {cov_rel:.4f}, bayes flat {cov_bayes:.4f}")
    assert abs(cov_abs - 0.95) <= 0.01
    assert abs(cov_rel - 0.95) <= 0.01
    assert abs(cov_bayes - 0.95) <= 0.01


def test_sequential_peeking_is_safe_and_naive_peeking_is_not() -> None:
    rng = np.random.default_rng(12345)
    sims, looks, per_day, rate = 3_000, 20, 250, 0.10
    # Cumulative A/A conversions after each daily look.
    x_c = rng.binomial(per_day, rate, (sims, looks)).cumsum(axis=1)
    x_t = rng.binomial(per_day, rate, (sims, looks)).cumsum(axis=1)
    ever_seq = np.zeros(sims, bool)
    ever_naive = np.zeros(sims, bool)
    for day in range(looks):
        n = per_day * (day + 1)
        for i in range(sims):
            c, t = ProportionStats(n, x_c[i, day]), ProportionStats(n, x_t[i, day])
            if not ever_seq[i]:
                ever_seq[i] = compare(c, t, sequential=True).p_value < 0.05
            if not ever_naive[i]:
                ever_naive[i] = compare(c, t).p_value < 0.05
    seq_rate, naive_rate = float(ever_seq.mean()), float(ever_naive.mean())
    print(f"ever significant over {looks} looks: sequential {seq_rate:.4f}, naive {naive_rate:.4f}")
    assert seq_rate <= 0.05
    assert naive_rate > 0.10


def test_sequential_detects_a_real_effect() -> None:
    rng = np.random.default_rng(3)
    n = 50_000
    hits = 0
    for _ in range(200):
        c = ProportionStats(n, int(rng.binomial(n, 0.10)))
        t = ProportionStats(n, int(rng.binomial(n, 0.11)))
        hits += compare(c, t, sequential=True).p_value < 0.05
    assert hits / 200 > 0.8


def test_cuped_variance_reduction_matches_one_minus_rho_squared() -> None:
    rng = np.random.default_rng(2013)
    sims, n, rho, lift = 20_000, 500, 0.6, 0.05
    cov = np.array([[1.0, rho], [rho, 1.0]])  # (x pre, y post), unit variances
    # Sufficient stats exactly: means ~ N(μ, Σ/n), centred cross-products ~ Wishart(n−1, Σ).
    means = rng.multivariate_normal([0.0, 0.0], cov / n, size=(sims, 2))
    means[:, 1, 1] += lift
    wish = stats.wishart(df=n - 1, scale=cov).rvs(size=sims * 2, random_state=rng)
    wish = wish.reshape(sims, 2, 2, 2)
    plain, adjusted, var_ratio = [], [], []
    for i in range(sims):
        arms = []
        for arm in range(2):
            mx, my = means[i, arm]
            w = wish[i, arm]
            arms.append(
                RegressionAdjustedStats(
                    n=n,
                    sum=n * my,
                    sum_squares=w[1, 1] + n * my * my,
                    pre_sum=n * mx,
                    pre_sum_squares=w[0, 0] + n * mx * mx,
                    post_pre_sum_of_products=w[0, 1] + n * mx * my,
                )
            )
        raw = compare(arms[0], arms[1], difference="absolute")  # θ = 0: no adjustment
        adj_c, adj_t = cuped_adjust(arms)
        adj = compare(adj_c, adj_t, difference="absolute")
        plain.append(raw.estimate)
        adjusted.append(adj.estimate)
        var_ratio.append(adj.std_error**2 / raw.std_error**2)
    theory = 1 - rho**2
    empirical = float(np.var(adjusted) / np.var(plain))
    estimated = float(np.mean(var_ratio))
    print(
        f"CUPED variance ratio: empirical {empirical:.4f}, estimated {estimated:.4f}, "
        f"theory {theory:.4f}"
    )
    assert abs(empirical - theory) <= 0.02
    assert abs(estimated - theory) <= 0.02
    assert abs(float(np.mean(adjusted)) - lift) < 3 * float(np.std(adjusted)) / np.sqrt(sims)
