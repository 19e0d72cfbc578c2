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
    if incremental.incremental_unsupported(experiment):
        # checkout_button without its filtered metric and its ratio (with CUPED): those take
        # the full pass (test_unsupported_metrics_take_the_full_pass); its capped revenue stays,
        # so the caps come from the merged partials here
        kept = tuple(
            m for m in experiment.metrics
            if m.kind != "ratio" and not m.numerator_filter
        )
        assert any(m.capped for m in kept)
        experiment = experiment.model_copy(update={"metrics": kept})
    assert incremental.incremental_unsupported(experiment) is None
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


def test_unsupported_metrics_take_the_full_pass(
    demo_experiments: list[Experiment], demo_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """Filters and ratio CUPED: a full pass with the reason recorded, the partials untouched."""
    experiment = {e.key: e for e in demo_experiments}["checkout_button"]
    warehouse = DuckDBWarehouse(":memory:")
    lake.load_duckdb(warehouse.connection(), *demo_frames)
    sources = extract.default_sources("assignments", "events")
    with warehouse.session() as executor:
        incremental.ensure_state_tables(executor)
        stats, info = incremental.refresh(
            executor, experiment, DEMO_AS_OF, sources, source_names=("assignments", "events")
        )
        full, _ = extract.analyse_in_warehouse(executor, experiment, DEMO_AS_OF, sources)
        partials = executor.con.execute("select count(*) from unit_metric_partials").fetchone()
    warehouse.close()
    assert info.mode == "full" and "event property filters" in info.reason
    assert partials == (0,)
    assert _stats_equal(full, stats) == []
