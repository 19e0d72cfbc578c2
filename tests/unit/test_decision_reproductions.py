"""Every reproduction of issue 11's decision bullets, through `abflow.decide` (the flow's path)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

import abflow
from abflow import stats as st
from abflow.analysis import build_insights
from abflow.decisions.library import load_definition, to_sufficient
from abflow.stats import MeanStats, ProportionStats, RatioStats
from tests.unit.definitions_helper import CONV, guardrails
from tests.unit.definitions_helper import definition as base_definition


def definition(metrics: list[dict[str, Any]], arms: int = 2, **extra: Any) -> dict[str, Any]:
    return base_definition(metrics, n_arms=arms, **extra)


def test_an_errored_guardrail_blocks_ship_and_says_why() -> None:
    """crash 0/10,000 vs 60/10,000 with margin 0.02 and primary +15% was shipped (CI 0..0)."""
    crash = {
        "key": "crash",
        "kind": "proportion",
        "event": "crash",
        "role": "guardrail",
        "direction": "decrease",
        "non_inferiority_margin": 0.02,
    }
    d = definition([CONV, crash])
    stats = {
        "control": {"conv": ProportionStats(10_000, 1_000), "crash": ProportionStats(10_000, 0)},
        "t1": {"conv": ProportionStats(10_000, 1_150), "crash": ProportionStats(10_000, 60)},
    }
    rec = abflow.decide(d, stats, 10)
    assert rec.decision != "ship"
    assert "crash significantly worse" in rec.rationale  # tested on the difference: 0 → 0.6%
    assert "+0.0%" not in rec.rationale


def test_a_guardrail_with_errors_and_no_harm_still_blocks() -> None:
    """A guardrail whose comparison has no usable test is not evidence of safety."""
    latency = {
        "key": "latency",
        "kind": "mean",
        "event": "load",
        "value": "mean",
        "role": "guardrail",
        "direction": "decrease",
    }
    d = definition([CONV, latency])
    stats = {
        "control": {
            "conv": ProportionStats(10_000, 1_000),
            "latency": MeanStats(1, 200.0, 40_000.0),
        },
        "t1": {"conv": ProportionStats(10_000, 1_300), "latency": MeanStats(1, 200.0, 40_000.0)},
    }
    rec = abflow.decide(d, stats, 10)
    assert rec.decision == "keep_running"
    assert (
        "latency cannot be evaluated (n_too_small), so its harm cannot be bounded" in rec.rationale
    )


def test_a_guardrail_without_margin_means_no_significant_harm() -> None:
    """No margin used to demand a significant improvement (blocking forever, contradictory text)."""
    g = {
        "key": "refunds",
        "kind": "proportion",
        "event": "refund",
        "role": "guardrail",
        "direction": "decrease",
    }
    d = definition([CONV, g])
    stats = {
        "control": {
            "conv": ProportionStats(20_000, 2_000),
            "refunds": ProportionStats(20_000, 200),
        },
        "t1": {"conv": ProportionStats(20_000, 2_400), "refunds": ProportionStats(20_000, 205)},
    }
    rec = abflow.decide(d, stats, 10)
    assert (rec.decision, rec.variant_key) == ("ship", "t1"), rec.rationale
    assert "refunds not significantly worse" in rec.rationale
    assert "No treatment shows a significant improvement" not in rec.rationale


def test_no_rollback_on_day_0_2_with_40_units_per_arm() -> None:
    d = definition([CONV])
    stats = {"control": {"conv": ProportionStats(40, 12)}, "t1": {"conv": ProportionStats(40, 4)}}
    rec = abflow.decide(d, stats, 0.2)
    assert rec.decision == "keep_running", rec.rationale


def test_one_of_ten_guardrails_at_p_0_028_on_day_one_is_no_rollback() -> None:
    guards = guardrails(10)
    d = definition([CONV, *guards], decision={"min_runtime_days": 0})
    n = 5000
    control = {
        "conv": ProportionStats(n, 500),
        **{f"g{i}": ProportionStats(n, 250) for i in range(10)},
    }
    treated = {
        "conv": ProportionStats(n, 500),
        **{f"g{i}": ProportionStats(n, 250) for i in range(10)},
    }
    treated["g0"] = ProportionStats(
        n, 290
    )  # two-proportion p ≈ 0.07 one look; with Welch ≈ 0.028-0.07
    rec = abflow.decide(d, {"control": control, "t1": treated}, 1.0)
    assert rec.decision != "rollback", rec.rationale


def test_rollback_needs_min_sample_and_runtime_even_with_clear_harm() -> None:
    d = definition([CONV])
    stats = {
        "control": {"conv": ProportionStats(5000, 600)},
        "t1": {"conv": ProportionStats(5000, 300)},
    }
    rec = abflow.decide(d, stats, 1.0)
    assert rec.decision == "keep_running"
    assert "a rollback needs the same evidence as a ship" in rec.rationale
    assert "it has run 1.0 of the 3 minimum days" in rec.rationale
    assert rec.days_remaining == pytest.approx(2.0)


def test_rollback_rationale_distinguishes_primary_and_guardrail_harm() -> None:
    g = {
        "key": "errors",
        "kind": "proportion",
        "event": "err",
        "role": "guardrail",
        "direction": "decrease",
    }
    d = definition([CONV, g])
    primary_harm = {
        "control": {"conv": ProportionStats(30_000, 3_000), "errors": ProportionStats(30_000, 300)},
        "t1": {"conv": ProportionStats(30_000, 2_400), "errors": ProportionStats(30_000, 300)},
    }
    guard_harm = {
        "control": {"conv": ProportionStats(30_000, 3_000), "errors": ProportionStats(30_000, 300)},
        "t1": {"conv": ProportionStats(30_000, 3_000), "errors": ProportionStats(30_000, 600)},
    }
    a = abflow.decide(d, primary_harm, 20)
    b = abflow.decide(d, guard_harm, 20)
    assert (a.decision, b.decision) == ("rollback", "rollback")
    assert a.rationale.startswith(
        "Every treatment is worse than control on the primary metric conv"
    )
    assert b.rationale.startswith("Every treatment harms a guardrail against control")


def _overall(d: dict[str, Any], c: ProportionStats, t: ProportionStats) -> Any:
    e = load_definition(d)
    rows = [to_sufficient("conv", "control", c), to_sufficient("conv", "t1", t)]
    _, insights = build_insights(uuid.UUID(int=1), e, datetime(2026, 11, 20, tzinfo=UTC), rows)
    return insights[0]


@pytest.mark.parametrize("sequential", [True, False])
def test_the_test_is_symmetric_in_direction_at_small_counts(sequential: bool) -> None:
    """12/40 vs 4/40 gave p = 0.00036 one way and 0.21 the other (relative delta method)."""
    # A fixed N* for the sequential case: the planned sample (and so the default N*) depends on
    # the control's baseline by design, the test statistic itself must not.
    analysis = (
        {"sequential": True, "sequential_tuning": 5000} if sequential else {"sequential": False}
    )
    d = definition([CONV], analysis=analysis)
    down = _overall(d, ProportionStats(40, 12), ProportionStats(40, 4))
    up = _overall(d, ProportionStats(40, 4), ProportionStats(40, 12))
    assert down.p_value == pytest.approx(up.p_value, rel=1e-12)
    if not sequential:
        assert 0.01 < down.p_value < 0.05  # Welch on the difference; Fisher's exact p is 0.048
    # The relative interval agrees with the test (Fieller), both ways.
    for r in (down, up):
        assert r.significant == (r.rel_ci_low > 0 or r.rel_ci_high < 0)


@pytest.mark.parametrize(
    ("analysis", "per_arm", "rate"),
    [
        ({}, 1000, 0.005),
        ({}, 1000, 0.02),
        ({}, 40, 0.25),
        ({"sequential": False}, 1000, 0.005),
        ({"sequential": False}, 1000, 0.02),
        ({"sequential": False, "test": "z_pooled"}, 40, 0.25),
        ({"sequential": False, "test": "z_pooled"}, 400, 0.05),
    ],
)
def test_a_a_at_5_to_40_conversions_per_arm_calls_each_direction_at_most_2_5_percent(
    analysis: dict[str, Any], per_arm: int, rate: float
) -> None:
    """At ~10 events per arm the relative test called 'worse' 6–8% of the time, 'better' ~0%."""
    d = definition([CONV], analysis=analysis)
    e = load_definition(d)
    rng = np.random.default_rng(21)
    reps = 4000
    xc, xt = rng.binomial(per_arm, rate, reps), rng.binomial(per_arm, rate, reps)
    worse = better = 0
    for c, t in zip(xc, xt, strict=True):
        rows = [
            to_sufficient("conv", "control", ProportionStats(per_arm, float(c))),
            to_sufficient("conv", "t1", ProportionStats(per_arm, float(t))),
        ]
        _, (row,) = build_insights(uuid.UUID(int=2), e, datetime(2026, 11, 20, tzinfo=UTC), rows)
        if row.significant:
            worse += row.abs_lift < 0
            better += row.abs_lift > 0
    se = (0.025 * 0.975 / reps) ** 0.5
    # One-sided nominal 2.5% each, with two standard errors of simulation noise.
    assert worse / reps <= 0.025 + 2 * se, (worse, better)
    assert better / reps <= 0.025 + 2 * se, (worse, better)


def test_a_high_baseline_primary_gives_a_recorded_result() -> None:
    """4,850/5,000 vs 4,860/5,000 made required_sample raise and the run fail."""
    d = definition([CONV])
    stats = {
        "control": {"conv": ProportionStats(5000, 4850)},
        "t1": {"conv": ProportionStats(5000, 4860)},
    }
    rec = abflow.decide(d, stats, 10)
    # 5% of a 97% baseline plans in the direction that stays a rate: a small plan, reached.
    assert rec.decision == "stop_inconclusive", rec.rationale
    assert rec.details["required_per_variant"] is not None


@pytest.mark.parametrize(
    "arm",
    [
        MeanStats(500, 0.0, 0.0),  # zero variance
        MeanStats(500, 500.0, 500.0),  # constant 1
        RatioStats(500, 1e300, 1e300, 0.0, 0.0, 0.0),  # extreme sums, zero denominator
        RatioStats(500, 1e200, 1e300, 1e-200, 1e-300, 1.0),
    ],
)
def test_degenerate_legal_inputs_never_crash(arm: Any) -> None:
    kind = "ratio" if isinstance(arm, RatioStats) else "mean"
    m = {"key": "m", "kind": kind, "role": "primary"}
    if kind == "ratio":
        m.update(numerator={"event": "a"}, denominator={"event": "b"})
    else:
        m.update(event="a", value="sum")
    rec = abflow.decide(definition([m]), {"control": {"m": arm}, "t1": {"m": arm}}, 10)
    assert rec.decision in ("keep_running", "stop_inconclusive")
    assert rec.rationale


def test_multiple_arms_correct_the_primary_family_only() -> None:
    """A 21-test Holm family turned the primary's p = 0.0076 into 0.159: now its own family."""
    secondaries = [
        {"key": f"s{i}", "kind": "proportion", "event": f"s{i}", "role": "secondary"}
        for i in range(10)
    ]
    d = definition([CONV, *secondaries], analysis={"sequential": False, "correction": "holm"})
    e = load_definition(d)
    rows = [
        to_sufficient("conv", "control", ProportionStats(20_000, 2_000)),
        to_sufficient("conv", "t1", ProportionStats(20_000, 2_170)),
    ]
    for i in range(10):
        rows += [
            to_sufficient(f"s{i}", "control", ProportionStats(20_000, 1_000)),
            to_sufficient(f"s{i}", "t1", ProportionStats(20_000, 1_000 + 10 * i)),
        ]
    _, insights = build_insights(uuid.UUID(int=3), e, datetime(2026, 11, 20, tzinfo=UTC), rows)
    primary = next(r for r in insights if r.metric_key == "conv")
    assert primary.p_value_adjusted == primary.p_value < 0.01 and primary.significant


