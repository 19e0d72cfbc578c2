"""Capping and filters in the YAML, and how a capped metric's results carry the raw ones."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from abflow import stats as st
from abflow.analysis import build_insights, compare_arms
from abflow.definitions import DefinitionError, parse_experiment
from abflow.results import SufficientStats
from tests.unit.definitions_helper import CONV, definition

REV = {"key": "rev", "kind": "mean", "event": "buy", "value": "sum"}


def _exp(metric: dict[str, Any]) -> Any:
    d = definition([CONV, metric])
    d["analysis"] = {"sequential": False}
    return parse_experiment(d)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"capping": {"type": "percentile", "upper": 99}}, "[rev].capping: percentile"),
        ({"capping": {"type": "absolute"}}, "needs 'upper' or 'lower'"),
        ({"capping": {"type": "absolute", "upper": 5, "lower": 9}}, "lower must be below"),
        ({"capping": {"type": "absolute", "upper": 5, "ignore_zeros": True}}, "ignore_zeros"),
        ({"capping": {"type": "winsor", "upper": 0.9}}, "metrics[rev].capping.type"),
        ({"filter": [{"property": "plan", "op": "like", "value": "p"}]}, "[rev].filter[0].op"),
        ({"filter": [{"property": "pl an", "op": "=", "value": "p"}]}, "filter[0].property"),
        ({"filter": [{"property": "plan", "op": "in", "value": "p"}]}, "non-empty list"),
        ({"filter": [{"property": "plan", "op": "=", "values": ["p"]}]}, "takes one 'value'"),
        ({"filter": [{"property": "plan", "op": "<", "value": "p"}]}, "compares numbers"),
        ({"filter": [{"property": "n", "op": "in", "values": [1, "a"]}]}, "all be numbers"),
        ({"filter": [{"property": "n", "op": "exists", "value": 1}]}, "takes no value"),
    ],
)
def test_bad_options_are_rejected_naming_the_field(extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(DefinitionError) as err:
        _exp({**REV, **extra})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_ratio_capping_rules() -> None:
    ratio = {"key": "r", "kind": "ratio", "numerator": {"event": "a", "value": "sum"},
             "denominator": {"event": "b"}}
    with pytest.raises(DefinitionError, match="absolute capping goes on"):
        _exp({**ratio, "capping": {"type": "absolute", "upper": 5}})
    m = _exp({**ratio, "capping": {"type": "percentile", "upper": 0.9}}).metric("r")
    assert m.numerator_capping == m.denominator_capping is not None
    sides = {**ratio, "numerator": {"event": "a", "value": "sum",
                                    "capping": {"type": "absolute", "upper": 5},
                                    "filter": [{"property": "p", "op": "exists"}]},
             "filter": [{"property": "q", "op": "=", "value": 1}]}
    m = _exp(sides).metric("r")
    assert m.denominator_capping is None and m.numerator_capping is not None
    assert [f.property for f in m.numerator_filter] == ["q", "p"]
    assert [f.property for f in m.denominator_filter] == ["q"]
    with pytest.raises(DefinitionError, match="proportion metrics take no capping"):
        _exp({**CONV, "key": "c2", "role": "secondary", "capping": {"type": "absolute",
                                                                    "upper": 1}})


def test_filter_value_semantics() -> None:
    m = _exp({**REV, "filter": [{"property": "n", "op": "in", "values": [1, 2.5]},
                                {"property": "gift", "op": "=", "value": True},
                                {"property": "plan", "op": "=", "value": "10"}]}).metric("rev")
    n, gift, plan = m.filter
    assert n.numeric and n.bound_values == (1.0, 2.5)
    assert not gift.numeric and gift.bound_values == ("true",)
    assert not plan.numeric and plan.bound_values == ("10",)  # quoted: text, not a number


def _arm(variant: str, n: int, s: float, ss: float, raw: tuple[float, float]) -> SufficientStats:
    base = SufficientStats("rev", variant, "all", n, n, s, ss, capped=True, cap_upper=50.0)
    return replace(base, uncapped=SufficientStats("rev", variant, "all", n, n, raw[0], raw[1]))


def test_capped_metric_is_analysed_capped_with_the_raw_result_beside() -> None:
    e = _exp({**REV, "capping": {"type": "percentile", "upper": 0.99}})
    stats = [
        SufficientStats("conv", "control", "all", 1000, 1000, 100, 100),
        SufficientStats("conv", "t1", "all", 1000, 1000, 110, 110),
        _arm("control", 1000, 10_000.0, 200_000.0, (14_000.0, 2_000_000.0)),
        _arm("t1", 1000, 10_800.0, 230_000.0, (11_000.0, 260_000.0)),
    ]
    variant_rows, rows = build_insights(uuid.uuid4(), e, datetime(2026, 1, 1, tzinfo=UTC), stats)
    row = next(r for r in rows if r.metric_key == "rev")
    assert math.isclose(row.control_mean, 10.0) and math.isclose(row.variant_mean, 10.8)
    assert math.isclose(row.rel_lift, 0.08)
    raw = compare_arms(e, e.metric("rev"), st.MeanStats(1000, 14_000.0, 2_000_000.0),
                       st.MeanStats(1000, 11_000.0, 260_000.0))
    assert row.uncapped_control_mean == 14.0 and row.uncapped_variant_mean == 11.0
    assert row.uncapped_rel_lift is not None
    assert math.isclose(row.uncapped_rel_lift, raw.relative.estimate)
    assert math.isclose(row.uncapped_p_value or 0, raw.absolute.p_value)
    v = next(r for r in variant_rows if r.metric_key == "rev" and r.variant_key == "control")
    assert v.capped and v.cap_upper == 50.0 and v.mean == 10.0 and v.uncapped_mean == 14.0
    plain = next(r for r in rows if r.metric_key == "conv")
    assert plain.uncapped_rel_lift is None
