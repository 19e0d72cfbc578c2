"""The web app logged in as a member of abflow_writer: reads, token checks and every write work
without DDL; applications and BI (abflow_app, abflow_reader) cannot read token hashes or the web
audit, which is append-only for everyone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from abflow.definitions import Experiment
from abflow.settings import Settings
from tests.conftest import login_engine
from tests.web.conftest import DEFINITION_FOR_ROLES, auth, config_row, make_app


@pytest.fixture(scope="module")
def writer_engine(
    web_engine: Engine, web_settings: Settings, web_demo: dict[str, Experiment]
) -> Iterator[Engine]:
    """Connected as a login member of abflow_writer."""
    yield from login_engine(web_engine, web_settings, "abflow_writer")


@pytest.fixture(scope="module", params=["abflow_app", "abflow_reader"])
def other_engine(
    request: pytest.FixtureRequest, web_engine: Engine, web_settings: Settings
) -> Iterator[Engine]:
    """Connected as a login member of abflow_app, then of abflow_reader."""
    yield from login_engine(web_engine, web_settings, request.param)


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
    # The database records who really wrote them: the web app's login (006's trigger).
    login = str(writer_engine.url.username)
    assert {a["db_user"] for a in cfg["audit"]} == {login}


def test_apps_and_bi_cannot_read_token_hashes_or_the_web_audit(other_engine: Engine) -> None:
    for table in ("web_tokens", "web_audit"):
        with other_engine.connect() as conn, pytest.raises(ProgrammingError, match="permission"):
            conn.execute(text(f"select * from {table}"))  # noqa: S608


def test_web_audit_is_append_only_even_for_the_owner(web_engine: Engine) -> None:
    from sqlalchemy.exc import DBAPIError

    for sql in ("update web_audit set detail = 'x'", "delete from web_audit",
                "truncate web_audit"):  # fmt: skip
        with web_engine.begin() as conn:
            conn.execute(
                text("insert into web_audit (token_name, action, outcome) values ('t', 'p', 'ok')")
            )
        with web_engine.begin() as conn, pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(sql))
