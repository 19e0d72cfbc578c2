"""The warehouse pass against an independent pandas computation, and idempotent writes."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from abflow.definitions import Experiment, Metric
from abflow.novelty import split_cohort_stats
from abflow.stats.quantile import bound_levels
from abflow.warehouse import extract
from abflow.warehouse.writer import write_result
from tests.conftest import DEMO_AS_OF, analyse, copy_experiment


def _agg(frame: pd.DataFrame, how: str, units: pd.Index, fill: bool) -> pd.Series:
    grouped = frame.groupby("unit_id")["value"]
    series = {
        "sum": grouped.sum(min_count=1),
        "count": frame.groupby("unit_id").size().astype(float),
        "mean": grouped.mean(),
        "max": grouped.max(),
    }[how].reindex(units)
    return series.fillna(0.0) if fill else series


def reference_stats(
    experiment: Experiment, assignments: pd.DataFrame, events: pd.DataFrame
) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Sufficient statistics computed in pandas from the raw frames (the test oracle)."""
    a = assignments[
        (assignments.experiment_key == experiment.key)
        & (assignments.assigned_at >= experiment.start_at)
        & (assignments.assigned_at <= DEMO_AS_OF)
    ].sort_values("assigned_at")
    per_unit = a.groupby("unit_id").agg(
        first_at=("assigned_at", "min"),
        variant=("variant_key", "first"),
        n_variants=("variant_key", "nunique"),
        attributes=("attributes", "first"),
    )
    keys = {v.key for v in experiment.variants}
    units = per_unit[(per_unit.n_variants == 1) & per_unit.variant.isin(keys)]
    ev = events[events.unit_id.isin(units.index) & (events.occurred_at <= DEMO_AS_OF)].merge(
        units[["first_at"]], left_on="unit_id", right_index=True
    )
    lookback = (
        timedelta(days=experiment.analysis.cuped.lookback_days)
        if experiment.analysis.cuped
        else None
    )
    seg = pd.Series("all", index=units.index)
    segments = {"all": units.index}
    for dim in experiment.analysis.segments:
        levels = units.attributes.map(lambda x, d=dim: (x or {}).get(d, "(missing)"))
        for level in levels.unique():
            segments[f"{dim}={level}"] = levels.index[levels == level]
    del seg
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for m in experiment.metrics:

        def window(name: str, m: Metric = m) -> pd.DataFrame:
            e = ev[(ev.event_name == name) & (ev.occurred_at >= ev.first_at)]
            if m.window_hours:
                e = e[e.occurred_at < e.first_at + timedelta(hours=m.window_hours)]
            return e

        post = window(m.numerator_event)
        if m.kind == "proportion":
            y = pd.Series(units.index.isin(post.unit_id).astype(float), index=units.index)
        else:
            y = _agg(post, m.numerator_agg, units.index, fill=m.numerator_agg in ("sum", "count"))
        x = None
        if m.kind == "ratio":
            assert m.denominator_event and m.denominator_agg
            x = _agg(
                window(m.denominator_event),
                m.denominator_agg,
                units.index,
                fill=m.denominator_agg in ("sum", "count"),
            )
        c = None
        if lookback is not None and m.kind not in ("ratio", "quantile"):
            pre = ev[
                (ev.event_name == m.numerator_event)
                & (ev.occurred_at < ev.first_at)
                & (ev.occurred_at >= ev.first_at - lookback)
            ]
            if m.kind == "proportion":
                c = pd.Series(units.index.isin(pre.unit_id).astype(float), index=units.index)
            else:
                c = _agg(pre, m.numerator_agg, units.index, fill=True)
        for name, idx in segments.items():
            for v in keys:
                members = idx[units.loc[idx, "variant"] == v]
                if len(members) == 0:
                    continue
                yy = y.loc[members]
                ok = yy.notna()
                row = {
                    "units": int(ok.sum()),
                    "sum": float(yy[ok].sum()),
                    "sum_squares": float((yy[ok] ** 2).sum()),
                }
                if x is not None:
                    xx = x.loc[members]
                    row |= {
                        "denominator_sum": float(xx.sum()),
                        "sum_products": float((xx * yy).sum()),
                    }
                if c is not None:
                    cc = c.loc[members][ok]
                    row |= {
                        "covariate_sum": float(cc.sum()),
                        "covariate_sum_products": float((cc * yy[ok]).sum()),
                    }
                if m.kind == "quantile" and m.level == "unit":
                    # the arm's quantile and its rank-bound order statistics, numpy "linear"
                    # (= percentile_cont), over the same per-unit values
                    vals = yy[ok].to_numpy()
                    lo, hi = bound_levels(float(m.quantile or 0.5), len(vals))
                    row |= {
                        "quantile_n": len(vals),
                        "quantile": float(np.quantile(vals, m.quantile, method="linear")),
                        "quantile_lower": float(np.quantile(vals, lo, method="linear")),
                        "quantile_upper": float(np.quantile(vals, hi, method="linear")),
                    }
                out[(m.key, v, name)] = row
    return out


