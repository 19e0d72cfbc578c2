"""Bandit results through the product's analysis path: period rows in, honest lifts and weights out.

The warehouse returns a bandit's overall rows and its '#period=N' rows; `assemble_result` turns
them into insights (period-combined), the SRM check (weights in force per period) and the
recommendation's weight history; `bandit.allocate` reads the written variant_stats rows.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from abflow import bandit, health
from abflow.bandit_periods import Period, batched_comparison, period_segment
from abflow.console import experiment_panel
from abflow.decisions.bandit_sim import bandit_experiment, proportion_rows, simulate
from abflow.definitions import Experiment, parse_experiment
from abflow.pipeline import assemble_result
from abflow.report import render_report_body
from abflow.results import ExperimentResult, ExposureSummary, InsightRow, SufficientStats
from abflow.stats import ProportionStats, compare
from abflow.summary import markdown_summary
from abflow.warehouse.allocation import periods_from_rows

START = datetime(2026, 11, 2, tzinfo=UTC)
DAY = timedelta(days=1)
# The two-day example: day 1 at 50/50 with a 10% base rate, day 2 at 10/90 with 20%.
DAY1 = {"control": (5000, 500.0), "b": (5000, 500.0)}
DAY2 = {"control": (1000, 200.0), "b": (9000, 1800.0)}
PERIODS = [
    Period(START, {"control": 0.5, "b": 0.5}),
    Period(START + DAY, {"control": 0.1, "b": 0.9}),
]


def _run(
    e: Experiment,
    per_period: list[dict[str, tuple[int, float]]],
    periods: list[Period],
    *,
    with_period_rows: bool = True,
) -> ExperimentResult:
    pooled: dict[str, tuple[int, float]] = {}
    rows: list[SufficientStats] = []
    for i, counts in enumerate(per_period, start=1):
        if with_period_rows:
            rows += proportion_rows(period_segment(i), counts)
        for k, (n, c) in counts.items():
            pooled[k] = (pooled.get(k, (0, 0.0))[0] + n, pooled.get(k, (0, 0.0))[1] + c)
    as_of = START + DAY * len(per_period)
    return assemble_result(
        run_id=uuid.UUID(int=7),
        experiment=e,
        as_of=as_of,
        flow_run_id=None,
        started_at=as_of,
        finished_at=as_of,
        stats=[*proportion_rows("all", pooled), *rows],
        exposure=ExposureSummary(
            units_by_variant={k: n for k, (n, _) in pooled.items()},
            multiple_exposure_units=0,
            unknown_variant_units={},
            first_exposed_at=START,
            last_exposed_at=as_of - timedelta(hours=1),
        ),
        quality_checks=[],
        periods=periods,
    )


def _primary(result: ExperimentResult) -> InsightRow:
    return next(i for i in result.insights if i.segment == "all")


def _check(result: ExperimentResult, name: str = "srm") -> health.HealthCheckRow:
    return next(c for c in result.health_checks if c.check_name == name)


def test_two_day_example_before_and_after() -> None:
    """Before: pooled means said +40.8% (p = 7e-13) and chased it. After: no phantom effect."""
    e = bandit_experiment()
    before = _run(e, [DAY1, DAY2], [], with_period_rows=False)
    b = _primary(before)
    assert b.rel_lift == pytest.approx(0.408, abs=1e-3) and b.p_value < 1e-12
    assert "period_weighted" not in b.method
    chased = bandit.allocate(e, before.variant_stats, {"control": 0.1, "b": 0.9})
    assert chased.weights["b"] == pytest.approx(0.99)

    after = _run(e, [DAY1, DAY2], PERIODS)
    a = _primary(after)
    assert a.method == "welch_t+period_weighted"
    assert a.abs_lift == pytest.approx(0.0, abs=1e-12)
    assert a.rel_lift == pytest.approx(0.0, abs=1e-12)
    assert a.p_value == pytest.approx(1.0)
    # both arms' period-weighted rate: (10% + 20%) / 2, the periods being equal in size
    assert (a.control_mean, a.variant_mean) == (pytest.approx(0.15), pytest.approx(0.15))
    # Batched OLS: c_p = sqrt(1/2) / s_p, SE = 1 / Σ c_p (s_1 = 0.0060, s_2 = 0.0133)
    s1, s2 = (0.09 * 2 / 5000) ** 0.5, (0.16 / 1000 + 0.16 / 9000) ** 0.5
    se = 1 / (0.5**0.5 / s1 + 0.5**0.5 / s2)
    assert a.abs_ci_high == pytest.approx(1.96 * se, rel=1e-3)
    assert (a.rel_ci_low, a.rel_ci_high) == (
        pytest.approx(-0.0719, abs=1e-4),
        pytest.approx(0.0817, abs=1e-4),
    )
    assert not a.significant
    nxt = bandit.allocate(e, after.variant_stats, {"control": 0.1, "b": 0.9})
    assert nxt.reweighted and nxt.weights["b"] == pytest.approx(0.5, abs=0.02)
    # the weights in force were served exactly: SRM per period is silent
    srm = _check(after)
    assert srm.passed and srm.observed == pytest.approx(1.0)
    assert [p["weights"]["b"] for p in srm.details["periods"]] == [0.5, 0.9]
    hist = after.recommendation.details["bandit"]  # type: ignore[union-attr]
    assert hist["period_weighted"] and "Zhang, Janson & Murphy" in hist["estimator"]
    assert [h["units"] for h in hist["weight_history"]] == [
        {"control": 5000, "b": 5000},
        {"control": 1000, "b": 9000},
    ]
    # the per-period rows are written to variant_stats, next to the pooled overall rows
    assert {r.segment for r in after.variant_stats} == {"all", "#period=1", "#period=2"}


def test_srm_fires_on_a_broken_split_and_is_silent_on_a_correct_one() -> None:
    e = bandit_experiment()
    served_5050 = {"control": (5010, 500.0), "b": (4990, 1000.0)}
    broken = _run(e, [DAY1, served_5050], PERIODS)
    srm = _check(broken)
    assert not srm.passed and srm.severity == "critical" and srm.observed < 1e-12
    assert broken.run.status == "unhealthy"
    assert srm.details["periods"][1]["expected"] == {"control": 1000.0, "b": 9000.0}
    # the same counts are a correct split under the pooled 50/50 weights the old check used
    assert health.srm_check(e, {"control": 10010, "b": 9990}).passed
    right = _run(e, [DAY1, {"control": (1032, 200.0), "b": (8968, 1800.0)}], PERIODS)
    assert _check(right).passed and _check(right).observed > 0.2
    assert right.run.status == "succeeded"


def test_a_zero_denominator_arm_keeps_its_weight_and_no_row_crashes() -> None:
    e = parse_experiment(
        {
            **bandit_experiment().model_dump(mode="json"),
            "variants": [
                {"key": "control", "weight": 0.4, "control": True},
                {"key": "b", "weight": 0.3},
                {"key": "c", "weight": 0.3},
            ],
            "metrics": [
                {
                    "key": "ctr",
                    "kind": "ratio",
                    "numerator": {"event": "click"},
                    "denominator": {"event": "impression"},
                    "role": "primary",
                }
            ],
        }
    )

    def ratio(seg: str, k: str, n: int, m: float, d: float) -> SufficientStats:
        return SufficientStats("ctr", k, seg, n, n, m, m * 1.5, d, d * 2.5, m * 2.0)

    rows = []
    for seg, scale in (("all", 2), ("#period=1", 1), ("#period=2", 1)):
        rows += [
            ratio(seg, "control", 400 * scale, 60.0 * scale, 800.0 * scale),
            ratio(seg, "b", 400 * scale, 90.0 * scale, 800.0 * scale),
            ratio(seg, "c", 300 * scale, 0.0, 0.0),  # c's impressions never arrive
        ]
    periods = [
        Period(START, {"control": 0.4, "b": 0.3, "c": 0.3}),
        Period(START + DAY, {"control": 0.35, "b": 0.35, "c": 0.3}),
    ]
    result = assemble_result(
        run_id=uuid.UUID(int=9), experiment=e, as_of=START + 2 * DAY, flow_run_id=None,
        started_at=START, finished_at=START, stats=rows,
        exposure=ExposureSummary({"control": 800, "b": 800, "c": 600}, 0, {}, START, START + DAY),
        quality_checks=[], periods=periods,
    )  # fmt: skip
    by_variant = {i.variant_key: i for i in result.insights if i.segment == "all"}
    assert by_variant["c"].error is not None and by_variant["c"].p_value == 1.0
    assert by_variant["b"].error is None and by_variant["b"].method.endswith("+period_weighted")
    current = {"control": 0.35, "b": 0.35, "c": 0.3}
    d = bandit.allocate(e, result.variant_stats, current)
    assert d.reweighted and d.weights["c"] == 0.3  # never cut on missing data
    assert d.weights["b"] > d.weights["control"] and set(d.probabilities) == {"control", "b"}


def test_batched_comparison_is_the_per_period_studentized_statistic() -> None:
    """Z = Σ sqrt(N_p/N) d_p/s_p (Zhang, Janson & Murphy 2020), checked against numpy."""
    periods = [
        {"control": ProportionStats(3000, 330.0), "b": ProportionStats(3000, 360.0)},
        {"control": ProportionStats(400, 70.0), "b": ProportionStats(3600, 700.0)},
        {"control": ProportionStats(3800, 800.0), "b": ProportionStats(200, 47.0)},
    ]
    d, s, n = [], [], []
    for p in periods:
        pc, pb = p["control"].sum / p["control"].n, p["b"].sum / p["b"].n
        d.append(pb - pc)
        s.append(np.sqrt(pc * (1 - pc) / p["control"].n + pb * (1 - pb) / p["b"].n))
        n.append(p["control"].n + p["b"].n)
    a = np.sqrt(np.array(n) / sum(n))
    c = a / np.array(s)
    z = float((a * np.array(d) / np.array(s)).sum())
    beta = float((c * np.array(d)).sum() / c.sum())
    pair = batched_comparison(periods, "control", "b")
    assert pair is not None
    r = compare(*pair, difference="absolute")
    assert r.estimate == pytest.approx(beta, rel=1e-12)
    assert r.std_error == pytest.approx(1 / c.sum(), rel=1e-12)
    assert r.estimate / r.std_error == pytest.approx(z, rel=1e-12)
    # the control keeps its post-stratified rate
    weights = np.array(n) / sum(n)
    rate_c = sum(
        w * p["control"].sum / p["control"].n for w, p in zip(weights, periods, strict=True)
    )
    assert float(pair[0].mean) == pytest.approx(rate_c, rel=1e-12)
    assert batched_comparison(periods, "control", "missing") is None


def test_null_with_moving_weights_and_drift_covers_zero_and_weights_do_not_drift() -> None:
    """The issue's simulation: no effect, baseline +2 points a period, Thompson reweights."""
    sim = simulate(runs=800, periods=5, per_period=3000, seed=1919)
    # 95% ± 2%: a 97.7% over-coverage of the stratified Wald interval fails this
    assert 0.93 <= sim.coverage <= 0.97, sim.coverage
    final = sim.trajectories[:, -1]
    se = final.std() / np.sqrt(len(final))
    assert abs(final.mean() - 0.5) < 3 * se, (final.mean(), se)
    # Thompson does move weights under the null (it explores), symmetrically
    assert np.mean(np.abs(final - 0.5) > 0.2) > 0.2


