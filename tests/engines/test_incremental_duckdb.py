"""Incremental refresh on DuckDB: the same partials, watermark and numbers as a full pass."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from abflow.definitions import Experiment
from abflow.warehouse import extract, incremental, lake
from abflow.warehouse.engines import DuckDBWarehouse
from tests.conftest import DEMO_AS_OF
from tests.engines.test_equality import _stats_equal

pytest.importorskip("duckdb")


@pytest.mark.parametrize("key", ["checkout_button", "enrichment_strategy"])
def test_daily_refresh_equals_a_full_pass(
    key: str, demo_experiments: list[Experiment], demo_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    experiment = {e.key: e for e in demo_experiments}[key]
    warehouse = DuckDBWarehouse(":memory:")
    lake.load_duckdb(warehouse.connection(), *demo_frames)
    sources = extract.default_sources("assignments", "events")
    names = ("assignments", "events")

    def refresh(as_of: Any) -> Any:
        with warehouse.session() as executor:
            incremental.ensure_state_tables(executor)
            return incremental.refresh(executor, experiment, as_of, sources, source_names=names)

    _, first = refresh(DEMO_AS_OF - timedelta(days=2))
    stats, daily = refresh(DEMO_AS_OF)
    with warehouse.session() as executor:
        full, _ = extract.analyse_in_warehouse(executor, experiment, DEMO_AS_OF, sources)
    warehouse.close()

    assert (first.mode, first.reason) == ("full", "first refresh")
    assert (daily.mode, daily.reason) == ("incremental", "watermark")
    assert first.partial_rows_sealed > 0
    assert daily.events_from == first.sealed_before
    assert _stats_equal(full, stats) == []


def test_exposure_age_setting_is_part_of_the_partials_hash(
    demo_experiments: list[Experiment],
) -> None:
    """Partials keep exposure-age cohorts only when analysed: switching it refreshes in full."""
    experiment = demo_experiments[0]
    flipped = experiment.model_copy(
        update={
            "analysis": experiment.analysis.model_copy(
                update={"exposure_age": not experiment.analysis.exposure_age}
            )
        }
    )
    names = {"assignments": "assignments", "events": "events"}
    assert incremental.definition_hash(experiment, **names) != incremental.definition_hash(
        flipped, **names
    )