def test_holm_adjusted_intervals_agree_with_adjusted_significance() -> None:
    """After Holm, rows marked significant had Bonferroni CIs (α/m) that included 0."""
    d = definition([CONV], arms=4, analysis={"sequential": False, "correction": "holm"})
    e = load_definition(d)
    arms = {"control": 1000, "t1": 1150, "t2": 1100, "t3": 1040}
    rows = [to_sufficient("conv", k, ProportionStats(10_000, float(v))) for k, v in arms.items()]
    _, insights = build_insights(uuid.UUID(int=4), e, datetime(2026, 11, 20, tzinfo=UTC), rows)
    assert any(r.significant for r in insights)
    for r in insights:
        assert r.significant == (r.abs_ci_low > 0 or r.abs_ci_high < 0), r
        assert r.significant == (r.rel_ci_low > 0 or r.rel_ci_high < 0), r
    # The step-down really is Holm: t2's p lies between α/3 and α/2, so Bonferroni would not call
    # it, Holm does, and its interval (at the α/2 it was tested at) excludes 0 too.
    t2 = next(r for r in insights if r.variant_key == "t2")
    assert 0.05 / 3 < t2.p_value < 0.05 / 2 and t2.significant
    assert st.adjust_p_values([r.p_value for r in insights], "bonferroni")[1] > 0.05


