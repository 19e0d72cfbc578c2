"""Demo data: example definitions load, frames are deterministic, well-typed and well-assigned."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from abflow.definitions import Experiment, load_experiment_files
from abflow.demo_data import (
    ASSIGNMENT_COLUMNS,
    DEMO_EXPERIMENTS_DIR,
    EVENT_COLUMNS,
    assign_indices,
    bucket,
    generate_demo_data,
)

AS_OF = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture(scope="module")
def experiments() -> list[Experiment]:
    return load_experiment_files([DEMO_EXPERIMENTS_DIR])


@pytest.fixture(scope="module")
def frames(experiments: list[Experiment]) -> tuple[pd.DataFrame, pd.DataFrame]:
    return generate_demo_data(experiments, as_of=AS_OF, seed=7)


def test_example_definitions_load(experiments: list[Experiment]) -> None:
    by_key = {e.key: e for e in experiments}
    assert set(by_key) == {"checkout_button", "followup_timing", "enrichment_strategy"}
    assert all(e.status == "running" for e in experiments)
    checkout = by_key["checkout_button"]
    assert checkout.primary_metric.key == "purchase_rate"
    assert checkout.decision.auto_promote
    assert checkout.analysis.cuped is not None and checkout.analysis.segments == ("country",)
    assert not by_key["followup_timing"].decision.auto_promote
    enrichment = by_key["enrichment_strategy"]
    assert [v.key for v in enrichment.variants] == ["full_stack", "free_only", "hybrid"]
    assert enrichment.metric("cost_per_enrichment").max == 0.10
    assert enrichment.decision.expected_monthly_volume == 50000


@pytest.mark.parametrize(
    ("key", "unit", "expected"),
    [
        ("checkout_button", "ck_000001", 8626615739408371374),
        ("exp", "user-1", 18047975760743106429),
        ("enrichment_strategy", "en_000042", 10260512380141081380),
    ],
)
def test_bucket_matches_hand_computed_sha256(key: str, unit: str, expected: int) -> None:
    digest = hashlib.sha256(f"{key}:{unit}".encode()).digest()
    assert struct.unpack(">Q", digest[:8])[0] == expected
    assert bucket(key, unit) == expected / 2**64
    assert 0.0 <= bucket(key, unit) < 1.0


def test_assignment_follows_weight_intervals(experiments: list[Experiment]) -> None:
    enrichment = next(e for e in experiments if e.key == "enrichment_strategy")
    units = [f"u{i}" for i in range(200)]
    idx = assign_indices(enrichment, units)
    cumulative = np.cumsum([v.weight for v in enrichment.variants])
    for unit, i in zip(units, idx, strict=True):
        b = bucket(enrichment.key, unit)
        assert b < cumulative[i] and (i == 0 or b >= cumulative[i - 1])


def test_same_seed_gives_identical_frames(
    experiments: list[Experiment], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    again = generate_demo_data(experiments, as_of=AS_OF, seed=7)
    pd.testing.assert_frame_equal(frames[0], again[0])
    pd.testing.assert_frame_equal(frames[1], again[1])
    other = generate_demo_data(experiments, as_of=AS_OF, seed=8)
    assert not frames[1]["value"].equals(other[1]["value"])


def test_columns_and_dtypes(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    assignments, events = frames
    assert tuple(assignments.columns) == ASSIGNMENT_COLUMNS
    assert tuple(events.columns) == EVENT_COLUMNS
    for col in ("experiment_key", "unit_id", "variant_key"):
        assert pd.api.types.is_string_dtype(assignments[col])
        assert assignments[col].notna().all()
    for col in ("unit_id", "event_name"):
        assert pd.api.types.is_string_dtype(events[col])
    for stamps in (assignments["assigned_at"], events["occurred_at"]):
        # UTC-aware; the unit is pandas' own (us on pandas 3, ns on pandas 2).
        assert isinstance(stamps.dtype, pd.DatetimeTZDtype) and str(stamps.dtype.tz) == "UTC"
    assert events["value"].dtype == np.float64
    assert all(isinstance(a, dict) for a in assignments["attributes"])
    assert all(p is None or isinstance(p, dict) for p in events["properties"])


def test_sizes_and_time_bounds(
    experiments: list[Experiment], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    assignments, events = frames
    assert 25_000 <= assignments["unit_id"].nunique() <= 35_000
    assert len(events) <= 300_000
    start = min(e.start_at for e in experiments)
    assert assignments["assigned_at"].min() >= start
    # no events from the future: every row lies at or before as_of
    assert assignments["assigned_at"].max() <= AS_OF
    assert events["occurred_at"].max() <= AS_OF
    assert set(events["unit_id"]) <= set(assignments["unit_id"])


def test_units_are_sticky_and_hash_assigned(
    experiments: list[Experiment], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    assignments, _ = frames
    assert (assignments.groupby("unit_id")["variant_key"].nunique() == 1).all()
    assert (assignments.groupby("unit_id")["experiment_key"].nunique() == 1).all()
    assert assignments.duplicated("unit_id").any()  # some realistic repeat exposures
    first = assignments.drop_duplicates("unit_id")
    for e in experiments:
        rows = first[first["experiment_key"] == e.key].head(300)
        idx = assign_indices(e, rows["unit_id"].tolist())
        expected = [e.variants[i].key for i in idx]
        assert rows["variant_key"].tolist() == expected


def test_split_is_near_configured_weights(
    experiments: list[Experiment], frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    first = frames[0].drop_duplicates("unit_id")
    for e in experiments:
        counts = first[first["experiment_key"] == e.key]["variant_key"].value_counts()
        total = counts.sum()
        for v in e.variants:
            share = counts.get(v.key, 0) / total
            # 4 binomial standard errors: a fixed seed, but a real tolerance
            assert abs(share - v.weight) < 4 * np.sqrt(v.weight * (1 - v.weight) / total)


def test_unit_ids_are_prefixed_per_experiment(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    first = frames[0].drop_duplicates("unit_id")
    prefixes = first["unit_id"].str.split("_").str[0]
    assert prefixes.groupby(first["experiment_key"]).nunique().eq(1).all()
    assert prefixes.nunique() == first["experiment_key"].nunique()


def test_baked_in_effects_show_up(frames: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    assignments, events = frames
    first = assignments.drop_duplicates("unit_id").set_index("unit_id")
    checkout = first[first["experiment_key"] == "checkout_button"]
    buyers = events[events["event_name"] == "purchase"].merge(
        checkout[["assigned_at"]], left_on="unit_id", right_index=True
    )
    post = buyers[buyers["occurred_at"] >= buyers["assigned_at"]]["unit_id"].unique()
    rate = checkout.index.isin(post).astype(float)
    by_arm = pd.Series(rate, index=checkout.index).groupby(checkout["variant_key"]).mean()
    assert by_arm["green"] - by_arm["control"] > 0.01
    pre = buyers[buyers["occurred_at"] < buyers["assigned_at"]]
    assert len(pre) > 0  # CUPED covariate exists

    cost = events[events["event_name"] == "enrichment_cost"].groupby("unit_id")["value"].sum()
    enrich = first[first["experiment_key"] == "enrichment_strategy"]
    per_unit = cost.reindex(enrich.index).fillna(0.0).groupby(enrich["variant_key"]).mean()
    assert per_unit["full_stack"] > 0.10 > per_unit["hybrid"] > per_unit["free_only"]


def test_as_of_before_start_is_rejected(experiments: list[Experiment]) -> None:
    with pytest.raises(ValueError, match="not after start_at"):
        generate_demo_data(experiments, as_of=datetime(2026, 10, 1, tzinfo=UTC))