@pytest.mark.parametrize("key", ["checkout_button", "followup_timing", "enrichment_strategy"])
def test_sufficient_stats_match_pandas(
    key: str,
    engine: Engine,
    demo_loaded: dict[str, Any],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    experiment = demo_loaded["experiments"][key]
    with engine.begin() as conn:
        rows = extract.fetch_sufficient_stats(
            conn, experiment, DEMO_AS_OF, assignments="assignments", events="events"
        )
    ref = reference_stats(experiment, *demo_frames)
    rows, _ = split_cohort_stats(rows)  # cohorts: tests/engines/test_quantile_cohort_sql.py
    got = {(r.metric_key, r.variant_key, r.segment): r for r in rows}
    assert set(got) == set(ref)
    for k, expected in ref.items():
        metric = experiment.metric(k[0])
        if metric.numerator_filter:
            continue  # this oracle ignores properties: tests/engines/test_metric_options.py
        # a capped metric carries its raw sums, which this oracle computes (the capped ones are
        # checked against numpy percentiles in tests/engines/test_metric_options.py)
        row = got[k].uncapped if metric.capped else got[k]
        assert row is not None
        for field, value in expected.items():
            assert math.isclose(getattr(row, field), value, rel_tol=1e-9, abs_tol=1e-9), (
                k,
                field,
                getattr(row, field),
                value,
            )


def test_no_raw_rows_come_back(engine: Engine, demo_loaded: dict[str, Any]) -> None:
    """Rows fetched are O(metrics x variants x segments), not O(events)."""
    e = demo_loaded["experiments"]["checkout_button"]
    with engine.begin() as conn:
        rows = extract.fetch_sufficient_stats(
            conn, e, DEMO_AS_OF, assignments="assignments", events="events"
        )
    segments = {r.segment for r in rows}  # configured segments and the 4 exposure-age cohorts
    assert len(rows) == len(e.metrics) * len(e.variants) * len(segments)
    assert len(rows) < 200


def _counts(engine: Engine, key: str) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: conn.execute(
                text(f"select count(*) from {t} where experiment_key = :k"),  # noqa: S608
                {"k": key},
            ).scalar_one()
            for t in (
                "analysis_runs",
                "variant_stats",
                "insights",
                "health_checks",
                "recommendations",
            )
        }


def test_rerun_replaces_rows(engine: Engine, demo_loaded: dict[str, Any]) -> None:
    # Its own copy: other tests of the session (flows, backfills) analyse followup_timing too.
    e = copy_experiment(engine, demo_loaded["experiments"]["followup_timing"], "rerun_rows")
    for _ in range(2):
        result = analyse(engine, e)
        with engine.begin() as conn:
            write_result(conn, result)
        if _ == 0:
            first = _counts(engine, e.key)
    assert _counts(engine, e.key) == first
    assert first["analysis_runs"] == 1 and first["recommendations"] == 1
    # metrics x treatments x segments insights, metrics x variants x segments stats rows
    assert first["insights"] > 0 and first["insights"] * 2 == first["variant_stats"]


def test_crash_mid_write_keeps_previous_results(
    engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    e = demo_loaded["experiments"]["followup_timing"]
    before = _counts(engine, e.key)
    result = analyse(engine, e)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        write_result(conn, result)
        raise RuntimeError("simulated crash after the delete and inserts")
    assert _counts(engine, e.key) == before


def test_pandas_reference_sanity(demo_frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    """The oracle itself: events exist before exposure (CUPED) and none after as_of."""
    _, events = demo_frames
    assert (events.occurred_at <= DEMO_AS_OF).all()
    assert np.isfinite(events.value.dropna()).all()


def test_omnibus_and_exact_bayes_reach_the_recommendation(
    engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    """k>2 proportion arms get an omnibus χ² (vs scipy) and the exact Beta-Binomial P(beat)."""
    from scipy.stats import chi2_contingency

    e = demo_loaded["experiments"]["enrichment_strategy"]
    result = analyse(engine, e)
    details = result.recommendation.details
    arms = [
        next(
            s
            for s in result.variant_stats
            if s.metric_key == "user_edit_rate" and s.segment == "all" and s.variant_key == v.key
        )
        for v in e.variants
    ]
    table = [[a.sum, a.units - a.sum] for a in arms]
    chi2, p, dof, _ = chi2_contingency(table, correction=False)
    got = details["omnibus_chi_square"]["user_edit_rate"]
    assert math.isclose(got["statistic"], chi2, rel_tol=1e-9)
    assert math.isclose(got["p_value"], p, rel_tol=1e-9, abs_tol=1e-300) and got["df"] == dof
    exact = details["exact_chance_to_beat_control"]["user_edit_rate"]
    assert set(exact) == {"free_only", "hybrid"} and all(0 <= x <= 1 for x in exact.values())
    # free_only edits far more often and lower is better: almost no chance to beat control
    assert exact["free_only"] < 0.001