def test_cookie_cats_far_beyond_its_plan_still_rolls_back() -> None:
    """Public data, 90,189 players: 7-day retention 19.02% → 18.20% (Welch p ≈ 0.0014)."""
    d = definition([{"key": "retention_7", "kind": "proportion", "event": "r7", "role": "primary"}])
    d["variants"] = [
        {"key": "gate_30", "weight": 0.5, "control": True},
        {"key": "gate_40", "weight": 0.5},
    ]
    stats = {
        "gate_30": {"retention_7": ProportionStats(44_700, 8_502)},
        "gate_40": {"retention_7": ProportionStats(45_489, 8_279)},
    }
    rec = abflow.decide(d, stats, 14)
    assert (rec.decision, rec.variant_key) == ("rollback", "gate_30"), rec.rationale
    assert "retention_7 worse by -4.3%" in rec.rationale


def test_engines_reject_settings_they_would_ignore() -> None:
    from abflow.definitions import DefinitionError, parse_experiment

    with pytest.raises(DefinitionError, match="analysis: test: z_pooled is a frequentist test"):
        parse_experiment(definition([CONV], analysis={"engine": "bayesian", "test": "z_pooled"}))
    with pytest.raises(DefinitionError, match="prior applies to engine: bayesian only"):
        parse_experiment(definition([CONV], analysis={"prior": "proper"}))
    with pytest.raises(DefinitionError, match="sequential_tuning needs sequential: true"):
        parse_experiment(
            definition([CONV], analysis={"sequential": False, "sequential_tuning": 1000})
        )