def test_a_true_ten_percent_effect_grows_the_best_arms_weight() -> None:
    sim = simulate(runs=150, periods=5, per_period=3000, effect=0.10, seed=2020)
    mean = sim.mean_trajectory  # measured 0.50 0.77 0.75 0.79 0.80 0.83
    assert mean[0] == 0.5 and mean[-1] > 0.78
    # it keeps growing after the first, noisy reweight, and b leads in almost every run
    assert mean[-1] > mean[1] + 0.03
    assert np.mean(sim.trajectories[:, -1] > 0.5) > 0.95
    assert 0.90 <= sim.coverage <= 0.98, sim.coverage


def test_periods_from_the_promotions_history() -> None:
    e = bandit_experiment()
    split = [{"key": "control", "weight": 0.5}, {"key": "b", "weight": 0.5}]
    w1 = [{"key": "control", "weight": 0.3}, {"key": "b", "weight": 0.7}]
    w2 = [{"key": "control", "weight": 0.2}, {"key": "b", "weight": 0.8}]
    rows = [
        {"at": START + DAY, "previous_config": {"variants": split}},  # reweight -> w1
        {"at": START + 2 * DAY, "previous_config": {"variants": w1}},  # pin: no change
        {"at": START + 3 * DAY, "previous_config": {"variants": w1}},  # reweight -> w2
        {"at": START + 4 * DAY, "previous_config": {"variants": w2}},  # promote b
    ]
    current = {"variants": w2, "promoted_variant_key": "b"}
    ps = periods_from_rows(e, rows, current)
    assert [(p.start, dict(p.weights)) for p in ps] == [
        (START, {"control": 0.5, "b": 0.5}),
        (START + DAY, {"control": 0.3, "b": 0.7}),
        (START + 3 * DAY, {"control": 0.2, "b": 0.8}),
        (START + 4 * DAY, {"control": 0.0, "b": 1.0}),
    ]
    assert len(periods_from_rows(e, rows, current, as_of=START + 3 * DAY)) == 3
    assert periods_from_rows(e, [], {"variants": w1}) == [Period(START, {"control": 0.3, "b": 0.7})]


