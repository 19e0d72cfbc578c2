"""Shared fixtures: a real embedded PostgreSQL per test session and a throwaway schema."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine

from abflow.definitions import Experiment, load_experiment_files
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from abflow.settings import Settings

DEMO_AS_OF = datetime(2026, 11, 21, tzinfo=UTC)

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# `abflow` subprocesses of the tests start a temporary Prefect server per run, never one that
# outlives the test (tests/flows/test_kept_server.py turns keeping on where it is the subject).
os.environ.setdefault("ABFLOW_PREFECT_SERVER_IDLE_MINUTES", "0")


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


def login_engine(
    engine: Engine, settings: Settings, group: str | None, *, schema_usage: bool = False
) -> Iterator[Engine]:
    """A throwaway LOGIN role (member of `group` only) and an engine connected as it.

    The role is dropped afterwards. Its URL (password included) is
    `user_engine.url.render_as_string(hide_password=False)`.
    """
    import secrets

    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    name = f"t_{group or 'nobody'}_{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(16)  # ignored under trust auth, needed elsewhere
    membership = f" in role {group}" if group else ""
    with engine.begin() as conn:
        conn.execute(text(f"create role {name} login password '{password}'{membership}"))
        if schema_usage:
            conn.execute(text(f'grant usage on schema "{settings.schema_name}" to {name}'))
    url = make_url(engine.url.render_as_string(hide_password=False)).set(
        username=name, password=password
    )
    user_engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"options": f"-c search_path={settings.schema_name}"},
    )
    try:
        yield user_engine
    finally:
        user_engine.dispose()
        with engine.begin() as conn:
            # drop owned also revokes what was granted to the role, which drop role requires.
            conn.execute(text(f"drop owned by {name}"))
            conn.execute(text(f"drop role {name}"))


def repo_root() -> Path:
    """The project root (prefect.yaml, dashboards/, docs/)."""
    return Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_experiments() -> list[Experiment]:
    """The demo experiment definitions shipped in the package (abflow/experiments)."""
    return load_experiment_files([DEMO_EXPERIMENTS_DIR])


@pytest.fixture(scope="session")
def demo_frames(demo_experiments: list[Experiment]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generated demo assignments and events (fixed seed)."""
    from abflow.demo_data import generate_demo_data

    return generate_demo_data(demo_experiments, as_of=DEMO_AS_OF)


@pytest.fixture(scope="session")
def demo_loaded(
    engine: Engine,
    settings: Settings,
    demo_experiments: list[Experiment],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, Any]:
    """Demo definitions and data loaded with COPY into the session schema."""
    from abflow.demo_data import load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments

    assignments, events = demo_frames
    with engine.begin() as conn:
        upsert_experiments(conn, demo_experiments)
        counts = load_frames(
            conn.connection.dbapi_connection,
            settings.schema_name,
            assignments,
            events,
            replace_experiments=[e.key for e in demo_experiments],
        )
        conn.exec_driver_sql("analyze assignments")
        conn.exec_driver_sql("analyze events")
    return {"counts": counts, "experiments": {e.key: e for e in demo_experiments}}


def analyse(
    engine: Engine,
    experiment: Experiment,
    *,
    as_of: datetime = DEMO_AS_OF,
    checks: list[Any] | None = None,
    run_id: uuid.UUID | None = None,
) -> Any:
    """Extraction in one transaction, then the pure assembly (what the flow's tasks do)."""
    from abflow.pipeline import assemble_result
    from abflow.warehouse import extract

    with engine.begin() as conn:
        stats = extract.fetch_sufficient_stats(
            conn, experiment, as_of, assignments="assignments", events="events"
        )
        expo = extract.fetch_exposure_summary(conn, experiment, as_of, assignments="assignments")
    return assemble_result(
        run_id=run_id or uuid.uuid4(),
        experiment=experiment,
        as_of=as_of,
        flow_run_id=None,
        started_at=as_of,
        finished_at=as_of,
        stats=stats,
        exposure=expo,
        quality_checks=checks or [],
    )


def copy_experiment(engine: Engine, source: Experiment, key: str) -> Experiment:
    """`source` under a new key with a copy of its exposures: same data and decisions, own config.

    Promotion tests change experiment_config and write runs at other as_of instants; a copy keeps
    that away from the demo experiments other tests read.
    """
    from sqlalchemy import text

    from abflow.definitions import parse_experiment
    from abflow.warehouse.experiments_repo import upsert_experiments

    copy = parse_experiment({**source.model_dump(mode="json"), "key": key})
    with engine.begin() as conn:
        upsert_experiments(conn, [copy])
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at,"
                " attributes) select :k, unit_id, variant_key, assigned_at, attributes"
                " from assignments where experiment_key = :src"
            ),
            {"k": key, "src": source.key},
        )
    return copy


# --- one Prefect server per test session, also under `pytest -n 2` ------------------------------

# Modules sharing the session-scoped real `prefect server` (tests/flows/prefect_stack.py): xdist
# must run them on one worker, or each worker starts its own server (~20-60 s of 2 cores each).
# `xdist_group` + `--dist loadgroup` would say that, but with pytest 9.2 xdist's nodeid suffix no
# longer takes effect (pytest-dev/pytest-xdist#1386), so the grouping is done here instead.
ONE_WORKER_MODULES = ("tests/flows/test_prefect_server.py", "tests/flows/test_alerts_server.py")


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist load`/`loadgroup`: like load, but the ONE_WORKER_MODULES form one work unit."""
    if config.getvalue("dist") not in ("load", "loadgroup"):
        return None
    from xdist.scheduler import LoadGroupScheduling

    class OneServerScheduling(LoadGroupScheduling):
        def _split_scope(self, nodeid: str) -> str:
            if nodeid.split("::", 1)[0] in ONE_WORKER_MODULES:
                return "prefect-server"
            return super()._split_scope(nodeid)

    return OneServerScheduling(config, log)
