"""decide(): every decision from hand-built insights, with the numbers in the rationale."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from abflow.analysis import adjust_insights
from abflow.decisions import DecisionInputs, Recommendation, decide, required_sample
from abflow.definitions import Experiment, parse_experiment
from abflow.results import CheckOutcome, InsightRow, VariantStatRow

RUN = uuid.UUID(int=7)
AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
CONV = {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"}
LATENCY = {
    "key": "latency_ms",
    "kind": "mean",
    "event": "page_load",
    "value": "mean",
    "direction": "decrease",
    "role": "guardrail",
    "non_inferiority_margin": 0.02,
}


def experiment(
    arms: tuple[str, ...] = ("control", "b"),
    metrics: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> Experiment:
    """A running experiment with equal weights (control first) and the given metrics."""
    w = round(1 / len(arms), 6)
    weights = [w] * (len(arms) - 1) + [round(1 - w * (len(arms) - 1), 6)]
    return parse_experiment(
        {
            "key": "dec_unit",
            "name": "decisions",
            "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [
                {"key": k, "weight": wt, "control": k == "control"}
                for k, wt in zip(arms, weights, strict=True)
            ],
            "metrics": metrics or [CONV, LATENCY],
            **extra,
        }
    )


def insight(
    metric: str,
    variant: str,
    *,
    control_mean: float,
    variant_mean: float,
    ci: tuple[float, float],
    p: float,
    significant: bool,
    role: str = "primary",
    chance: float = 0.5,
    units: int = 5000,
) -> InsightRow:
    """One overall-segment insights row; rel_lift follows from the two means."""
    rel = (variant_mean - control_mean) / abs(control_mean)
    return InsightRow(
        run_id=RUN,
        experiment_key="dec_unit",
        as_of=AS_OF,
        metric_key=metric,
        metric_role=role,
        variant_key=variant,
        control_key="control",
        segment="all",
        method="welch",
        control_units=units,
        variant_units=units,
        control_mean=control_mean,
        variant_mean=variant_mean,
        abs_lift=variant_mean - control_mean,
        abs_ci_low=ci[0] * abs(control_mean),
        abs_ci_high=ci[1] * abs(control_mean),
        rel_lift=rel,
        rel_ci_low=ci[0],
        rel_ci_high=ci[1],
        p_value=p,
        p_value_adjusted=p,
        significant=significant,
        chance_to_beat_control=chance,
        expected_loss=0.0,
        error=None,
    )


def vstat(
    metric: str, variant: str, mean: float, variance: float, units: int = 5000
) -> VariantStatRow:
    """One overall-segment variant_stats row (sums consistent with mean and variance)."""
    return VariantStatRow(
        run_id=RUN,
        experiment_key="dec_unit",
        metric_key=metric,
        variant_key=variant,
        segment="all",
        units=units,
        mean=mean,
        variance=variance,
        sum=mean * units,
        sum_squares=(units - 1) * variance + units * mean**2,
        denominator_sum=None,
        denominator_sum_squares=None,
        sum_products=None,
        covariate_sum=None,
        covariate_sum_squares=None,
        covariate_sum_products=None,
    )


def conv_stats(arms: dict[str, float], units: int = 5000) -> list[VariantStatRow]:
    """Proportion variant_stats for the primary metric (variance p(1-p))."""
    return [vstat("conv", k, p, p * (1 - p), units) for k, p in arms.items()]


def run(
    e: Experiment,
    insights: list[InsightRow],
    stats: list[VariantStatRow],
    *,
    days: float = 10.0,
    units: int = 5000,
    checks: list[CheckOutcome] | None = None,
) -> Recommendation:
    return decide(
        DecisionInputs(
            experiment=e,
            insights=insights,
            variant_stats=stats,
            checks=checks or [],
            days_since_start=days,
            units_by_variant={v.key: units for v in e.variants},
        )
    )


# A clear win on conv with latency shown non-inferior (the harmful bound of its two-sided 95%
# interval, i.e. a one-sided 2.5% non-inferiority test, is +1%, inside the +2% margin).
WIN = insight(
    "conv", "b", control_mean=0.10, variant_mean=0.12, ci=(0.10, 0.30), p=0.0004, significant=True
)
LATENCY_OK = insight(
    "latency_ms",
    "b",
    control_mean=200.0,
    variant_mean=198.0,
    ci=(-0.03, 0.01),
    p=0.32,
    significant=False,
    role="guardrail",
)


def test_ship_when_primary_wins_guardrail_holds_and_sample_and_runtime_are_reached() -> None:
    e = experiment()
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}))
    assert (rec.decision, rec.variant_key, rec.days_remaining) == ("ship", "b", 0.0)
    for text in (
        "b beats control on conv: 0.1 → 0.12",
        "+20.0%",
        "CI +10.0% to +30.0%",
        "p=0.0004",
        "latency_ms upper bound +1.0% vs margin +2.0%",
        "Ship it.",
    ):
        assert text in rec.rationale, (text, rec.rationale)
    assert rec.details["qualified"] == ["b"]


def test_keep_running_when_promising_but_runtime_not_reached() -> None:
    e = experiment()
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}), days=1.5)
    assert (rec.decision, rec.variant_key) == ("keep_running", "b")
    assert "it has run 1.5 of the 3 minimum days" in rec.rationale
    assert "+20.0%" in rec.rationale and rec.rationale.endswith("Keep running.")
    assert rec.days_remaining is not None and rec.days_remaining >= 1.5


def test_days_remaining_of_a_promising_treatment_matches_when_it_would_ship() -> None:
    e = experiment()
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}), days=1.5)
    assert rec.days_remaining == pytest.approx(1.5)


def test_keep_running_when_promising_but_sample_not_reached() -> None:
    e = experiment()
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}, 120), units=120)
    assert rec.decision == "keep_running"
    assert "the smallest arm has 120 units of the 150 required" in rec.rationale


def test_keep_running_with_days_remaining_when_no_effect_yet() -> None:
    e = experiment()
    flat = insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.101,
        ci=(-0.07, 0.09),
        p=0.41,
        significant=False,
    )
    stats = conv_stats({"control": 0.10, "b": 0.101}, 1000)
    rec = run(e, [flat, LATENCY_OK], stats, days=5, units=1000)
    needed = required_sample(e, stats)
    # 5% relative MDE on a 10% baseline, α=0.05, power 0.8, planned for the always-valid rule
    # (57,760 for a fixed-horizon test; the sequential boundary is 3.13 instead of 1.96 SEs).
    assert needed == 115911
    expected_days = (needed - 1000) / (1000 / 5)
    assert rec.decision == "keep_running" and rec.variant_key is None
    assert rec.days_remaining == pytest.approx(expected_days)
    for text in (
        f"about {expected_days:.0f} more days",
        "current 200 units/day per variant",
        f"to reach {needed} units per variant",
        "b +1.0% (CI -7.0% to +9.0%, p=0.41)",
        "detect a 5% relative change",
    ):
        assert text in rec.rationale, (text, rec.rationale)


def test_stop_inconclusive_when_planned_sample_is_reached_without_effect() -> None:
    conv = {**CONV, "mde": 0.2}
    e = experiment(metrics=[conv, LATENCY])
    flat = insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.102,
        ci=(-0.05, 0.09),
        p=0.58,
        significant=False,
    )
    stats = conv_stats({"control": 0.10, "b": 0.102}, 8000)
    rec = run(e, [flat, LATENCY_OK], stats, days=20, units=8000)
    assert required_sample(e, stats) == 7703  # 3,839 at a fixed horizon
    assert (rec.decision, rec.variant_key) == ("stop_inconclusive", None)
    for text in (
        "planned sample of 7703 units per variant is reached",
        "b +2.0% (CI -5.0% to +9.0%, p=0.58)",
        "keep control",
    ):
        assert text in rec.rationale, (text, rec.rationale)


def test_stop_inconclusive_at_the_maximum_runtime() -> None:
    e = experiment(decision={"max_runtime_days": 14})
    flat = insight(
        "conv", "b", control_mean=0.10, variant_mean=0.1, ci=(-0.2, 0.2), p=1.0, significant=False
    )
    rec = run(e, [flat], conv_stats({"control": 0.10, "b": 0.1}, 500), days=14.5, units=500)
    assert rec.decision == "stop_inconclusive"
    assert "maximum runtime of 14 days is reached" in rec.rationale


def test_rollback_when_every_treatment_is_significantly_worse() -> None:
    e = experiment(arms=("control", "b", "c"))
    b = insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.085,
        ci=(-0.22, -0.08),
        p=0.001,
        significant=True,
    )
    c = insight(
        "conv",
        "c",
        control_mean=0.10,
        variant_mean=0.092,
        ci=(-0.14, -0.02),
        p=0.012,
        significant=True,
    )
    rec = run(e, [b, c], conv_stats({"control": 0.1, "b": 0.085, "c": 0.092}))
    assert (rec.decision, rec.variant_key) == ("rollback", "control")
    for text in (
        "Every treatment is worse than control",
        "b: conv worse by -15.0% (p=0.001)",
        "c: conv worse by -8.0% (p=0.012)",
        "Roll back to control.",
    ):
        assert text in rec.rationale, (text, rec.rationale)


def test_no_rollback_while_one_treatment_is_not_worse() -> None:
    e = experiment(arms=("control", "b", "c"))
    b = insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.085,
        ci=(-0.22, -0.08),
        p=0.001,
        significant=True,
    )
    c = insight(
        "conv", "c", control_mean=0.10, variant_mean=0.1, ci=(-0.05, 0.05), p=0.9, significant=False
    )
    rec = run(e, [b, c], conv_stats({"control": 0.1, "b": 0.085, "c": 0.1}), days=2)
    assert rec.decision == "keep_running"


def test_rollback_when_a_guardrail_is_harmed() -> None:
    e = experiment()
    flat = insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.101,
        ci=(-0.05, 0.07),
        p=0.7,
        significant=False,
    )
    slow = insight(
        "latency_ms",
        "b",
        control_mean=200.0,
        variant_mean=216.0,
        ci=(0.04, 0.12),
        p=0.0001,
        significant=True,
        role="guardrail",
    )
    rec = run(e, [flat, slow], conv_stats({"control": 0.1, "b": 0.101}))
    assert (rec.decision, rec.variant_key) == ("rollback", "control")
    assert "Every treatment harms a guardrail against control" in rec.rationale
    assert "guardrail latency_ms significantly worse (+8.0%, p=0.0001)" in rec.rationale


def test_a_primary_win_with_a_harmed_guardrail_is_not_shipped() -> None:
    e = experiment()
    slow = insight(
        "latency_ms",
        "b",
        control_mean=200.0,
        variant_mean=216.0,
        ci=(0.04, 0.12),
        p=0.0001,
        significant=True,
        role="guardrail",
    )
    rec = run(e, [WIN, slow], conv_stats({"control": 0.10, "b": 0.12}))
    assert rec.decision == "rollback"
    assert "conv" not in rec.rationale.split("b: ")[1].split(";")[0].replace("latency_ms", "")


def test_investigate_when_a_critical_check_fails() -> None:
    e = experiment()
    srm = CheckOutcome("srm", "critical", False, 2.3e-9, 0.001, {"counts": {"control": 1000}})
    warn = CheckOutcome("multiple_exposure", "warning", False, 0.02, 0.01)
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}), checks=[srm, warn])
    assert (rec.decision, rec.variant_key, rec.days_remaining) == ("investigate", None, None)
    assert "sample ratio mismatch (srm, p=2.3e-09 < 0.001)" in rec.rationale
    assert "multiple_exposure" not in rec.rationale  # warnings never block
    assert rec.details["failed_checks"] == ["srm"]


def test_a_failed_warning_alone_does_not_block_shipping() -> None:
    e = experiment()
    warn = CheckOutcome("multiple_exposure", "warning", False, 0.02, 0.01)
    rec = run(e, [WIN, LATENCY_OK], conv_stats({"control": 0.10, "b": 0.12}), checks=[warn])
    assert rec.decision == "ship"


def test_several_qualifying_treatments_ship_the_largest_lift() -> None:
    e = experiment(arms=("control", "b", "c"), metrics=[CONV])
    c = insight(
        "conv",
        "c",
        control_mean=0.10,
        variant_mean=0.112,
        ci=(0.03, 0.21),
        p=0.008,
        significant=True,
    )
    rec = run(e, [c, WIN], conv_stats({"control": 0.1, "b": 0.12, "c": 0.112}))
    assert (rec.decision, rec.variant_key) == ("ship", "b")
    assert "largest lift among the qualifying treatments (also: c (+12.0%))" in rec.rationale
    assert rec.details["qualified"] == ["b", "c"]


def test_several_qualifying_treatments_lower_is_better() -> None:
    time_metric = {
        "key": "time_to_checkout",
        "kind": "mean",
        "event": "checkout",
        "value": "mean",
        "direction": "decrease",
        "role": "primary",
    }
    e = experiment(arms=("control", "b", "c"), metrics=[time_metric])
    b = insight(
        "time_to_checkout",
        "b",
        control_mean=60.0,
        variant_mean=54.0,
        ci=(-0.15, -0.05),
        p=0.0002,
        significant=True,
    )
    c = insight(
        "time_to_checkout",
        "c",
        control_mean=60.0,
        variant_mean=51.0,
        ci=(-0.2, -0.1),
        p=0.00001,
        significant=True,
    )
    stats = [
        vstat("time_to_checkout", k, m, 400.0) for k, m in (("control", 60), ("b", 54), ("c", 51))
    ]
    rec = run(e, [b, c], stats)
    assert (rec.decision, rec.variant_key) == ("ship", "c")
    assert "-15.0%" in rec.rationale and "also: b (-10.0%)" in rec.rationale


def _bayesian_row(chance: float) -> InsightRow:
    return insight(
        "conv",
        "b",
        control_mean=0.10,
        variant_mean=0.106,
        ci=(-0.004, 0.124),
        p=1 - chance,
        significant=False,  # adjust_insights decides
        chance=chance,
    )


def test_bayesian_ship_reports_the_chance_to_beat_control() -> None:
    e = experiment(metrics=[CONV], analysis={"engine": "bayesian"})
    rows = adjust_insights(e, [_bayesian_row(0.991)])
    assert rows[0].significant
    rec = run(e, rows, conv_stats({"control": 0.10, "b": 0.106}))
    assert (rec.decision, rec.variant_key) == ("ship", "b")
    assert "chance to beat control 99.1%" in rec.rationale and "+6.0%" in rec.rationale


def test_bayesian_below_the_threshold_keeps_running() -> None:
    e = experiment(metrics=[CONV], analysis={"engine": "bayesian"})
    rows = adjust_insights(e, [_bayesian_row(0.90)])
    assert not rows[0].significant
    rec = run(e, rows, conv_stats({"control": 0.10, "b": 0.106}, 1000), units=1000)
    assert rec.decision == "keep_running" and rec.variant_key is None


def test_bayesian_ninety_five_percent_chance_to_beat_control_ships() -> None:
    """One-sided 95% rule (GrowthBook default): chance >= 1 - alpha is a win."""
    e = experiment(metrics=[CONV], analysis={"engine": "bayesian"})
    rows = adjust_insights(e, [_bayesian_row(0.96)])
    rec = run(e, rows, conv_stats({"control": 0.10, "b": 0.106}))
    assert (rec.decision, rec.variant_key) == ("ship", "b")
    assert "chance to beat control 96.0%" in rec.rationale


COST = {
    "key": "cost",
    "kind": "mean",
    "event": "enrichment_cost",
    "value": "sum",
    "direction": "decrease",
    "role": "constraint",
    "max": 0.10,
}


def test_constrained_control_over_budget_ships_the_best_feasible_variant() -> None:
    e = experiment(
        arms=("control", "b", "c"),
        metrics=[CONV, COST],
        decision={"expected_monthly_volume": 100_000},
    )
    b = insight(
        "conv",
        "b",
        control_mean=0.12,
        variant_mean=0.118,
        ci=(-0.09, 0.06),
        p=0.74,
        significant=False,
    )
    c = insight(
        "conv",
        "c",
        control_mean=0.12,
        variant_mean=0.112,
        ci=(-0.14, 0.01),
        p=0.18,
        significant=False,
    )
    stats = [
        *conv_stats({"control": 0.12, "b": 0.118, "c": 0.112}),
        vstat("cost", "control", 0.15, 0.01),
        vstat("cost", "b", 0.08, 0.01),
        vstat("cost", "c", 0.09, 0.01),
    ]
    rec = run(e, [b, c], stats)
    assert (rec.decision, rec.variant_key) == ("ship", "b")
    # b's one-sided 95% upper bound on cost: 0.08 + 1.645 * sqrt(0.01 / 5000) = 0.08233.
    upper = 0.08 + 1.6448536269514722 * (0.01 / 5000) ** 0.5
    for text in (
        "The control control breaks its constraint (cost 0.15 vs limit 0.1)",
        "b is best on conv: 0.118 vs 0.12 for control (-1.7%, CI -9.0% to +6.0%)",
        "Alternative c: conv 0.112 (cost 0.09 vs 0.08)",
        "Pareto-optimal on conv and cost: control, b.",
        "Projected monthly cost at 100,000 units: 8,000.00",
        f"(upper bound {upper * 100_000:,.2f})",
        "Ship b.",
    ):
        assert text in rec.rationale, (text, rec.rationale)
    assert rec.details["pareto_optimal"] == ["control", "b"]
    assert rec.details["constraints"]["control"]["met"] is False


def test_a_winner_over_budget_is_not_shipped() -> None:
    e = experiment(metrics=[CONV, COST])
    stats = [
        *conv_stats({"control": 0.10, "b": 0.12}),
        vstat("cost", "control", 0.05, 0.01),
        vstat("cost", "b", 0.14, 0.01),
    ]
    rec = run(e, [WIN], stats, days=2)
    assert rec.decision == "keep_running" and rec.variant_key is None
    assert "b is better on conv (+20.0%, p=0.0004) but a constraint is not met" in rec.rationale
    assert "b breaks cost (0.14 vs limit 0.1)" in rec.rationale
