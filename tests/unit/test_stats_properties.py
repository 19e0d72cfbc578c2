"""Property tests: symmetry, ranges and finiteness of compare() and the helpers (hypothesis)."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from abflow.stats import (
    MeanStats,
    ProportionStats,
    adjust_p_values,
    beta_binomial_chance_to_win,
    compare,
    srm_p_value,
)
from abflow.stats.multiple_testing import AdjustMethod


@st.composite
def proportions(draw: st.DrawFn) -> ProportionStats:
    n = draw(st.integers(min_value=0, max_value=10_000_000))
    return ProportionStats(n, draw(st.integers(min_value=0, max_value=n)))


@st.composite
def means(draw: st.DrawFn) -> MeanStats:
    n = draw(st.integers(min_value=0, max_value=1_000_000))
    mean = draw(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
    var = draw(st.floats(min_value=0.0, max_value=1e8, allow_nan=False))
    sum_ = mean * n
    return MeanStats(n, sum_, var * max(n - 1, 0) + (sum_ * sum_ / n if n else 0.0))


ENGINES = st.sampled_from(
    [
        {},
        {"difference": "absolute"},
        {"engine": "bayesian"},
        {"engine": "bayesian", "prior": "proper", "difference": "absolute"},
        {"sequential": True},
        {"test": "z_pooled"},
        {"alternative": "greater"},
    ]
)
# Keep hypothesis' example database and constants cache out of the repository checkout.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "abflow-hypothesis")
FAST = settings(max_examples=150, deadline=None, database=None)


def _check(r: object) -> None:
    values = [getattr(r, f) for f in ("estimate", "ci_low", "ci_high", "p_value", "std_error")]
    values += [getattr(r, f) for f in ("chance_to_win", "risk", "risk_control")]
    assert all(math.isfinite(v) for v in values)


@FAST
@given(c=st.one_of(proportions(), means()), data=st.data(), kwargs=ENGINES)
def test_outputs_finite_and_in_range(c: object, data: st.DataObject, kwargs: dict) -> None:
    t = data.draw(proportions() if isinstance(c, ProportionStats) else means())
    r = compare(c, t, **kwargs)  # type: ignore[arg-type]
    _check(r)
    assert 0.0 <= r.p_value <= 1.0
    assert 0.0 <= r.chance_to_win <= 1.0
    assert r.risk >= 0.0 and r.risk_control >= 0.0
    assert r.ci_low <= r.estimate <= r.ci_high


@FAST
@given(c=proportions(), t=proportions())
def test_swapping_arms_flips_absolute_estimate(c: ProportionStats, t: ProportionStats) -> None:
    a = compare(c, t, difference="absolute")
    b = compare(t, c, difference="absolute")
    assert a.error == b.error
    assert a.estimate == pytest.approx(-b.estimate, abs=1e-12)
    assert a.p_value == pytest.approx(b.p_value, rel=1e-9, abs=1e-300)
    assert a.chance_to_win == pytest.approx(1 - b.chance_to_win, abs=1e-9)
    assert a.risk == pytest.approx(b.risk_control, rel=1e-6, abs=1e-15)


@FAST
@given(c=means(), t=means())
def test_risk_difference_is_expected_lift(c: MeanStats, t: MeanStats) -> None:
    r = compare(c, t, difference="absolute")
    # E[max(0, Δ)] − E[max(0, −Δ)] = E[Δ] for the normal approximation.
    assert r.risk_control - r.risk == pytest.approx(r.estimate, rel=1e-6, abs=1e-9 * r.std_error)


@settings(max_examples=60, deadline=None, database=None)
@given(c=proportions(), t=proportions())
def test_beta_binomial_complementary(c: ProportionStats, t: ProportionStats) -> None:
    forward = beta_binomial_chance_to_win(c, t)
    backward = beta_binomial_chance_to_win(t, c)
    assert 0.0 <= forward <= 1.0
    assert forward + backward == pytest.approx(1.0, abs=1e-7)


@FAST
@given(p=st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30))
def test_adjusted_p_values_are_valid_and_not_smaller(p: list[float]) -> None:
    methods: tuple[AdjustMethod, ...] = ("holm", "benjamini_hochberg", "bonferroni")
    for method in methods:
        adj = adjust_p_values(p, method)
        assert len(adj) == len(p)
        assert all(0.0 <= a <= 1.0 and a >= q - 1e-15 for a, q in zip(adj, p, strict=True))


@FAST
@given(
    counts=st.lists(st.integers(min_value=0, max_value=10**8), min_size=0, max_size=6),
    data=st.data(),
)
def test_srm_p_in_unit_interval(counts: list[int], data: st.DataObject) -> None:
    weights = data.draw(
        st.lists(
            st.floats(min_value=0.0, max_value=100.0), min_size=len(counts), max_size=len(counts)
        )
    )
    assert 0.0 <= srm_p_value(counts, weights) <= 1.0


def test_srm_with_a_subnormal_weight_is_defined() -> None:
    # Hypothesis found it: the expected count of a 5e-324 weight underflows to 0.
    assert srm_p_value([1, 0], [2.0, 5e-324]) == 1.0
    assert srm_p_value([0, 1], [2.0, 5e-324]) == 0.0
