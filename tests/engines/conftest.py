"""Engines under test: the session's PostgreSQL, a DuckDB file, Parquet files and Spark local[2].

The same generated data (the three demo experiments) and the public Cookie Cats data are loaded
into each: PostgreSQL tables (the session schema), DuckDB tables (one file), Parquet files read
by DuckDB and by Spark. One SparkSession serves the whole test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment, parse_experiment
from abflow.settings import Settings
from abflow.warehouse import lake

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
COOKIE_CATS = DATASETS / "cookie_cats.csv"
CC_KEY = "eng_cookie_cats"
CC_START = datetime(2026, 1, 5, tzinfo=UTC)
CC_AS_OF = CC_START + timedelta(days=14)


def cookie_experiment() -> Experiment:
    return parse_experiment(
        {
            "key": CC_KEY,
            "name": "Cookie Cats gate",
            "status": "running",
            "start_at": CC_START.isoformat(),
            "variants": [
                {"key": "gate_30", "weight": 0.5, "control": True},
                {"key": "gate_40", "weight": 0.5},
            ],
            "metrics": [
                {
                    "key": "retention_1",
                    "kind": "proportion",
                    "event": "retention_1",
                    "role": "primary",
                },
                {
                    "key": "retention_7",
                    "kind": "proportion",
                    "event": "retention_7",
                    "role": "guardrail",
                },
                {"key": "rounds", "kind": "mean", "event": "game_rounds", "value": "sum"},
            ],
            "analysis": {"test": "z_pooled", "sequential": False},
        }
    )


def _cookie_source() -> pd.DataFrame:
    """The public Cookie Cats file, or (where the shared datasets are absent, e.g. a bare CI
    clone) a seeded stand-in of the same shape: these tests compare engine with engine, so the
    engines still run on every machine."""
    if COOKIE_CATS.is_file():
        return pd.read_csv(COOKIE_CATS)
    rng = np.random.default_rng(7)
    n = 20_000
    return pd.DataFrame(
        {
            "userid": np.arange(n) + 116,
            "version": np.where(rng.random(n) < 0.5, "gate_30", "gate_40"),
            "sum_gamerounds": rng.poisson(50, n),
            "retention_1": rng.random(n) < 0.45,
            "retention_7": rng.random(n) < 0.19,
        }
    )


def cookie_frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Installs every 5 s in userid order; retention events 1 and 7 days later; game rounds."""
    frame = _cookie_source().sort_values("userid", ignore_index=True)
    installed = pd.Timestamp(CC_START) + pd.to_timedelta(np.arange(1, len(frame) + 1) * 5, "s")
    units = ("eng_cc_" + frame["userid"].astype(str)).to_numpy()
    assignments = pd.DataFrame(
        {
            "experiment_key": CC_KEY,
            "unit_id": units,
            "variant_key": frame["version"].to_numpy(),
            "assigned_at": installed,
            "attributes": [None] * len(frame),
        }
    )
    parts = []
    for column, days in (("retention_1", 1), ("retention_7", 7)):
        kept = frame[column].to_numpy()
        parts.append(
            pd.DataFrame(
                {
                    "unit_id": units[kept],
                    "event_name": column,
                    "value": np.nan,
                    "occurred_at": installed[kept] + pd.Timedelta(days=days),
                    "properties": [None] * int(kept.sum()),
                }
            )
        )
    parts.append(
        pd.DataFrame(
            {
                "unit_id": units,
                "event_name": "game_rounds",
                "value": frame["sum_gamerounds"].astype(float).to_numpy(),
                "occurred_at": installed + pd.Timedelta(hours=12),
                "properties": [None] * len(frame),
            }
        )
    )
    return assignments, pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="session")
def all_frames(
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Demo data plus Cookie Cats: the rows every engine gets."""
    ca, ce = cookie_frames()
    a, e = demo_frames
    return pd.concat([a, ca], ignore_index=True), pd.concat([e, ce], ignore_index=True)


@pytest.fixture(scope="session")
def engines_experiments(demo_experiments: list[Experiment]) -> dict[str, Experiment]:
    by_key = {e.key: e for e in demo_experiments}
    # the demo's checkout_button has a unit-level p90; add a p95 over all page loads (several
    # per unit: the clustered moments) so both quantile levels are compared across engines
    checkout = by_key["checkout_button"].model_dump()
    checkout["metrics"] = [
        *checkout["metrics"],
        {"key": "latency_events_p95", "kind": "quantile", "quantile": 0.95,
         "event": "page_load", "level": "event", "direction": "decrease"},
    ]
    by_key["checkout_button"] = parse_experiment(checkout)
    return {**by_key, CC_KEY: cookie_experiment()}


@pytest.fixture(scope="session")
def pg_loaded(
    engine: Engine,
    settings: Settings,
    demo_loaded: dict[str, Any],
    engines_experiments: dict[str, Experiment],
) -> Engine:
    """The session schema with the demo data (demo_loaded) and Cookie Cats added."""
    from abflow.demo_data import load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments

    ca, ce = cookie_frames()
    with engine.begin() as conn:
        upsert_experiments(conn, [engines_experiments[CC_KEY]])
        load_frames(
            conn.connection.dbapi_connection,
            settings.schema_name,
            ca,
            ce,
            replace_experiments=[CC_KEY],
        )
        conn.exec_driver_sql("analyze assignments")
        conn.exec_driver_sql("analyze events")
    return engine


@pytest.fixture(scope="session")
def lake_dir(
    tmp_path_factory: pytest.TempPathFactory, all_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> dict[str, str]:
    """Parquet files of the same rows; the two `parquet:` source settings."""
    return lake.write_demo_parquet(tmp_path_factory.mktemp("lake"), *all_frames)


@pytest.fixture(scope="session")
def duckdb_file(
    tmp_path_factory: pytest.TempPathFactory, all_frames: tuple[pd.DataFrame, pd.DataFrame]
) -> Iterator[str]:
    """A DuckDB file with the same rows as tables; its `duckdb:///` URL."""
    import duckdb

    path = tmp_path_factory.mktemp("duck") / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    lake.load_duckdb(con, *all_frames)
    con.close()
    yield f"duckdb:///{path}"
    from abflow.warehouse.engines import close_all

    close_all()


@pytest.fixture(scope="session")
def spark_url() -> Iterator[str]:
    """One local SparkSession (local[2]) for the whole test session."""
    pytest.importorskip("pyspark")
    import shutil

    if shutil.which("java") is None:
        pytest.fail("java is missing: .ci/run installs openjdk-17-jre-headless")
    from abflow.warehouse.engines import spark_session

    url = "spark://local[2]"
    spark = spark_session(url)
    yield url
    spark.stop()
