"""The decision rules' error rates under the schedule they run on: daily looks for 28 days.

Targets (issue 11, SPEC §6): default definition, 2 arms, 10% baseline proportion primary,
1,000 units per arm per day, analysed daily for 28 days: A/A P(ever ship) ≤ 2.5% and
P(ever ship or rollback) ≤ 5%; a true +15% relative effect ships by day 28 in ≥ 90% of runs;
the same for `engine: bayesian`; 4 arms under A/A ship any arm in ≤ 2.5% of runs.
Fixed seeds; with 1,000 runs the standard error of a 2.5% rate is 0.5 points, so a rule that
peeks (the old defaults: 14.6% false ships) fails by a wide margin.
"""

from __future__ import annotations

from typing import Any

import pytest

from abflow.decisions.library import load_definition
from abflow.decisions.simulate import Scenario, simulate
from abflow.definitions import Experiment
from tests.unit.definitions_helper import definition as base_definition
from tests.unit.definitions_helper import guardrails

RUNS = 1000
PER_ARM_PER_DAY = 1000


def definition(
    arms: int = 2, metrics: list[dict[str, Any]] | None = None, **analysis: Any
) -> Experiment:
    """The default YAML: only what a new user must write (keys, arms, one primary metric)."""
    extra = {"analysis": analysis} if analysis else {}
    return load_definition(base_definition(metrics, n_arms=arms, **extra))


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_a_a_under_daily_looks_holds_the_error_rates(engine: str) -> None:
    e = definition(engine=engine)
    r = simulate(e, Scenario("a/a"), days=28, units_per_day=2 * PER_ARM_PER_DAY, runs=RUNS, seed=11)
    assert r.p_ship <= 0.025, r.as_dict()
    assert r.p_ship + r.p_rollback <= 0.05, r.as_dict()


@pytest.mark.parametrize("engine", ["frequentist", "bayesian"])
def test_a_fifteen_percent_lift_ships_by_day_28(engine: str) -> None:
    e = definition(engine=engine)
    r = simulate(
        e,
        Scenario("+15%", {"conv": 0.15}),
        days=28,
        units_per_day=2 * PER_ARM_PER_DAY,
        runs=400,
        seed=12,
    )
    assert r.p_ship >= 0.90, r.as_dict()
    assert r.p_rollback == 0.0
    assert r.ship_variants == {"t1": round(r.p_ship * 400)}


def test_four_arms_a_a_ship_any_arm_at_most_two_and_a_half_percent() -> None:
    e = definition(arms=4)
    r = simulate(e, Scenario("a/a"), days=28, units_per_day=4 * PER_ARM_PER_DAY, runs=RUNS, seed=13)
    assert r.p_ship <= 0.025, r.as_dict()
    assert r.p_ship + r.p_rollback <= 0.05, r.as_dict()


def test_guardrails_form_their_own_corrected_family() -> None:
    """Ten flat guardrails under A/A: rollbacks driven by guardrail noise stay within α/2."""
    guards = guardrails(10)
    e = definition(
        metrics=[{"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"}, *guards]
    )
    r = simulate(e, Scenario("a/a"), days=14, units_per_day=2 * PER_ARM_PER_DAY, runs=300, seed=14)
    assert r.p_rollback <= 0.025, r.as_dict()
    assert r.p_ship <= 0.025, r.as_dict()


def test_the_simulation_detects_a_rule_that_peeks() -> None:
    """Sanity check of the harness itself: a 30% α (a rule far too lenient) is caught."""
    e = definition(alpha=0.3, sequential_tuning=500)
    r = simulate(e, Scenario("a/a"), days=28, units_per_day=2 * PER_ARM_PER_DAY, runs=300, seed=15)
    assert r.p_ship > 0.025