def _latest(result: ExperimentResult, weights: dict[str, float]) -> dict[str, Any]:
    """What readback.latest_results returns for this run (rows as dicts)."""
    rec = result.recommendation
    assert rec is not None
    return {
        "run": result.run.as_row(),
        "recommendation": rec.as_row(),
        "insights": [i.as_row() for i in result.insights if i.segment == "all"],
        "units": {"control": 6000, "b": 14000},
        "checks": [c.as_row() for c in result.health_checks],
        "config": {
            "variants": [{"key": k, "weight": w} for k, w in weights.items()],
            "version": 3,
            "promoted_variant_key": None,
            "pinned": False,
        },
    }


def test_report_and_cli_mark_bandit_results_and_show_the_weight_history() -> None:
    e = bandit_experiment()
    latest = _latest(_run(e, [DAY1, DAY2], PERIODS), {"control": 0.5, "b": 0.5})
    html = str(render_report_body(e, latest, []))
    assert 'data-bandit="period-weighted"' in html and "Batched OLS" in html
    section = html[html.index("data-bandit") : html.index("</section>", html.index("data-bandit"))]
    for cell in (
        "50.0%",
        "10.0%",
        "90.0%",
        "5,000",
        "9,000",
        "now (config)",
        "2026-11-03 00:00 UTC",
    ):
        assert cell in section, cell
    console = Console(record=True, width=160)
    console.print(experiment_panel(latest))
    text = console.export_text()
    assert "bandit: lifts are period-weighted" in text and "weight history" in text
    assert "90.0%" in text and "9,000" in text and "now (config)" in text
    # fixed allocation: no bandit section, no bandit lines
    fixed = parse_experiment({**e.model_dump(mode="json"), "allocation": "fixed"})
    plain = _latest(_run(fixed, [DAY1, DAY2], []), {"control": 0.5, "b": 0.5})
    assert "data-bandit" not in str(render_report_body(fixed, plain, []))
    console = Console(record=True, width=160)
    console.print(experiment_panel(plain))
    text = console.export_text()
    assert "conversion" in text and "bandit:" not in text and "weight history" not in text


def test_the_prefect_markdown_summary_shows_the_weight_history() -> None:
    text = markdown_summary(_run(bandit_experiment(), [DAY1, DAY2], PERIODS))
    assert "period-weighted" in text
    assert (
        "| 2 | 2026\\-11\\-03 00:00 UTC | control 10.0%, b 90.0% | control 1,000, b 9,000 |" in text
    )
