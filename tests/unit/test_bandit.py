"""Thompson-sampling allocation: deterministic, floored, normalised, and right about who wins."""

from __future__ import annotations

import math

import pytest

from abflow.bandit import (
    BanditStats,
    Direction,
    floored_weights,
    monte_carlo_probability_best,
    probability_best,
    thompson_weights,
)
from abflow.stats import MeanStats, ProportionStats


def _mean(n: int, mean: float, sd: float) -> MeanStats:
    """MeanStats whose sample mean and sd are exactly `mean` and `sd`."""
    return MeanStats(n=n, sum=n * mean, sum_squares=(n - 1) * sd**2 + n * mean**2)


THREE: list[tuple[str, BanditStats]] = [
    ("control", ProportionStats(n=2000, sum=200)),
    ("b", ProportionStats(n=2000, sum=260)),
    ("c", ProportionStats(n=2000, sum=215)),
]

# Posterior shapes the quadrature must get right: close races, very different widths, a rate
# near zero (Beta mode at the boundary), means, and the 'decrease' direction.
REFERENCE_CASES: list[tuple[str, list[tuple[str, BanditStats]], Direction]] = [
    ("three_proportions", THREE, "increase"),
    (
        "close_race",
        [("a", ProportionStats(5000, 600)), ("b", ProportionStats(5000, 612))],
        "increase",
    ),
    (
        "rare_events_unequal_n",
        [
            ("a", ProportionStats(150, 0)),
            ("b", ProportionStats(150, 1)),
            ("c", ProportionStats(40_000, 150)),
        ],
        "increase",
    ),
    (
        "means_wide_vs_narrow",
        [("a", _mean(120, 10.0, 8.0)), ("b", _mean(200_000, 10.3, 8.0))],
        "increase",
    ),
    (
        "means_decrease",
        [
            ("a", _mean(800, 250.0, 60.0)),
            ("b", _mean(800, 245.0, 60.0)),
            ("c", _mean(800, 252.0, 60.0)),
        ],
        "decrease",
    ),
]


def test_deterministic() -> None:
    first = thompson_weights(THREE)
    assert all(thompson_weights(THREE) == first for _ in range(3))
    # The seed only drives the Monte Carlo fallback, so it cannot change a quadrature answer.
    assert thompson_weights(THREE, seed=123) == first


@pytest.mark.parametrize("floor", [0.0, 0.01, 0.05, 0.2])
def test_floors_hold_and_weights_sum_to_one(floor: float) -> None:
    arms = [
        ("control", ProportionStats(n=5000, sum=500)),
        ("b", ProportionStats(n=5000, sum=700)),  # dominates: the others' P(best) is ~0
        ("c", ProportionStats(n=5000, sum=480)),
        ("d", ProportionStats(n=5000, sum=450)),
    ]
    d = thompson_weights(arms, floor=floor)
    assert d.reweighted
    assert math.isclose(sum(d.weights.values()), 1.0, abs_tol=1e-12)
    assert min(d.weights.values()) >= floor - 1e-12
    if floor > 0:
        assert d.weights["d"] == pytest.approx(floor, abs=1e-12)
    # On the 1e-6 grid promotion.reweight stores, so a rerun compares equal.
    assert all(round(w, 6) == w for w in d.weights.values())


def test_water_filling_keeps_the_order_of_the_unfloored_arms() -> None:
    w = floored_weights({"a": 0.001, "b": 0.6, "c": 0.399}, 0.05)
    assert w["a"] == 0.05
    assert w["b"] / w["c"] == pytest.approx(0.6 / 0.399, rel=1e-5)
    assert math.isclose(sum(w.values()), 1.0, abs_tol=1e-12)


def test_unattainable_floor_degrades_to_an_equal_split() -> None:
    w = floored_weights({"a": 0.98, "b": 0.01, "c": 0.01}, 0.45)
    assert all(v == pytest.approx(1 / 3, abs=1e-6) for v in w.values())
    assert math.isclose(sum(w.values()), 1.0, abs_tol=1e-12)


def test_clear_winner_gets_most_weight() -> None:
    d = thompson_weights(THREE)
    assert max(d.weights, key=d.weights.__getitem__) == "b"
    assert d.weights["b"] > 0.9 and d.probabilities["b"] > 0.9
    assert "b 9" in d.reason and "floor 1%" in d.reason


def test_equal_arms_get_equal_weights() -> None:
    arms = [(k, ProportionStats(n=3000, sum=330)) for k in ("a", "b", "c", "d")]
    d = thompson_weights(arms)
    assert all(p == pytest.approx(0.25, abs=1e-9) for p in d.probabilities.values())
    assert all(w == pytest.approx(0.25, abs=1e-6) for w in d.weights.values())


@pytest.mark.parametrize(("name", "arms", "direction"), REFERENCE_CASES, ids=lambda x: x)
def test_quadrature_matches_monte_carlo_reference(
    name: str, arms: list[tuple[str, BanditStats]], direction: Direction
) -> None:
    quad = probability_best(arms, direction=direction)
    mc = monte_carlo_probability_best(
        arms,
        direction=direction,
        seed=20261101,
        draws=1_000_000,
    )
    assert sum(quad.values()) == pytest.approx(1.0, abs=1e-5)
    worst = max(abs(quad[k] - mc[k]) for k in quad)
    assert worst < 0.003, (name, quad, mc)


