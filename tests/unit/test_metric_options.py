"""One-sided tests, custom priors and the two health warnings computed from existing numbers."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from abflow import health
from abflow import stats as st
from abflow.analysis import build_insights
from abflow.decisions.library import load_definition, to_sufficient
from abflow.definitions import DefinitionError, parse_experiment
from abflow.results import SufficientStats
from abflow.stats import MeanStats, NormalPrior, ProportionStats
from tests.unit.definitions_helper import CONV, definition

AS_OF = datetime(2026, 11, 20, tzinfo=UTC)


def _row(d: dict[str, Any], c: Any, t: Any, metric: str = "conv") -> Any:
    e = load_definition(d)
    rows = [to_sufficient(metric, "control", c), to_sufficient(metric, "t1", t)]
    return build_insights(uuid.UUID(int=5), e, AS_OF, rows)[1][0]


@pytest.mark.parametrize("sequential", [False, True])
def test_one_sided_p_is_half_the_two_sided_p_in_the_favourable_direction(
    sequential: bool,
) -> None:
    c, t = ProportionStats(8000, 800), ProportionStats(8000, 880)
    analysis = {"sequential": sequential}
    if sequential:
        analysis["sequential_tuning"] = 4000
    two = _row(definition([CONV], analysis=analysis), c, t)
    one = _row(definition([{**CONV, "sided": "one"}], analysis=analysis), c, t)
    if sequential:
        # gbstats' one-sided CS: the side of the two-sided CS at 2α, mixture tuned at 2α.
        ref = st.compare(
            c, t, difference="absolute", sequential=True, alpha=0.10, sequential_tuning=4000
        )
        assert one.p_value == pytest.approx(ref.p_value / 2, rel=1e-12)
        assert one.abs_ci_low == pytest.approx(ref.ci_low, rel=1e-9)
    else:
        assert one.p_value == pytest.approx(two.p_value / 2, rel=1e-12)
    # the reported (1−2α) interval's lower bound agrees with the one-sided decision
    assert one.significant == (one.abs_ci_low > 0)


def test_one_sided_in_the_wrong_direction_is_never_significant() -> None:
    d = definition([{**CONV, "sided": "one"}])
    worse = _row(d, ProportionStats(20000, 2000), ProportionStats(20000, 1500))
    assert worse.p_value == 1.0 and not worse.significant


def test_one_sided_decrease_metric_tests_for_a_decrease() -> None:
    m = {
        "key": "t",
        "kind": "mean",
        "event": "e",
        "value": "sum",
        "role": "primary",
        "direction": "decrease",
        "sided": "one",
    }
    d = definition([m], analysis={"sequential": False})
    faster = _row(
        d,
        MeanStats(5000, 5000 * 10.0, 5000 * 104.0),
        MeanStats(5000, 5000 * 9.8, 5000 * 100.04),
        "t",
    )
    assert faster.abs_lift < 0 and faster.p_value < 0.05 and faster.significant


def test_custom_prior_is_the_conjugate_normal_update() -> None:
    c, t = ProportionStats(4000, 400), ProportionStats(4000, 440)
    flat = st.compare(c, t, engine="bayesian")
    prior = NormalPrior(0.02, 0.05)
    post = st.compare(c, t, engine="bayesian", prior=prior)
    prec = 1 / flat.std_error**2 + 1 / prior.stddev**2
    mean = (flat.estimate / flat.std_error**2 + prior.mean / prior.stddev**2) / prec
    assert post.estimate == pytest.approx(mean, rel=1e-12)
    assert post.std_error == pytest.approx(math.sqrt(1 / prec), rel=1e-12)
    assert st.compare(c, t, engine="bayesian", prior="proper").estimate == pytest.approx(
        st.compare(c, t, engine="bayesian", prior=NormalPrior(0.0, 0.3)).estimate, rel=1e-12
    )


def test_yaml_priors_per_analysis_and_per_metric() -> None:
    c, t = ProportionStats(4000, 400), ProportionStats(4000, 440)
    base = {"engine": "bayesian", "prior": {"mean": 0.0, "stddev": 0.05}}
    shrunk = _row(definition([CONV], analysis=base), c, t)
    override = _row(definition([{**CONV, "prior": "flat"}], analysis=base), c, t)
    flat = st.compare(c, t, engine="bayesian")
    assert override.rel_lift == pytest.approx(flat.estimate, rel=1e-12)
    assert 0 < shrunk.rel_lift < override.rel_lift


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            definition([{**CONV, "sided": "one"}], analysis={"engine": "bayesian"}),
            "sided: one is a frequentist test",
        ),
        (
            definition(
                [
                    CONV,
                    {
                        "key": "g",
                        "kind": "proportion",
                        "event": "g",
                        "role": "guardrail",
                        "sided": "one",
                    },
                ]
            ),
            "sided: one applies to primary and secondary",
        ),
        (
            definition([{**CONV, "prior": "proper"}]),
            "metric conv: prior applies to engine: bayesian",
        ),
        (
            definition([CONV], analysis={"engine": "bayesian", "prior": {"stddev": 0}}),
            "greater than 0",
        ),
    ],
)
def test_options_an_engine_would_ignore_are_rejected(data: dict[str, Any], needle: str) -> None:
    with pytest.raises(DefinitionError, match=needle):
        parse_experiment(data)


def _cuped_rows(pre_c: float, pre_t: float) -> list[SufficientStats]:
    n = 5000
    return [
        SufficientStats(
            "conv",
            k,
            "all",
            n,
            n,
            500.0,
            500.0,
            covariate_sum=n * pre,
            covariate_sum_squares=n * (pre * pre + 1.0),
            covariate_sum_products=0.0,
        )
        for k, pre in (("control", pre_c), ("t1", pre_t))
    ]


def test_covariate_imbalance_fires_on_a_broken_split_and_is_silent_on_a_clean_one() -> None:
    e = load_definition(definition([CONV], analysis={"cuped": {"lookback_days": 14}}))
    (clean,) = health.covariate_imbalance_checks(e, _cuped_rows(2.0, 2.01))
    (broken,) = health.covariate_imbalance_checks(e, _cuped_rows(2.0, 2.2))
    assert clean.passed and clean.observed is not None and clean.observed > 0.1
    assert not broken.passed and broken.severity == "warning" and broken.threshold == 0.001
    assert "pre-exposure covariate differs between control and t1" in broken.details["note"]
    # no covariate, no check
    assert (
        health.covariate_imbalance_checks(
            e, [to_sufficient("conv", "control", ProportionStats(10, 1))]
        )
        == []
    )


def test_suspicious_uplift_fires_above_the_plausible_lift() -> None:
    d = definition([CONV], analysis={"max_plausible_lift": 0.3})
    e = load_definition(d)
    big = _row(d, ProportionStats(5000, 500), ProportionStats(5000, 700))
    small = _row(d, ProportionStats(5000, 500), ProportionStats(5000, 540))
    fired = health.suspicious_uplift_check(e, [big])
    quiet = health.suspicious_uplift_check(e, [small])
    assert not fired.passed and fired.observed == pytest.approx(0.4) and fired.threshold == 0.3
    assert "conv t1 +40.0% exceeds the plausible 30%" in fired.details["note"]
    assert quiet.passed and quiet.observed is None


def test_impact_scales_the_difference_to_the_eligible_volume_per_day() -> None:
    e = load_definition(definition([CONV]))
    rows = [
        to_sufficient("conv", "control", ProportionStats(10_000, 1_000)),
        to_sufficient("conv", "t1", ProportionStats(10_000, 1_200)),
    ]
    (row,) = build_insights(uuid.UUID(int=6), e, AS_OF, rows, days=10)[1]
    # 20,000 units in 10 days: 2,000 eligible units a day x a 2-point difference = 40 a day.
    assert row.impact_per_day == pytest.approx(0.02 * 2000)
    assert row.impact_ci_low == pytest.approx(row.abs_ci_low * 2000)
    assert row.impact_ci_high == pytest.approx(row.abs_ci_high * 2000)
    assert build_insights(uuid.UUID(int=6), e, AS_OF, rows)[1][0].impact_per_day is None


def test_ratio_impact_scales_by_denominator_events_per_day() -> None:
    m = {
        "key": "ctr",
        "kind": "ratio",
        "role": "primary",
        "numerator": {"event": "click"},
        "denominator": {"event": "view"},
    }
    e = load_definition(definition([m]))
    c = st.RatioStats(1000, 100.0, 150.0, 1000.0, 1500.0, 180.0)
    t = st.RatioStats(1000, 130.0, 190.0, 1000.0, 1500.0, 200.0)
    rows = [to_sufficient("ctr", "control", c), to_sufficient("ctr", "t1", t)]
    (row,) = build_insights(uuid.UUID(int=7), e, AS_OF, rows, days=4)[1]
    assert row.impact_per_day == pytest.approx(row.abs_lift * 2000 / 4)
