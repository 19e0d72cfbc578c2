"""The analysis plan renders for DuckDB and gives PostgreSQL's numbers (tests/engines has more)."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.warehouse import extract, lake
from abflow.warehouse.engines import DuckDBWarehouse, PostgresExecutor
from tests.conftest import DEMO_AS_OF

pytest.importorskip("duckdb")


@pytest.mark.parametrize("key", ["checkout_button", "followup_timing", "enrichment_strategy"])
def test_same_plan_same_numbers_on_duckdb(
    key: str,
    engine: Engine,
    demo_loaded: dict[str, Any],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    experiment = demo_loaded["experiments"][key]
    sources = extract.default_sources("assignments", "events")
    with engine.begin() as conn:
        pg, pg_exposure = extract.analyse_in_warehouse(
            PostgresExecutor(conn), experiment, DEMO_AS_OF, sources
        )
    duck = DuckDBWarehouse(":memory:")
    lake.load_duckdb(duck.connection(), *demo_frames)
    with duck.session() as executor:
        dd, dd_exposure = extract.analyse_in_warehouse(executor, experiment, DEMO_AS_OF, sources)
    duck.close()

    assert dd_exposure == pg_exposure
    by_key = {(r.metric_key, r.variant_key, r.segment): r for r in dd}
    assert set(by_key) == {(r.metric_key, r.variant_key, r.segment) for r in pg} and pg
    for row in pg:
        other = by_key[(row.metric_key, row.variant_key, row.segment)]
        _same(row, other)
        if row.uncapped is not None or other.uncapped is not None:
            # a capped metric carries its raw (uncapped) sums from the same pass
            assert row.uncapped is not None and other.uncapped is not None
            _same(row.uncapped, other.uncapped)


def _same(row: Any, other: Any) -> None:
    """Every column of two sufficient-statistics rows equal (floats to 1e-9)."""
    for name, a in row.as_row().items():
        if name == "uncapped":
            continue
        b = getattr(other, name)
        if isinstance(a, float):
            assert b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), name
        else:
            assert a == b, (name, a, b)
