"""Ratio CUPED (gbstats RegressionAdjustedRatioStatistic, "ratio_ra") vs an independent oracle.

The oracle works on per-unit arrays, not sums: the delta method linearises each arm's ratio
R = m̄/d̄ into the influence values ψᵢ = (mᵢ − R·dᵢ)/d̄ (post) and ψpreᵢ = (mpreᵢ − Rpre·dpreᵢ)/d̄pre;
θ = Σ_arms cov(ψ, ψpre) / Σ_arms var(ψpre) (gbstats compute_theta_regression_adjusted_ratio sums the
arms' per-unit moments), the adjusted ratio is R − θ·Rpre and its per-unit variance is
var(ψ − θ·ψpre) (ddof 1), which is ∇ᵀΛ∇ of gbstats written without the 4x4 matrix (Deng et al.
2013 §3.3, delta method for ratio metrics; Jin & Ba 2023 for the regression-adjusted ratio).
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from abflow import stats as st
from abflow.analysis import build_insights, ratio_cuped_stats
from abflow.definitions import parse_experiment
from abflow.results import SufficientStats
from tests.unit.definitions_helper import CONV, definition

Arm = dict[str, np.ndarray]


def _arm(rng: np.random.Generator, n: int, lift: float) -> Arm:
    """Sessions and revenue per unit, post and pre, sharing a per-unit propensity."""
    propensity = rng.gamma(2.0, 1.0, n)
    d_pre = rng.poisson(2.0 * propensity) + 1.0
    d = rng.poisson(2.0 * propensity) + 1.0
    m_pre = d_pre * propensity * 3.0 + rng.normal(0, 1.0, n)
    m = d * propensity * 3.0 * (1 + lift) + rng.normal(0, 1.0, n)
    return {"m": m, "d": d, "c": m_pre, "dp": d_pre}


def oracle(arms: list[Arm]) -> tuple[float, list[tuple[float, float]]]:
    """θ and, per arm, (adjusted ratio, per-unit variance) from the raw per-unit values."""
    psi, psi_pre, ratios = [], [], []
    for a in arms:
        r, r_pre = a["m"].mean() / a["d"].mean(), a["c"].mean() / a["dp"].mean()
        psi.append((a["m"] - r * a["d"]) / a["d"].mean())
        psi_pre.append((a["c"] - r_pre * a["dp"]) / a["dp"].mean())
        ratios.append((r, r_pre))
    cov = sum(np.cov(p, q, ddof=1)[0, 1] for p, q in zip(psi, psi_pre, strict=True))
    var = sum(np.var(q, ddof=1) for q in psi_pre)
    theta = float(cov / var)
    out = [
        (r - theta * r_pre, float(np.var(p - theta * q, ddof=1)))
        for (r, r_pre), p, q in zip(ratios, psi, psi_pre, strict=True)
    ]
    return theta, out


def sums(key: str, variant: str, a: Arm) -> SufficientStats:
    """The sufficient statistics the warehouse returns for one arm of a ratio metric."""
    m, d, c, dp = a["m"], a["d"], a["c"], a["dp"]
    return SufficientStats(
        metric_key=key, variant_key=variant, segment="all", exposed_units=len(m),
        units=len(m), sum=m.sum(), sum_squares=(m * m).sum(), denominator_sum=d.sum(),
        denominator_sum_squares=(d * d).sum(), sum_products=(m * d).sum(),
        covariate_sum=c.sum(), covariate_sum_squares=(c * c).sum(),
        covariate_sum_products=(m * c).sum(), denominator_covariate_sum=dp.sum(),
        denominator_covariate_sum_squares=(dp * dp).sum(),
        denominator_covariate_sum_products=(d * dp).sum(),
        covariate_cross_sum_products=(c * dp).sum(),
        numerator_denominator_covariate_sum_products=(m * dp).sum(),
        covariate_denominator_sum_products=(c * d).sum(),
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_theta_mean_and_variance_match_the_per_unit_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    arms = [_arm(rng, 400, 0.0), _arm(rng, 380, 0.05), _arm(rng, 410, 0.02)]
    theta, expected = oracle(arms)
    stats = [ratio_cuped_stats(sums("rpv", str(i), a)) for i, a in enumerate(arms)]
    got_theta = st.ratio_cuped_theta(stats)
    assert got_theta is not None and math.isclose(got_theta, theta, rel_tol=1e-9)
    for s, (mean, var) in zip(stats, expected, strict=True):
        adjusted = st.RegressionAdjustedRatioStats(**{**_fields(s), "theta": got_theta})
        assert math.isclose(adjusted.mean, mean, rel_tol=1e-9)
        assert math.isclose(adjusted.variance, var, rel_tol=1e-8)
        # the adjustment removes variance the pre-period ratio explains
        assert adjusted.variance < st.RatioStats(
            n=s.n, m_sum=s.m_sum, m_sum_squares=s.m_sum_squares, d_sum=s.d_sum,
            d_sum_squares=s.d_sum_squares, m_d_sum_of_products=s.m_d_sum_of_products,
        ).variance


def _fields(s: st.RegressionAdjustedRatioStats) -> dict[str, Any]:
    from dataclasses import fields

    return {f.name: getattr(s, f.name) for f in fields(s)}


# A small case, 4 units per arm: the numbers were computed once with the oracle above (numpy 2.4)
# and recorded, so a change of formula (in either implementation) shows as a changed number.
SMALL = [
    {"m": np.array([3.0, 5.0, 0.0, 8.0]), "d": np.array([1.0, 2.0, 1.0, 3.0]),
     "c": np.array([2.0, 6.0, 1.0, 7.0]), "dp": np.array([1.0, 2.0, 2.0, 3.0])},
    {"m": np.array([4.0, 7.0, 2.0, 9.0]), "d": np.array([1.0, 2.0, 2.0, 3.0]),
     "c": np.array([3.0, 5.0, 1.0, 9.0]), "dp": np.array([1.0, 2.0, 1.0, 3.0])},
]


THETA_SMALL = 0.9097537196388454
GOLDEN_SMALL = [(0.4662068464365947, 0.21711022569589677), (0.4106332923572542, 0.5992980881393871)]


def test_small_case_golden_numbers() -> None:
    theta, expected = oracle(SMALL)
    stats = [ratio_cuped_stats(sums("r", str(i), a)) for i, a in enumerate(SMALL)]
    got = st.ratio_cuped_theta(stats)
    assert got is not None
    assert math.isclose(got, theta, rel_tol=1e-12)
    assert math.isclose(theta, THETA_SMALL, rel_tol=1e-9)
    for s, (mean, var), (g_mean, g_var) in zip(stats, expected, GOLDEN_SMALL, strict=True):
        adjusted = st.RegressionAdjustedRatioStats(**{**_fields(s), "theta": got})
        assert math.isclose(adjusted.mean, g_mean, rel_tol=1e-9) and math.isclose(mean, g_mean)
        assert math.isclose(adjusted.variance, g_var, rel_tol=1e-9) and math.isclose(var, g_var)


def _definition(cuped: bool) -> dict[str, Any]:
    d = definition(
        [CONV, {"key": "rpv", "kind": "ratio", "numerator": {"event": "rev", "value": "sum"},
                "denominator": {"event": "session"}}],
    )
    d["analysis"] = {"sequential": False, **({"cuped": {"lookback_days": 7}} if cuped else {})}
    return d


def _rows(arms: list[Arm]) -> list[SufficientStats]:
    names = ["control", "t1"]
    out = []
    for name, a in zip(names, arms, strict=True):
        n = len(a["m"])
        out.append(SufficientStats("conv", name, "all", n, n, n / 2, n / 2))
        out.append(sums("rpv", name, a))
    return out


def test_insights_use_ratio_cuped_and_agree_with_the_oracle() -> None:
    rng = np.random.default_rng(11)
    arms = [_arm(rng, 500, 0.0), _arm(rng, 500, 0.04)]
    _, expected = oracle(arms)
    e = parse_experiment(_definition(cuped=True))
    _, rows = build_insights(uuid.uuid4(), e, datetime(2026, 1, 1, tzinfo=UTC), _rows(arms))
    row = next(r for r in rows if r.metric_key == "rpv")
    assert row.method.endswith("+cuped") and "cuped_not_applied" not in row.method
    (mc, vc), (mt, vt) = expected
    assert math.isclose(row.abs_lift, mt - mc, rel_tol=1e-9)
    se = math.sqrt(vc / 500 + vt / 500)
    assert math.isclose(row.abs_ci_high - row.abs_ci_low, 2 * 1.9623 * se, rel_tol=2e-3)
    plain = parse_experiment(_definition(cuped=False))
    _, rows0 = build_insights(uuid.uuid4(), plain, datetime(2026, 1, 1, tzinfo=UTC), _rows(arms))
    row0 = next(r for r in rows0 if r.metric_key == "rpv")
    # CUPED narrows the interval of the same comparison
    assert row.abs_ci_high - row.abs_ci_low < 0.8 * (row0.abs_ci_high - row0.abs_ci_low)
    # the relative scale keeps the unadjusted control ratio (gbstats)
    assert math.isclose(row.control_mean, arms[0]["m"].sum() / arms[0]["d"].sum())


def test_ratio_cuped_falls_back_with_a_recorded_reason() -> None:
    rng = np.random.default_rng(5)
    arms = [_arm(rng, 300, 0.0), _arm(rng, 300, 0.0)]
    for a in arms:  # no pre-exposure activity at all
        a["c"] = np.zeros_like(a["c"])
        a["dp"] = np.zeros_like(a["dp"])
    e = parse_experiment(_definition(cuped=True))
    _, rows = build_insights(uuid.uuid4(), e, datetime(2026, 1, 1, tzinfo=UTC), _rows(arms))
    row = next(r for r in rows if r.metric_key == "rpv")
    assert row.method == "welch_t(cuped_theta_undefined)"
    # sums the warehouse did not produce (an old run, an engine without them): another reason
    stats = [
        SufficientStats(**{**s.__dict__, "denominator_covariate_sum": None})
        if s.metric_key == "rpv" else s
        for s in _rows([_arm(rng, 300, 0.0), _arm(rng, 300, 0.0)])
    ]
    _, rows = build_insights(uuid.uuid4(), e, datetime(2026, 1, 1, tzinfo=UTC), stats)
    assert next(r for r in rows if r.metric_key == "rpv").method == "welch_t(cuped_no_covariate)"
