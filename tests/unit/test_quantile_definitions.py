"""The YAML of quantile metrics and exposure-age settings: accepted shapes, one-line errors."""

from __future__ import annotations

import pytest

from abflow.definitions import DefinitionError, parse_experiment


def _experiment(metric: dict, **analysis) -> dict:
    return {
        "key": "q",
        "name": "q",
        "start_at": "2026-01-01T00:00:00Z",
        "variants": [
            {"key": "a", "weight": 0.5, "control": True},
            {"key": "b", "weight": 0.5},
        ],
        "metrics": [
            {"key": "buy", "kind": "proportion", "event": "buy", "role": "primary"},
            {"key": "m", **metric},
        ],
        "analysis": analysis,
    }


def test_defaults() -> None:
    e = parse_experiment(_experiment({"kind": "quantile", "quantile": 0.9, "event": "load"}))
    m = e.metric("m")
    assert (m.level, m.value, m.numerator_agg) == ("unit", "mean", "mean")
    assert e.analysis.exposure_age is True and e.analysis.novelty_alpha == 0.01
    ev = parse_experiment(
        _experiment({"kind": "quantile", "quantile": 0.5, "event": "load", "level": "event"})
    ).metric("m")
    assert ev.level == "event"


@pytest.mark.parametrize(
    ("metric", "message"),
    [
        ({"kind": "quantile", "event": "load"}, "metrics[m]: quantile metrics need 'quantile'"),
        ({"kind": "quantile", "quantile": 1.0, "event": "load"}, "metrics[m].quantile"),
        (
            {"kind": "quantile", "quantile": 0.9, "event": "load", "level": "session"},
            "metrics[m].level",
        ),
        (
            {
                "kind": "quantile",
                "quantile": 0.9,
                "event": "load",
                "level": "event",
                "value": "sum",
            },
            "level: event takes each event's value",
        ),
        ({"kind": "mean", "event": "load", "quantile": 0.9}, "apply to kind: quantile only"),
        (
            {"kind": "quantile", "quantile": 0.9, "event": "load",
             "capping": {"type": "absolute", "upper": 100}},
            "quantile metrics take no 'capping'",
        ),
    ],
)
def test_errors_name_the_field(metric: dict, message: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_experiment(_experiment(metric), "q.yaml")
    text = str(err.value)
    assert message in text and "\n" not in text


def test_novelty_alpha_bounds() -> None:
    with pytest.raises(DefinitionError, match="analysis.novelty_alpha"):
        parse_experiment(_experiment({"kind": "mean", "event": "x"}, novelty_alpha=1.5), "q.yaml")
