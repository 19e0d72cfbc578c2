"""The web app logged in as a member of abflow_writer: reads, token checks and every write work
without DDL; applications (abflow_app) cannot read token hashes or the web audit."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from abflow.definitions import Experiment
from abflow.settings import Settings
from tests.web.conftest import DEFINITION_FOR_ROLES, auth, config_row, make_app


def _login(engine: Engine, settings: Settings, group: str) -> Iterator[Engine]:
    name = f"t_web_{group}_{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(16)
    with engine.begin() as conn:
        conn.execute(text(f"create role {name} login password '{password}' in role {group}"))
    url = make_url(engine.url.render_as_string(hide_password=False)).set(
        username=name, password=password
    )
    user_engine = create_engine(
        url, poolclass=NullPool,
        connect_args={"options": f"-c search_path={settings.schema_name}"},
    )  # fmt: skip
    try:
        yield user_engine
    finally:
        user_engine.dispose()
        with engine.begin() as conn:
            conn.execute(text(f"drop owned by {name}"))
            conn.execute(text(f"drop role {name}"))


@pytest.fixture(scope="module")
def writer_engine(
    web_engine: Engine, web_settings: Settings, web_demo: dict[str, Experiment]
) -> Iterator[Engine]:
    """Connected as a login member of abflow_writer."""
    yield from _login(web_engine, web_settings, "abflow_writer")


@pytest.fixture(scope="module")
def app_engine(web_engine: Engine, web_settings: Settings) -> Iterator[Engine]:
    """Connected as a login member of abflow_app."""
    yield from _login(web_engine, web_settings, "abflow_app")


def test_the_web_app_runs_as_a_writer_login(
    writer_engine: Engine, web_engine: Engine, web_settings: Settings, tokens: dict[str, str]
) -> None:
    with writer_engine.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
        conn.execute(text("create table web_ddl_probe (x int)"))  # no DDL for this login
    app = make_app(web_settings, writer_engine)
    h = auth(tokens["write"])
    with TestClient(app) as c:
        assert c.get("/api/experiments", headers=h).status_code == 200
        assert c.get("/api/experiments/checkout_button", headers=h).status_code == 200
        assert c.get("/api/assign/checkout_button/u1", headers=h).status_code == 200
        r = c.post("/api/experiments", json=DEFINITION_FOR_ROLES, headers=h)
        assert r.status_code == 201, r.text
        key = DEFINITION_FOR_ROLES["key"]
        for path, body in (
            ("status", {"status": "stopped"}), ("status", {"status": "running"}),
        ):  # fmt: skip
            assert c.post(f"/api/experiments/{key}/{path}", json=body, headers=h).status_code == 200
        r = c.post(
            f"/api/experiments/{key}/promote",
            json={"variant": "b", "reason": "writer login", "force": True}, headers=h,
        )  # fmt: skip
        assert r.status_code == 200, r.text
        assert c.post(f"/api/experiments/{key}/rollback", headers=h).status_code == 200
        assert c.post(f"/api/experiments/{key}/unpin", headers=h).status_code == 200
        assert c.delete(f"/api/experiments/{key}", headers=h).status_code == 200
        # The browser side too: sign-in reads the tokens table, the page reads everything shown.
        page = c.get("/login")
        assert page.status_code == 200
    cfg = config_row(web_engine, key)
    assert [(a["action"], a["actor"]) for a in cfg["audit"]] == [
        ("promote", "alice"), ("rollback", "alice"), ("unpin", "alice"),
    ]  # fmt: skip


def test_apps_cannot_read_token_hashes_or_the_web_audit(app_engine: Engine) -> None:
    for table in ("web_tokens", "web_audit"):
        with app_engine.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
            conn.execute(text(f"select * from {table}"))  # noqa: S608
