"""`abflow token create|list|revoke` and `abflow web`'s checks, through the real CLI."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.settings import Settings, get_settings
from abflow.warehouse.web_tokens import hash_token

runner = CliRunner()


@pytest.fixture()
def web_env(
    monkeypatch: pytest.MonkeyPatch, web_settings: Settings, web_engine: Engine
) -> Iterator[None]:
    """The CLI pointed at the web tests' schema."""
    monkeypatch.setenv("ABFLOW_DATABASE_URL", str(web_settings.database_url))
    monkeypatch.setenv("ABFLOW_SCHEMA", web_settings.schema_name)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_token_lifecycle(web_env: None, web_engine: Engine) -> None:
    name = f"ci-{uuid.uuid4().hex[:6]}"
    r = runner.invoke(app, ["token", "create", name, "--scope", "write"])
    assert r.exit_code == 0, r.output
    token = r.stdout.strip()
    assert re.fullmatch(r"abf_[A-Za-z0-9_-]{43}", token)
    with web_engine.connect() as conn:
        row = conn.execute(
            text("select scope, token_hash from web_tokens where name = :n"), {"n": name}
        ).one()
    assert tuple(row) == ("write", hash_token(token))

    again = runner.invoke(app, ["token", "create", name])
    assert again.exit_code == 1
    assert again.output.strip().splitlines() == [
        f"error: a live token named '{name}' exists; revoke it first (`abflow token revoke {name}`)"
    ]
    listed = runner.invoke(app, ["token", "list"])
    assert listed.exit_code == 0 and name in listed.output and token[:8] in listed.output
    assert token not in listed.output and row.token_hash not in listed.output

    assert runner.invoke(app, ["token", "revoke", name]).exit_code == 0
    gone = runner.invoke(app, ["token", "revoke", name])
    assert gone.exit_code == 1 and f"no live token named '{name}'" in gone.output
    assert name not in runner.invoke(app, ["token", "list"]).output
    assert name in runner.invoke(app, ["token", "list", "--all"]).output
    # The name is free again after a revocation.
    assert runner.invoke(app, ["token", "create", name]).exit_code == 0


def test_bad_names_and_scopes_are_one_line(web_env: None) -> None:
    r = runner.invoke(app, ["token", "create", "[bold]x y"])
    assert r.exit_code == 1 and r.output.startswith("error: token name '[bold]x y'")
    r = runner.invoke(app, ["token", "create", "ok", "--scope", "admin"])
    assert r.exit_code == 2 and "admin" in r.output


def test_unmigrated_schema_is_refused(
    monkeypatch: pytest.MonkeyPatch, web_settings: Settings, web_engine: Engine
) -> None:
    monkeypatch.setenv("ABFLOW_DATABASE_URL", str(web_settings.database_url))
    monkeypatch.setenv("ABFLOW_SCHEMA", "never_migrated")
    get_settings.cache_clear()
    try:
        for args in (["token", "list"], ["web", "--port", "1"]):
            r = runner.invoke(app, args)
            assert r.exit_code == 1
            assert "schema never_migrated is at migration 0" in r.output
            assert "run `abflow migrate` as the schema owner" in r.output
    finally:
        get_settings.cache_clear()
