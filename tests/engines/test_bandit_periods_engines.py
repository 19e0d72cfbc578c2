"""A bandit's per-(arm, allocation period) rows: the same numbers on PostgreSQL, DuckDB and Spark.

The periods are bound values (a parameter table); every unit lands in the period of its first
exposure, so the period rows of each metric add up to the overall row, on every engine.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import timedelta

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.bandit_periods import period_index
from abflow.definitions import Experiment
from abflow.results import SufficientStats
from abflow.warehouse import extract, incremental, lake
from abflow.warehouse.dialects import Source
from abflow.warehouse.engines import DuckDBWarehouse, PostgresExecutor, open_warehouse
from tests.conftest import DEMO_AS_OF
from tests.engines.test_equality import _stats_equal

KEY = "checkout_button"


def _periods(e: Experiment) -> list:  # type: ignore[type-arg]
    # uneven periods, one boundary in the middle of a day
    return [e.start_at, e.start_at + timedelta(days=3, hours=7), e.start_at + timedelta(days=8)]


def _key(s: SufficientStats) -> tuple[str, str, str]:
    return (s.metric_key, s.variant_key, s.segment)


@pytest.fixture(scope="module")
def period_results(
    pg_loaded: Engine,
    engines_experiments: dict[str, Experiment],
    duckdb_file: str,
    lake_dir: dict[str, str],
    spark_url: str,
) -> dict[str, list[SufficientStats]]:
    e = engines_experiments[KEY]
    starts = _periods(e)
    tables = extract.default_sources("assignments", "events")
    parquet = {k: Source.parse(v) for k, v in lake_dir.items()}
    out: dict[str, list[SufficientStats]] = {}
    with pg_loaded.begin() as conn:
        out["postgres"], _ = extract.analyse_in_warehouse(
            PostgresExecutor(conn), e, DEMO_AS_OF, tables, periods=starts
        )
    for name, url, sources in (
        ("duckdb", duckdb_file, tables),
        ("spark_parquet", spark_url, parquet),
    ):
        with open_warehouse(url).session() as executor:
            out[name], _ = extract.analyse_in_warehouse(
                executor, e, DEMO_AS_OF, sources, periods=starts
            )
    return out


def test_period_rows_add_up_to_the_overall_rows(
    period_results: dict[str, list[SufficientStats]],
) -> None:
    rows = period_results["postgres"]
    periods = {period_index(s.segment) for s in rows} - {None}
    assert periods == {1, 2, 3}
    overall = {(s.metric_key, s.variant_key): s for s in rows if s.segment == "all"}
    summed: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0, 0.0, 0.0])
    for s in rows:
        if period_index(s.segment) is not None:
            acc = summed[(s.metric_key, s.variant_key)]
            acc[0] += s.exposed_units
            acc[1] += s.units
            acc[2] += s.sum
            acc[3] += s.sum_squares
    assert set(summed) == set(overall)
    for k, acc in summed.items():
        o = overall[k]
        assert (acc[0], acc[1]) == (o.exposed_units, o.units), k
        assert math.isclose(acc[2], o.sum, rel_tol=1e-9, abs_tol=1e-9), k
        assert math.isclose(acc[3], o.sum_squares, rel_tol=1e-9, abs_tol=1e-9), k


@pytest.mark.parametrize("engine_name", ["duckdb", "spark_parquet"])
def test_period_rows_agree_across_engines(
    period_results: dict[str, list[SufficientStats]], engine_name: str
) -> None:
    pg = {_key(s): s for s in period_results["postgres"]}
    other = {_key(s): s for s in period_results[engine_name]}
    assert set(pg) == set(other)
    assert any(period_index(k[2]) is not None for k in pg)
    for k, a in pg.items():
        b = other[k]
        assert (a.exposed_units, a.units) == (b.exposed_units, b.units), k
        for f in ("sum", "sum_squares", "denominator_sum", "covariate_sum"):
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None) == (y is None), (k, f)
            if x is not None:
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9), (k, f)


def test_incremental_refresh_on_duckdb_gives_the_same_period_rows(
    engines_experiments: dict[str, Experiment], demo_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> None:
    """A reweight between two refreshes adds a period without forcing a full pass."""
    e = engines_experiments[KEY]
    starts = _periods(e)
    warehouse = DuckDBWarehouse(":memory:")
    lake.load_duckdb(warehouse.connection(), *demo_frames)
    sources = extract.default_sources("assignments", "events")
    with warehouse.session() as executor:
        incremental.ensure_state_tables(executor)
        incremental.refresh(
            executor, e, DEMO_AS_OF - timedelta(days=2), sources,
            source_names=("assignments", "events"), periods=starts[:2],
        )  # fmt: skip
    with warehouse.session() as executor:
        stats, info = incremental.refresh(
            executor, e, DEMO_AS_OF, sources,
            source_names=("assignments", "events"), periods=starts,
        )  # fmt: skip
    with warehouse.session() as executor:
        full, _ = extract.analyse_in_warehouse(executor, e, DEMO_AS_OF, sources, periods=starts)
    warehouse.close()
    assert info.mode == "incremental"
    assert {period_index(s.segment) for s in stats} == {None, 1, 2, 3}
    assert _stats_equal(full, stats) == []
