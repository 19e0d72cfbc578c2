"""Shared fixtures: a real embedded PostgreSQL per test session and a throwaway schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from abflow.settings import Settings

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """SQLAlchemy URL of a real PostgreSQL: ABFLOW_TEST_DATABASE_URL or an embedded server."""
    given = os.environ.get("ABFLOW_TEST_DATABASE_URL")
    if given:
        return given
    from abflow.warehouse.engine import embedded_url

    # A short path keeps the unix socket path under its 107-byte limit.
    return embedded_url(tmp_path_factory.mktemp("pg") / "data")


@pytest.fixture(scope="session")
def settings(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Settings for a throwaway schema unique to this test session."""
    return Settings(
        database_url=pg_url,
        ABFLOW_SCHEMA=f"t_{uuid.uuid4().hex[:10]}",
        home=tmp_path_factory.mktemp("home"),
        lock_timeout_seconds=10,
    )


@pytest.fixture(scope="session")
def engine(settings: Settings) -> Iterator[Engine]:
    """Migrated engine on the session schema; the schema is dropped at the end."""
    from sqlalchemy import text

    from abflow.warehouse.engine import make_engine
    from abflow.warehouse.migrate import migrate

    eng = make_engine(settings)
    migrate(eng, settings.schema_name)
    yield eng
    with eng.begin() as conn:
        conn.execute(text(f'drop schema if exists "{settings.schema_name}" cascade'))
    eng.dispose()


def repo_root() -> Path:
    """The project root (for experiments/ and sql/)."""
    return Path(__file__).resolve().parents[1]