def test_means_use_the_normal_approximation() -> None:
    # Two normal posteriors: P(b > a) has the closed form Φ((μb − μa) / sqrt(se_a² + se_b²)).
    a, b = _mean(400, 5.0, 2.0), _mean(900, 5.2, 3.0)
    se = math.sqrt(4.0 / 400 + 9.0 / 900)
    expected = 0.5 * (1 + math.erf((0.2 / se) / math.sqrt(2)))
    p = probability_best([("a", a), ("b", b)])
    assert p["b"] == pytest.approx(expected, abs=1e-6)


def test_decrease_direction_flips() -> None:
    up = thompson_weights(THREE, direction="increase")
    down = thompson_weights(THREE, direction="decrease")
    assert max(up.probabilities, key=up.probabilities.__getitem__) == "b"
    assert max(down.probabilities, key=down.probabilities.__getitem__) == "control"
    assert down.weights["b"] == pytest.approx(0.01, abs=1e-12)
    # Two arms: 'best' when lower is better is exactly 'not best' when higher is better.
    two = THREE[:2]
    p_up, p_down = probability_best(two), probability_best(two, direction="decrease")
    assert p_up["b"] == pytest.approx(p_down["control"], abs=1e-6)
    assert "lowest" in down.reason


def test_below_min_units_keeps_the_current_weights() -> None:
    arms = [
        ("control", ProportionStats(n=500, sum=50)),
        ("b", ProportionStats(n=99, sum=40)),
        ("c", ProportionStats(n=500, sum=51)),
    ]
    current = {"control": 0.5, "b": 0.25, "c": 0.25}
    d = thompson_weights(arms, min_units=100, current=current)
    assert not d.reweighted
    assert d.weights == current
    assert "b has 99 units" in d.reason and "100" in d.reason
    assert d.probabilities["b"] > 0.9  # still reported, just not acted on
    # Without current weights the unchanged allocation is the equal split.
    assert thompson_weights(arms).weights == pytest.approx({k: 1 / 3 for k, _ in arms})
    # At exactly min_units the bandit acts.
    assert thompson_weights(arms, min_units=99).reweighted


def test_degenerate_inputs_do_not_crash() -> None:
    zero_var = [("a", _mean(200, 1.0, 0.0)), ("b", _mean(200, 1.0, 0.0))]
    p = probability_best(zero_var)
    assert p["a"] == pytest.approx(0.5, abs=1e-6)
    all_convert = [("a", ProportionStats(300, 300)), ("b", ProportionStats(300, 0))]
    d = thompson_weights(all_convert)
    assert d.weights == {"a": 0.99, "b": 0.01}
    with pytest.raises(ValueError, match="two arms"):
        thompson_weights([("a", ProportionStats(300, 3))])


def test_an_arm_with_an_undefined_ratio_keeps_its_weight() -> None:
    """Σ denominator = 0 used to give P(best) ≈ 0 and cut the arm to the floor."""
    from abflow.stats import RatioStats

    arms: list[tuple[str, BanditStats]] = [
        ("control", RatioStats(500, 100.0, 140.0, 1000.0, 2200.0, 260.0)),
        ("b", RatioStats(500, 120.0, 170.0, 1000.0, 2200.0, 300.0)),
        ("c", RatioStats(500, 0.0, 0.0, 0.0, 0.0, 0.0)),
    ]
    current = {"control": 0.3, "b": 0.3, "c": 0.4}
    d = thompson_weights(arms, current=current, min_units=100)
    assert d.reweighted and d.weights["c"] == 0.4
    assert sum(d.weights.values()) == pytest.approx(1.0, abs=1e-9)
    assert d.weights["b"] > d.weights["control"] and set(d.probabilities) == {"control", "b"}
    one_left = thompson_weights([arms[0], arms[2]], current={"control": 0.5, "c": 0.5})
    assert not one_left.reweighted and one_left.weights == {"control": 0.5, "c": 0.5}
    assert "undefined for c" in one_left.reason


def test_top_two_matches_the_resampling_procedure() -> None:
    """ψ_i = β·p_i + (1−β)·Σ_j p_j·p_i/(1−p_j) equals leader/re-drawn-challenger frequencies."""
    import numpy as np

    from abflow.bandit import _top_two

    p = {"a": 0.7, "b": 0.2, "c": 0.1}
    beta = 0.5
    psi = _top_two(p, beta)
    rng = np.random.default_rng(5)
    keys, probs = list(p), np.array(list(p.values()))
    counts = dict.fromkeys(keys, 0)
    n = 200_000
    leaders = rng.choice(3, size=n, p=probs)
    for leader, coin in zip(leaders, rng.random(n) < beta, strict=True):
        if coin:
            counts[keys[leader]] += 1
            continue
        while (j := rng.choice(3, p=probs)) == leader:
            pass
        counts[keys[j]] += 1
    for k in keys:
        assert psi[k] == pytest.approx(counts[k] / n, abs=0.005)
    # the challenger gets more than plain Thompson sampling would give it
    assert psi["b"] > p["b"] and psi["a"] < p["a"]
    d = thompson_weights(THREE, top_two=0.5)
    plain = thompson_weights(THREE)
    assert d.weights["b"] < plain.weights["b"]
