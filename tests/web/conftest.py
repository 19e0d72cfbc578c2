"""Web tests: their own schema with the demo analysed daily, tokens, and the app.

The web tests change configs (promote, rollback, stop, archive), so they get a schema of their
own instead of the session schema the integration tests read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from abflow.definitions import Experiment
from abflow.settings import Settings
from abflow.warehouse import writer
from abflow.warehouse.promotion import apply_run_outcome
from abflow.web.config import WebSettings
from abflow.web.runs import RunLauncher
from tests.conftest import DEMO_AS_OF, analyse

# checkout_button is also analysed these many days before DEMO_AS_OF, so its report's lift charts
# have a series (the others have the DEMO_AS_OF run only).
HISTORY_DAYS = (6, 3)


@pytest.fixture(scope="session")
def web_settings(settings: Settings) -> Settings:
    """The session's settings on a schema of the web tests' own."""
    return settings.model_copy(update={"schema_name": f"w_{uuid.uuid4().hex[:10]}"})


@pytest.fixture(scope="session")
def web_engine(web_settings: Settings) -> Iterator[Engine]:
    """Migrated engine on the web schema, dropped at the end."""
    from abflow.warehouse.engine import make_engine
    from abflow.warehouse.migrate import migrate

    eng = make_engine(web_settings)
    migrate(eng, web_settings.schema_name)
    yield eng
    with eng.begin() as conn:
        conn.execute(text(f'drop schema if exists "{web_settings.schema_name}" cascade'))
    eng.dispose()


def write_run(engine: Engine, experiment: Experiment, result: Any) -> str | None:
    """What abflow.tasks.warehouse.write_results does, without Prefect."""
    with engine.begin() as conn:
        writer.lock_experiment(conn, experiment.key, 10)
        writer.write_result(conn, result)
        return apply_run_outcome(conn, experiment, result)


@pytest.fixture(scope="session")
def web_demo(
    web_engine: Engine,
    web_settings: Settings,
    demo_experiments: list[Experiment],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> dict[str, Experiment]:
    """The demo loaded and analysed once a day up to DEMO_AS_OF (checkout_button auto-ships)."""
    from abflow.demo_data import load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments

    assignments, events = demo_frames
    with web_engine.begin() as conn:
        upsert_experiments(conn, demo_experiments)
        load_frames(
            conn.connection.dbapi_connection,
            web_settings.schema_name,
            assignments,
            events,
            replace_experiments=[e.key for e in demo_experiments],
        )
        conn.exec_driver_sql("analyze assignments")
        conn.exec_driver_sql("analyze events")
    checkout = next(e for e in demo_experiments if e.key == "checkout_button")
    for days in HISTORY_DAYS:
        as_of = DEMO_AS_OF - timedelta(days=days)
        write_run(web_engine, checkout, analyse(web_engine, checkout, as_of=as_of))
    for e in demo_experiments:
        write_run(web_engine, e, analyse(web_engine, e))
    return {e.key: e for e in demo_experiments}


@pytest.fixture(scope="session")
def tokens(web_engine: Engine, web_demo: dict[str, Experiment]) -> dict[str, str]:
    """A write token ('alice') and a read token ('bob-reader')."""
    from abflow.warehouse.web_tokens import create_token

    with web_engine.begin() as conn:
        return {
            "write": create_token(conn, "alice", "write"),
            "read": create_token(conn, "bob-reader", "read"),
        }


class FakeLauncher(RunLauncher):
    """In-process runs that only record what they were asked to analyse."""

    def __init__(self) -> None:
        self.analysed: list[str] = []
        super().__init__(
            "analyze-experiments/analyze",
            analyze=lambda key: self.analysed.append(key) or [{"experiment_key": key}],
            server_url=lambda: None,
        )


def make_app(
    settings: Settings, engine: Engine, *, public_read: bool = False, **launcher: Any
) -> FastAPI:
    """The app on the web schema; caches short so tests see their own changes."""
    from abflow.web.app import create_app

    web = WebSettings(
        public_read=public_read, secret_key="test-secret", auth_cache_seconds=0,
        config_ttl_seconds=0,
    )  # fmt: skip
    return create_app(settings, web, engine=engine, launcher=launcher.get("runs") or FakeLauncher())


@pytest.fixture(scope="module")
def app(web_settings: Settings, web_engine: Engine, web_demo: dict[str, Experiment]) -> FastAPI:
    """The app (reads need a token)."""
    return make_app(web_settings, web_engine)


@pytest.fixture()
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client of the app (no cookies kept between tests)."""
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(token: str) -> dict[str, str]:
    """The Authorization header of a token."""
    return {"Authorization": f"Bearer {token}"}


def config_row(engine: Engine, key: str) -> dict[str, Any]:
    """experiment_config and the promotions rows of an experiment."""
    with engine.connect() as conn:
        row = dict(
            conn.execute(
                text("select * from experiment_config where experiment_key = :k"), {"k": key}
            )
            .mappings()
            .one()
        )
        row["audit"] = [
            dict(r)
            for r in conn.execute(
                text("select * from promotions where experiment_key = :k order by id"), {"k": key}
            ).mappings()
        ]
    return row


DEFINITION_FOR_ROLES: dict[str, Any] = {
    "key": "web_writer_login",
    "name": "Created by the writer login",
    "status": "running",
    "start_at": "2026-11-01T00:00:00Z",
    "variants": [
        {"key": "control", "weight": 0.5, "control": True},
        {"key": "b", "weight": 0.5},
    ],
    "metrics": [{"key": "conv", "kind": "proportion", "event": "web_buy", "role": "primary"}],
}
