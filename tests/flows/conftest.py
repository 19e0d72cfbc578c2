"""Flow tests run under one session-scoped prefect_test_harness (it takes ~15 s to start)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment
from abflow.settings import Settings, get_settings
from tests.conftest import login_engine


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


def _module(request: pytest.FixtureRequest) -> str:
    """The test module's short name, for schema names of module-scoped fixtures."""
    return str(request.module.__name__).rsplit(".", 1)[-1].removeprefix("test_")[:24]


@dataclass(frozen=True)
class Writer:
    """A writer-only login on a schema of its own."""

    url: str
    login: str
    schema: str


def _owner_schema(
    engine: Engine,
    schema: str,
    experiments: list[Experiment],
    frames: tuple[pd.DataFrame, pd.DataFrame] | None,
    upto: int | None = None,
) -> None:
    """As the owner: migrate `schema` (up to a migration) and load definitions and raw data."""
    from abflow.demo_data import load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments
    from abflow.warehouse.migrate import migrate

    migrate(engine, schema, upto=upto)
    if frames is None:
        return
    with engine.begin() as conn:
        conn.exec_driver_sql(f'set local search_path to "{schema}"')
        upsert_experiments(conn, experiments)
        load_frames(
            conn.connection.dbapi_connection,
            schema,
            *frames,
            replace_experiments=[e.key for e in experiments],
        )


def _writer(engine: Engine, settings: Settings, schema: str) -> Iterator[Writer]:
    scoped = settings.model_copy(update={"schema_name": schema})
    for user_engine in login_engine(engine, scoped, "abflow_writer"):
        yield Writer(
            url=user_engine.url.render_as_string(hide_password=False),
            login=str(user_engine.url.username),
            schema=schema,
        )


@pytest.fixture(scope="module")
def writer(
    request: pytest.FixtureRequest,
    engine: Engine,
    settings: Settings,
    demo_experiments: list[Experiment],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> Iterator[Writer]:
    # one schema per test module (module-scoped fixture)
    schema = f"{settings.schema_name}_w_{_module(request)}"
    _owner_schema(engine, schema, demo_experiments, demo_frames)
    try:
        yield from _writer(engine, settings, schema)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'drop schema "{schema}" cascade')


@pytest.fixture(scope="module")
def behind(request: pytest.FixtureRequest, engine: Engine, settings: Settings) -> Iterator[Writer]:
    """A schema the owner migrated only up to 004: this abflow needs more."""
    schema = f"{settings.schema_name}_b_{_module(request)}"
    _owner_schema(engine, schema, [], None, upto=4)
    try:
        yield from _writer(engine, settings, schema)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'drop schema "{schema}" cascade')


@pytest.fixture()
def as_login(monkeypatch: pytest.MonkeyPatch, prefect_harness: None) -> Iterator[Any]:
    """Point settings (flows and CLI) at a login; the CLI uses the harness's Prefect API."""
    from prefect.settings import PREFECT_API_URL

    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("ABFLOW_LOCK_TIMEOUT_SECONDS", "10")
    monkeypatch.delenv("ABFLOW_PUSHGATEWAY_URL", raising=False)

    def use(w: Writer) -> Settings:
        monkeypatch.setenv("ABFLOW_DATABASE_URL", w.url)
        monkeypatch.setenv("ABFLOW_SCHEMA", w.schema)
        get_settings.cache_clear()
        return get_settings()

    yield use
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def prefect_stack(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    settings: Settings,
    pg_url: str,
) -> Iterator[Any]:
    """One real `prefect server start` and `serve_all()` for the session (prefect_stack.py)."""
    from tests.flows.prefect_stack import start_stack

    yield from start_stack(request, tmp_path_factory, settings, pg_url)
