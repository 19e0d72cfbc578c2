"""The same experiments analysed on PostgreSQL, DuckDB (tables and Parquet) and Spark (Parquet).

Sufficient statistics agree to 1e-9 relative, exposure summaries and data-quality outcomes are
equal (Great Expectations on PostgreSQL, the same suites in SQL elsewhere), and the assembled
insights and recommendations are identical.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment
from abflow.pipeline import assemble_result
from abflow.results import CheckOutcome, ExposureSummary, SufficientStats
from abflow.settings import Settings
from abflow.warehouse import extract, sql_checks
from abflow.warehouse.dialects import Source
from abflow.warehouse.engines import PostgresExecutor, open_warehouse
from abflow.warehouse.quality import run_expectations
from tests.conftest import DEMO_AS_OF
from tests.engines.conftest import CC_AS_OF, CC_KEY

KEYS = ["checkout_button", "followup_timing", "enrichment_strategy", CC_KEY]
ENGINES = ["duckdb", "duckdb_parquet", "spark_parquet"]
RUN_ID = uuid.UUID(int=1)

Result = tuple[list[SufficientStats], ExposureSummary, list[CheckOutcome]]


def as_of_for(key: str) -> datetime:
    return CC_AS_OF if key == CC_KEY else DEMO_AS_OF


@pytest.fixture(scope="module")
def results(
    pg_loaded: Engine,
    settings: Settings,
    engines_experiments: dict[str, Experiment],
    duckdb_file: str,
    lake_dir: dict[str, str],
    spark_url: str,
) -> dict[tuple[str, str], Result]:
    """Every experiment on every engine (one pass each), with its data-quality outcomes."""
    tables = extract.default_sources("assignments", "events")
    parquet = {k: Source.parse(v) for k, v in lake_dir.items()}
    out: dict[tuple[str, str], Result] = {}
    timings: dict[str, float] = {}
    for key in KEYS:
        e, as_of = engines_experiments[key], as_of_for(key)
        started = time.perf_counter()
        with pg_loaded.begin() as conn:
            stats, expo = extract.analyse_in_warehouse(PostgresExecutor(conn), e, as_of, tables)
        checks = run_expectations(str(settings.database_url), settings.schema_name, e, as_of)
        assert expo is not None
        out[("postgres", key)] = (stats, expo, checks)
        timings["postgres"] = timings.get("postgres", 0) + time.perf_counter() - started
        for engine_name, url, sources in (
            ("duckdb", duckdb_file, tables),
            ("duckdb_parquet", duckdb_file, parquet),
            ("spark_parquet", spark_url, parquet),
        ):
            started = time.perf_counter()
            with open_warehouse(url).session() as executor:
                stats, expo = extract.analyse_in_warehouse(executor, e, as_of, sources)
                checks = sql_checks.run_sql_checks(executor, e, as_of, sources)
            assert expo is not None
            out[(engine_name, key)] = (stats, expo, checks)
            timings[engine_name] = timings.get(engine_name, 0) + time.perf_counter() - started
    print("seconds per engine for the four experiments:", timings)
    return out


def _flat(row: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A record with a capped metric's nested raw sums as `uncapped.<field>` entries."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _stats_equal(want: list[SufficientStats], got: list[SufficientStats]) -> list[str]:
    problems: list[str] = []
    by_key = {(s.metric_key, s.variant_key, s.segment): s for s in got}
    if set(by_key) != {(s.metric_key, s.variant_key, s.segment) for s in want}:
        return ["different metric x variant x segment rows"]
    for row in want:
        other = _flat(asdict(by_key[(row.metric_key, row.variant_key, row.segment)]))
        for name, a in _flat(asdict(row)).items():
            b = other.get(name)
            if isinstance(a, float) and isinstance(b, float):
                if not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12):
                    problems.append(f"{row.metric_key}/{row.variant_key}/{row.segment} {name}")
            elif a != b:
                problems.append(f"{row.metric_key}/{row.variant_key}/{row.segment} {name}: {a} {b}")
    return problems


def _checks(outcomes: list[CheckOutcome]) -> dict[str, tuple[Any, ...]]:
    return {c.check_name: (c.severity, c.passed, c.observed, c.threshold) for c in outcomes}


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("key", KEYS)
def test_same_sufficient_statistics_and_exposure(
    results: dict[tuple[str, str], Result], key: str, engine_name: str
) -> None:
    want_stats, want_expo, _ = results[("postgres", key)]
    got_stats, got_expo, _ = results[(engine_name, key)]
    assert len(want_stats) > 0
    assert _stats_equal(want_stats, got_stats) == []
    assert got_expo == want_expo


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("key", KEYS)
def test_same_quality_outcomes_as_great_expectations(
    results: dict[tuple[str, str], Result], key: str, engine_name: str
) -> None:
    want = _checks(results[("postgres", key)][2])
    got = _checks(results[(engine_name, key)][2])
    assert got == want


@pytest.mark.parametrize("engine_name", ENGINES)
@pytest.mark.parametrize("key", KEYS)
def test_same_insights_and_recommendation(
    results: dict[tuple[str, str], Result],
    engines_experiments: dict[str, Experiment],
    key: str,
    engine_name: str,
) -> None:
    def assemble(engine: str) -> Any:
        stats, expo, checks = results[(engine, key)]
        as_of = as_of_for(key)
        return assemble_result(
            run_id=RUN_ID,
            experiment=engines_experiments[key],
            as_of=as_of,
            flow_run_id=None,
            started_at=as_of,
            finished_at=as_of,
            stats=stats,
            exposure=expo,
            quality_checks=checks,
        )

    want, got = assemble("postgres"), assemble(engine_name)
    assert got.recommendation.decision == want.recommendation.decision
    assert got.recommendation.variant_key == want.recommendation.variant_key
    assert got.recommendation.rationale == want.recommendation.rationale
    assert got.recommendation.days_remaining == want.recommendation.days_remaining
    assert got.run.status == want.run.status
    assert len(got.insights) == len(want.insights) > 0
    for a, b in zip(want.insights, got.insights, strict=True):
        for name, x in asdict(a).items():
            y = getattr(b, name)
            if (
                isinstance(x, float)
                and isinstance(y, float)
                and not (math.isnan(x) and math.isnan(y))
            ):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12), (a.metric_key, name)
            elif not isinstance(x, float):
                assert x == y, (a.metric_key, name)
