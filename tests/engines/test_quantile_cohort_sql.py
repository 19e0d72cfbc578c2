"""Quantile order statistics and exposure-age cohorts from the warehouse SQL vs numpy/pandas.

Raw rows live in this test only: a seeded frame is loaded into DuckDB, analysed by the canonical
SQL (abflow.warehouse.plan), and every number is recomputed from the frame with numpy / pandas.
Equality across PostgreSQL, DuckDB and Spark is tested on the demo experiments
(test_equality.py), whose checkout_button carries a quantile guardrail.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlglot import exp

from abflow.definitions import Experiment, parse_experiment
from abflow.stats.quantile import bound_levels
from abflow.warehouse import extract, plan
from abflow.warehouse.dialects import Statement, canonical
from abflow.warehouse.engines import DuckDBWarehouse, execute_plan

START = datetime(2026, 3, 1, tzinfo=UTC)
AS_OF = START + timedelta(days=30)


def _aggregations_experiment(metrics: list[dict[str, Any]], **analysis: Any) -> Experiment:
    return parse_experiment(
        {
            "key": "q_test",
            "name": "quantiles",
            "status": "running",
            "start_at": START.isoformat(),
            "variants": [
                {"key": "a", "weight": 0.5, "control": True},
                {"key": "b", "weight": 0.5},
            ],
            "metrics": metrics,
            "analysis": {"segments": ["country"], "sequential": False, **analysis},
        }
    )


def _experiment() -> Experiment:
    return _aggregations_experiment(
        [
            {"key": "buy", "kind": "proportion", "event": "buy", "role": "primary"},
            {"key": "spend", "kind": "mean", "event": "buy", "value": "sum"},
            {
                "key": "lat_p90",
                "kind": "quantile",
                "quantile": 0.9,
                "event": "load",
                "value": "mean",
                "direction": "decrease",
                "role": "guardrail",
            },
            {
                "key": "spend_p50",
                "kind": "quantile",
                "quantile": 0.5,
                "event": "buy",
                "value": "sum",
            },
            {
                "key": "lat_ev_p95",
                "kind": "quantile",
                "quantile": 0.95,
                "event": "load",
                "level": "event",
            },
        ]
    )


@pytest.fixture(scope="module")
def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    n = 3000
    units = pd.DataFrame(
        {
            "unit_id": [f"u{i}" for i in range(n)],
            "variant_key": np.where(rng.random(n) < 0.5, "a", "b"),
            "assigned_at": [
                START + timedelta(minutes=int(m)) for m in rng.integers(0, 28 * 1440, n)
            ],
            "country": rng.choice(["DE", "FR", "US"], n),
        }
    )
    rows: list[dict[str, Any]] = []
    for u in units.itertuples():
        for _ in range(rng.poisson(3)):
            age = timedelta(hours=float(rng.exponential(24 * 8)))
            rows.append(
                {
                    "unit_id": u.unit_id,
                    "event_name": "load",
                    "value": float(rng.lognormal(5, 0.5)),
                    "occurred_at": u.assigned_at + age,
                }
            )
        for _ in range(rng.poisson(0.5 if u.variant_key == "a" else 0.7)):
            age = timedelta(hours=float(rng.exponential(24 * 6)))
            rows.append(
                {
                    "unit_id": u.unit_id,
                    "event_name": "buy",
                    "value": float(rng.gamma(2, 20)),
                    "occurred_at": u.assigned_at + age,
                }
            )
    events = pd.DataFrame(rows)
    events = events[events["occurred_at"] <= AS_OF]
    return units, events


def _warehouse(frames: tuple[pd.DataFrame, pd.DataFrame]) -> DuckDBWarehouse:
    units, events = frames
    wh = DuckDBWarehouse(":memory:")
    con = wh.connection()
    assignments = units.assign(experiment_key="q_test")
    assignments["attributes"] = [json.dumps({"country": c}) for c in units["country"]]
    con.register("a_df", assignments)
    con.execute(
        "create table assignments as select experiment_key, unit_id, variant_key, assigned_at, "
        "cast(attributes as json) as attributes from a_df"
    )
    ev = events.assign(properties=None)
    con.register("e_df", ev)
    con.execute(
        "create table events as select unit_id, event_name, value, occurred_at, "
        "cast(properties as json) as properties from e_df"
    )
    return wh


@pytest.fixture(scope="module")
def stats(frames: tuple[pd.DataFrame, pd.DataFrame]) -> dict[tuple[str, str, str], Any]:
    wh = _warehouse(frames)
    with wh.session() as ex:
        records, _ = extract.analyse_in_warehouse(
            ex, _experiment(), AS_OF, extract.default_sources("assignments", "events")
        )
    wh.close()
    return {(s.metric_key, s.variant_key, s.segment): s for s in records}


def _linear(values: np.ndarray, p: float) -> float:
    return float(np.quantile(values, p, method="linear"))


def _per_unit(units: pd.DataFrame, events: pd.DataFrame, name: str, agg: str) -> pd.DataFrame:
    e = events[events["event_name"] == name].merge(units[["unit_id", "assigned_at"]])
    e = e[e["occurred_at"] >= e["assigned_at"]]
    per = e.groupby("unit_id")["value"].agg(agg).rename("y").reset_index()
    out = units.merge(per, how="left")
    return out


@pytest.mark.parametrize(
    ("metric", "event", "agg", "nu", "zero_fill"),
    [("lat_p90", "load", "mean", 0.9, False), ("spend_p50", "buy", "sum", 0.5, True)],
)
def test_unit_level_quantiles_match_numpy(frames, stats, metric, event, agg, nu, zero_fill) -> None:
    units, events = frames
    per = _per_unit(units, events, event, agg)
    if zero_fill:
        per["y"] = per["y"].fillna(0.0)
    per = per.dropna(subset=["y"])
    for (variant, segment), group in [
        *(((v, "all"), g) for v, g in per.groupby("variant_key")),
        *(((v, f"country={c}"), g) for (v, c), g in per.groupby(["variant_key", "country"])),
    ]:
        s = stats[(metric, variant, segment)]
        y = group["y"].to_numpy()
        lo, hi = bound_levels(nu, len(y))
        assert s.quantile_n == len(y)
        assert s.quantile == pytest.approx(_linear(y, nu), rel=1e-9)
        assert s.quantile_lower == pytest.approx(_linear(y, lo), rel=1e-9)
        assert s.quantile_upper == pytest.approx(_linear(y, hi), rel=1e-9)
        assert s.n_clusters is None


def test_event_level_quantile_and_cluster_moments_match_pandas(frames, stats) -> None:
    units, events = frames
    e = events[events["event_name"] == "load"].merge(units)
    e = e[e["occurred_at"] >= e["assigned_at"]]
    for variant, group in e.groupby("variant_key"):
        s = stats[("lat_ev_p95", variant, "all")]
        y = group["value"].to_numpy()
        q = _linear(y, 0.95)
        assert s.quantile_n == len(y)
        assert s.quantile == pytest.approx(q, rel=1e-9)
        per_unit = group.assign(below=group["value"] <= q).groupby("unit_id")
        below = per_unit["below"].sum().to_numpy(dtype=float)
        count = per_unit.size().to_numpy(dtype=float)
        assert s.n_clusters == len(count)
        assert s.below_sum == pytest.approx(below.sum())
        assert s.below_sum_squares == pytest.approx((below**2).sum())
        assert s.events_sum == pytest.approx(count.sum())
        assert s.events_sum_squares == pytest.approx((count**2).sum())
        assert s.below_events_sum_products == pytest.approx((below * count).sum())


COHORTS = [(0, "0-6"), (7, "7-13"), (14, "14-20"), (21, "21+")]


def test_exposure_age_cohorts_match_pandas(frames, stats) -> None:
    units, events = frames
    e = events[events["event_name"] == "buy"].merge(units[["unit_id", "assigned_at"]])
    e = e[e["occurred_at"] >= e["assigned_at"]]
    age_days = (e["occurred_at"] - e["assigned_at"]).dt.total_seconds() / 86400
    e = e.assign(cohort=np.minimum(np.floor(age_days / 7), 3).astype(int))
    for k, (first_day, label) in enumerate(COHORTS):
        eligible = units[units["assigned_at"] + timedelta(days=first_day) <= AS_OF]
        in_cohort = e[e["cohort"] == k]
        for variant, group in eligible.groupby("variant_key"):
            spend = in_cohort.groupby("unit_id")["value"].sum()
            y = group["unit_id"].map(spend).fillna(0.0).to_numpy()
            converted = group["unit_id"].isin(in_cohort["unit_id"]).to_numpy()
            s_spend = stats[("spend", variant, f"@exposure_age={label}")]
            s_buy = stats[("buy", variant, f"@exposure_age={label}")]
            assert s_spend.units == len(y) == s_buy.units
            assert s_spend.sum == pytest.approx(y.sum(), rel=1e-9)
            assert s_spend.sum_squares == pytest.approx((y**2).sum(), rel=1e-9)
            assert s_buy.sum == converted.sum()


@pytest.mark.parametrize(
    "experiment",
    [
        _aggregations_experiment(
            [
                {"key": "buy", "kind": "proportion", "event": "buy", "role": "primary"},
                {"key": "top", "kind": "mean", "event": "load", "value": "max"},
                {"key": "loads", "kind": "mean", "event": "load", "value": "count"},
                {
                    "key": "per_load",
                    "kind": "ratio",
                    "numerator": {"event": "buy", "value": "sum"},
                    "denominator": {"event": "load", "value": "mean"},
                },
                {
                    "key": "peak",
                    "kind": "ratio",
                    "numerator": {"event": "load", "value": "max"},
                    "denominator": {"event": "buy", "value": "max"},
                },
            ],
            cuped={"lookback_days": 7},
        ),
        # only sums: the cohorts' counts are kept all the same, they tell a unit's cohorts
        _aggregations_experiment(
            [{"key": "spend", "kind": "mean", "event": "buy", "value": "sum", "role": "primary"}]
        ),
        _aggregations_experiment(
            [{"key": "lat", "kind": "mean", "event": "load", "value": "mean", "role": "primary"}],
            exposure_age=False,
        ),
    ],
    ids=["every_aggregation", "sums_only", "no_exposure_age"],
)
def test_pruned_aggregates_change_no_number(
    frames: tuple[pd.DataFrame, pd.DataFrame], experiment: Experiment
) -> None:
    """The aggregates plan.prune_aggregates drops are ones no metric reads: same rows without."""
    wh = _warehouse(frames)
    sources = extract.default_sources("assignments", "events")
    pruned = [s for s in plan.analysis_plan(experiment, AS_OF) if s.name != "exposure_summary"]
    unpruned = []
    for st in plan.analysis_plan(experiment, AS_OF):
        if st.name == "unit_values":  # the same statement, every aggregate computed
            st = Statement(
                "unit_values", canonical("queries/metric_stats.sql"), relation=st.relation
            )
            st = plan.with_event_filters(st, experiment).bind(
                plan.analysis_values(experiment, AS_OF)
            )
        if st.name != "exposure_summary":
            unpruned.append(st)
    with wh.session() as ex:
        got = execute_plan(ex, pruned, sources)
        want = execute_plan(ex, unpruned, sources)
    wh.close()
    # something was pruned: fewer aggregates with a FILTER in the pass over events
    filters = [
        len(list(next(s for s in sts if s.name == "unit_values").query.find_all(exp.Filter)))
        for sts in (pruned, unpruned)
    ]
    assert filters[0] < filters[1]
    assert set(got) == set(want)
    assert {"metric_stats"} <= set(got)
    assert ("exposure_age_stats" in got) == experiment.analysis.exposure_age
    for name, rows in want.items():
        assert len(got[name]) == len(rows) > 0
        for g, w in zip(got[name], rows, strict=True):
            assert g.keys() == w.keys()
            for key, value in w.items():
                if isinstance(value, float):
                    assert g[key] == pytest.approx(value, rel=1e-12), (name, key)
                else:
                    assert g[key] == value, (name, key)


@pytest.mark.parametrize("days", [30, 10], ids=["all_cohorts", "early"])
@pytest.mark.parametrize("capped", [False, True], ids=["uncapped", "capped"])
def test_cohort_sums_equal_the_per_unit_final_step(
    frames: tuple[pd.DataFrame, pd.DataFrame], capped: bool, days: int
) -> None:
    """Cohort rows summed straight from the stage = the shared final step over pseudo-units.

    Ten days in, no unit has been exposed for 14 days yet: cohorts 14-20 and 21+ have no row in
    either form (not a row of zero units).
    """
    as_of = START + timedelta(days=days)
    spend: dict[str, Any] = {"key": "spend", "kind": "mean", "event": "buy", "value": "sum"}
    if capped:
        spend["capping"] = {"type": "percentile", "upper": 0.9}
    experiment = _aggregations_experiment(
        [
            {"key": "buy", "kind": "proportion", "event": "buy", "role": "primary"},
            spend,
            {"key": "top", "kind": "mean", "event": "load", "value": "max"},
            {"key": "lat", "kind": "mean", "event": "load", "value": "mean"},
            {
                "key": "per_load",
                "kind": "ratio",
                "numerator": {"event": "buy", "value": "sum"},
                "denominator": {"event": "load", "value": "count"},
            },
        ],
        cuped={"lookback_days": 7},
    )
    values = plan.analysis_values(experiment, as_of)
    stages = [
        *plan.stage_statements(experiment, as_of),
        *plan.metric_stats_statements(experiment, values),
    ]
    wh = _warehouse(frames)
    sources = extract.default_sources("assignments", "events")
    with wh.session() as ex:
        execute_plan(ex, stages, sources)
        sums = execute_plan(
            ex, [plan.exposure_age_statement(experiment, values, per_unit=False)], sources
        )["exposure_age_stats"]
        per_unit = execute_plan(
            ex, [plan.exposure_age_statement(experiment, values, per_unit=True)], sources
        )["exposure_age_stats"]
    wh.close()
    # the automatic choice: pseudo-units exactly when a metric is capped
    auto = plan.exposure_age_statement(experiment, values)
    assert ("exposure_age_units" in auto.query.sql()) == capped
    # (with a capped metric only the per-unit form has its capped rows right: it is the one used)
    uncapped = [r for r in per_unit if not r["capped"]]
    summed = [r for r in sums if not r["capped"]]
    cohorts = sum(first_day <= days for first_day, _ in COHORTS)
    assert cohorts == (4 if days == 30 else 2)
    assert len(summed) == len(uncapped) == 5 * 2 * cohorts  # metrics x arms x cohorts
    for got, want in zip(summed, uncapped, strict=True):
        assert got.keys() == want.keys()
        for column, value in want.items():
            if isinstance(value, float):
                assert got[column] == pytest.approx(value, rel=1e-12, abs=1e-12), column
            else:
                assert got[column] == value, column
