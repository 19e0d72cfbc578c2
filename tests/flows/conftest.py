"""Flow tests run under one session-scoped prefect_test_harness (it takes ~15 s to start)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API for the whole session, heartbeats off, private result storage."""
    os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(tmp_path_factory.mktemp("prefect-storage"))
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with (
        prefect_test_harness(server_startup_timeout=180),
        temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture()
def abflow_env(monkeypatch: pytest.MonkeyPatch, settings, engine):  # type: ignore[no-untyped-def]
    """Point get_settings() at the test schema for code that loads settings itself (flows)."""
    from abflow.settings import get_settings

    monkeypatch.setenv("ABFLOW_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ABFLOW_SCHEMA", settings.schema_name)
    monkeypatch.setenv("ABFLOW_LOCK_TIMEOUT_SECONDS", "10")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    settings,  # type: ignore[no-untyped-def]
    pg_url: str,
):  # type: ignore[no-untyped-def]
    """One real `prefect server start` and `serve_all()` for the session (prefect_stack.py)."""
    from tests.flows.prefect_stack import start_stack

    yield from start_stack(request, tmp_path_factory, settings, pg_url)
