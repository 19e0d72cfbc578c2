"""Degenerate inputs never raise and never leak NaN/inf: neutral values plus an error code."""

from __future__ import annotations

import math
from typing import Any

import pytest

from abflow.stats import (
    CompareResult,
    MeanStats,
    ProportionStats,
    RatioStats,
    RegressionAdjustedStats,
    adjust_p_values,
    beta_binomial_chance_to_win,
    chi_square_omnibus,
    compare,
    cuped_adjust,
    cuped_theta,
    srm_p_value,
)

CASES: list[tuple[str, Any, Any, str]] = [
    ("n0", ProportionStats(0, 0), ProportionStats(0, 0), "n_too_small"),
    ("n0_one_arm", ProportionStats(0, 0), ProportionStats(100, 10), "n_too_small"),
    ("n1", MeanStats(1, 5.0, 25.0), MeanStats(1, 7.0, 49.0), "n_too_small"),
    ("n1_treatment", MeanStats(100, 500.0, 2600.0), MeanStats(1, 7.0, 49.0), "n_too_small"),
    ("zero_var_means", MeanStats(10, 50.0, 250.0), MeanStats(10, 70.0, 490.0), "zero_variance"),
    ("no_conversions", ProportionStats(1000, 0), ProportionStats(1000, 0), "zero_variance"),
    ("all_conversions", ProportionStats(1000, 1000), ProportionStats(800, 800), "zero_variance"),
    ("none_vs_all", ProportionStats(1000, 0), ProportionStats(1000, 1000), "zero_variance"),
    ("zero_control_mean", MeanStats(10, 0.0, 4.0), MeanStats(10, 3.0, 9.0), "zero_control_mean"),
    ("zero_control_rate", ProportionStats(1000, 0), ProportionStats(1000, 5), "zero_control_mean"),
    ("sum_gt_n", ProportionStats(10, 11), ProportionStats(10, 5), "invalid_input"),
    ("nan_sum", MeanStats(10, math.nan, 4.0), MeanStats(10, 3.0, 9.0), "invalid_input"),
    ("inf_sum", MeanStats(10, 1.0, math.inf), MeanStats(10, 3.0, 9.0), "invalid_input"),
    ("negative_n", MeanStats(-3, 1.0, 4.0), MeanStats(10, 3.0, 9.0), "invalid_input"),
    (
        "ratio_zero_denominator",
        RatioStats(10, 5.0, 5.0, 0.0, 0.0, 0.0),
        RatioStats(10, 5.0, 5.0, 10.0, 10.0, 5.0),
        "zero_denominator",
    ),
    (
        "cuped_n1",
        RegressionAdjustedStats(1, 1.0, 1.0, 1.0, 1.0, 1.0),
        RegressionAdjustedStats(5, 1.0, 1.0, 1.0, 1.0, 1.0),
        "n_too_small",
    ),
]

SETTINGS: list[dict[str, Any]] = [
    {},
    {"difference": "absolute"},
    {"engine": "bayesian"},
    {"engine": "bayesian", "prior": "proper"},
    {"sequential": True},
    {"test": "z_pooled", "alternative": "greater"},
]


def _assert_neutral(r: CompareResult, code: str) -> None:
    assert r.error == code
    numeric = (r.estimate, r.ci_low, r.ci_high, r.p_value, r.std_error, r.chance_to_win, r.risk)
    assert all(math.isfinite(v) for v in (*numeric, r.risk_control, r.control_mean))
    assert math.isfinite(r.treatment_mean)
    assert (r.estimate, r.ci_low, r.ci_high, r.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert (r.chance_to_win, r.risk, r.risk_control, r.std_error) == (0.5, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(("name", "control", "treatment", "code"), CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("settings", SETTINGS)
def test_degenerate_compare_is_neutral(
    name: str, control: Any, treatment: Any, code: str, settings: dict[str, Any]
) -> None:
    if name.startswith("zero_control") and settings.get("difference") == "absolute":
        # Absolute lifts are well defined when the control mean is 0.
        r = compare(control, treatment, **settings)
        assert r.error is None and r.estimate > 0
        return
    _assert_neutral(compare(control, treatment, **settings), code)


def test_relative_lift_with_zero_delta_variance_uses_leading_term() -> None:
    # Treatment has no conversions: the full delta-method variance is exactly 0; the relative
    # result falls back to var_abs/μC² and agrees with the absolute test.
    c, t = ProportionStats(1000, 100), ProportionStats(1000, 0)
    rel, absolute = compare(c, t), compare(c, t, difference="absolute")
    assert rel.error is None and rel.estimate == -1.0
    assert rel.p_value == pytest.approx(absolute.p_value, rel=1e-9) and rel.p_value < 1e-10
    assert rel.ci_low == pytest.approx(absolute.ci_low / 0.1, rel=1e-9)


def test_one_arm_zero_variance_is_fine() -> None:
    r = compare(ProportionStats(1000, 0), ProportionStats(1000, 12), difference="absolute")
    assert r.error is None
    assert r.df == pytest.approx(999.0)  # Welch df collapses to the varying arm's n − 1
    assert 0.0 <= r.p_value < 0.01


def test_bad_arguments_raise() -> None:
    c = ProportionStats(100, 10)
    with pytest.raises(ValueError):
        compare(c, c, alpha=1.5)
    with pytest.raises(ValueError):
        compare(c, c, engine="magic")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compare(c, MeanStats(100, 10.0, 10.0))


def test_other_functions_on_degenerate_inputs() -> None:
    assert srm_p_value([0, 0], [0.5, 0.5]) == 1.0
    assert srm_p_value([10], [1.0]) == 1.0
    assert srm_p_value([10, 20], [0.0, 0.0]) == 1.0
    assert chi_square_omnibus([0, 0, 0], [100, 100, 100]) == (0.0, 1.0, 2)
    assert chi_square_omnibus([100, 100], [100, 100]) == (0.0, 1.0, 1)
    assert chi_square_omnibus([5], [10]) == (0.0, 1.0, 0)
    assert chi_square_omnibus([5, 0], [10, 0]) == (0.0, 1.0, 0)
    assert beta_binomial_chance_to_win(ProportionStats(0, 0), ProportionStats(0, 0)) == 0.5
    assert beta_binomial_chance_to_win(ProportionStats(5, 9), ProportionStats(5, 1)) == 0.5
    assert adjust_p_values([], "holm") == []
    assert adjust_p_values([math.nan, 0.01], "bonferroni") == [1.0, 0.02]
    flat = RegressionAdjustedStats(10, 10.0, 20.0, 30.0, 90.0, 30.0)  # x constant
    assert cuped_theta([flat, flat]) is None
    assert cuped_theta([]) is None
    assert all(a.theta == 0.0 for a in cuped_adjust([flat, flat]))
