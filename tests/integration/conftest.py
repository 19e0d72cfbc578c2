"""Integration fixtures: demo data loaded once per session into the throwaway schema."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment, load_experiment_files
from abflow.settings import Settings
from tests.conftest import repo_root

DEMO_AS_OF = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture(scope="session")
def demo_experiments() -> list[Experiment]:
    """The demo experiment definitions from experiments/."""
    return load_experiment_files([repo_root() / "experiments"])


@pytest.fixture(scope="session")
def demo_frames(demo_experiments: list[Experiment]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generated demo assignments and events (fixed seed)."""
    from abflow.demo_data import generate_demo_data

    return generate_demo_data(demo_experiments, as_of=DEMO_AS_OF)


@pytest.fixture(scope="session")
def demo_loaded(
    engine: Engine, settings: Settings, demo_experiments: list[Experiment],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, Any]:
    """Demo definitions and data loaded with COPY into the session schema."""
    from abflow.demo_data import load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments

    assignments, events = demo_frames
    with engine.begin() as conn:
        upsert_experiments(conn, demo_experiments)
        counts = load_frames(
            conn.connection.dbapi_connection, settings.schema_name, assignments, events,
            replace_experiments=[e.key for e in demo_experiments],
        )
        conn.exec_driver_sql("analyze assignments")
        conn.exec_driver_sql("analyze events")
    return {"counts": counts, "experiments": {e.key: e for e in demo_experiments}}
