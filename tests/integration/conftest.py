"""Integration tests share the session fixtures of tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from abflow.settings import Settings, get_settings
from tests.conftest import DEMO_AS_OF

__all__ = ["DEMO_AS_OF"]


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, engine: Engine) -> Iterator[None]:
    """Point the CLI (get_settings from the environment) at the migrated test schema."""
    monkeypatch.setenv("ABFLOW_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("ABFLOW_SCHEMA", settings.schema_name)
    monkeypatch.setenv("ABFLOW_LOCK_TIMEOUT_SECONDS", "10")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