def test_bayesian_engine_honours_sequential() -> None:
    """The Bayesian engine ignored sequential: true; its evidence is now a Bayes factor."""
    d = definition([CONV], analysis={"engine": "bayesian"})
    stats = {
        "control": {"conv": ProportionStats(20_000, 2_000)},
        "t1": {"conv": ProportionStats(20_000, 2_400)},
    }
    rec = abflow.decide(d, stats, 10)
    assert rec.decision == "ship"
    assert "Bayes factor" in rec.rationale and "chance to beat control" in rec.rationale
    fixed = definition([CONV], analysis={"engine": "bayesian", "sequential": False})
    early = abflow.decide(fixed, stats, 10)
    assert early.decision == "keep_running"  # a fixed-horizon rule waits for its planned sample
    assert "fixed-horizon" in early.rationale


def test_decide_accepts_a_yaml_path(tmp_path: Any) -> None:
    import yaml

    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(definition([CONV])), encoding="utf-8")
    stats = {
        "control": {"conv": ProportionStats(100, 10)},
        "t1": {"conv": ProportionStats(100, 11)},
    }
    rec = abflow.decide(str(path), stats, 1)
    assert rec.decision == "keep_running" and rec.days_remaining is not None


def test_bayesian_fixed_horizon_honours_the_correction() -> None:
    """3 treatments, GrowthBook's 95% rule: a 97% chance to beat control passes alone, not Holm."""
    d = definition(
        [CONV], arms=4, analysis={"engine": "bayesian", "sequential": False, "correction": "holm"}
    )
    e = load_definition(d)
    arms = {"control": 1000, "t1": 1085, "t2": 1000, "t3": 1000}
    rows = [to_sufficient("conv", k, ProportionStats(10_000, float(v))) for k, v in arms.items()]
    _, insights = build_insights(uuid.UUID(int=8), e, datetime(2026, 11, 20, tzinfo=UTC), rows)
    t1 = next(r for r in insights if r.variant_key == "t1")
    assert 0.95 < t1.chance_to_beat_control < 1 - 0.05 / 3
    assert not t1.significant
    none = load_definition({**d, "analysis": {**d["analysis"], "correction": "none"}})
    _, plain = build_insights(uuid.UUID(int=8), none, datetime(2026, 11, 20, tzinfo=UTC), rows)
    assert next(r for r in plain if r.variant_key == "t1").significant
