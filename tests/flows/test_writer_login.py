"""Owner migrates, writer runs: every flow and command as a login that is only in abflow_writer.

The schema owner migrates a schema of its own and loads the demo data (raw inputs are written by
applications, never by abflow); then a fresh LOGIN role, member of abflow_writer and nothing
else, runs the analysis flow, a backfill, the promote and rollback flows and the CLI commands.
A schema that is behind stops each of them with the same single line.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.definitions import Experiment
from abflow.settings import Settings, get_settings
from tests.conftest import DEMO_AS_OF, login_engine, repo_root

runner = CliRunner()
KEYS = ["checkout_button", "enrichment_strategy", "followup_timing"]


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
    engine: Engine,
    settings: Settings,
    demo_experiments: list[Experiment],
    demo_frames: tuple[pd.DataFrame, pd.DataFrame],
) -> Iterator[Writer]:
    schema = f"{settings.schema_name}_w"
    _owner_schema(engine, schema, demo_experiments, demo_frames)
    try:
        yield from _writer(engine, settings, schema)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'drop schema "{schema}" cascade')


@pytest.fixture(scope="module")
def behind(engine: Engine, settings: Settings) -> Iterator[Writer]:
    """A schema the owner migrated only up to 004: this abflow needs more."""
    schema = f"{settings.schema_name}_b"
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


def _cli(*args: str) -> Any:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_run_backfill_promote_rollback_and_cli_as_a_writer_only_login(
    writer: Writer, as_login: Any, engine: Engine, tmp_path: Any
) -> None:
    from flows.analyze import analyze_experiments
    from flows.backfill import backfill_experiments
    from flows.promote import promote_flow, rollback_flow

    as_login(writer)
    summaries = analyze_experiments(experiment_keys=KEYS, as_of=DEMO_AS_OF)
    assert {s["experiment_key"]: s["status"] for s in summaries} == dict.fromkeys(KEYS, "succeeded")
    by_key = {s["experiment_key"]: s for s in summaries}
    assert (by_key["checkout_button"]["decision"], by_key["checkout_button"]["variant_key"]) == (
        "ship",
        "green",
    )
    days = backfill_experiments(
        start=date(2026, 11, 18), end=date(2026, 11, 19), experiments=["followup_timing"]
    )
    assert [d["status"] for d in days] == ["succeeded", "succeeded"]
    assert "promoted 'hybrid'" in promote_flow(
        experiment_key="enrichment_strategy", variant_key="hybrid", reason="within budget"
    )
    assert "rolled back" in rollback_flow(experiment_key="enrichment_strategy")

    # the CLI, as the same login
    _cli("experiments", "apply", str(repo_root() / "experiments"))
    assert "checkout_button" in _cli("experiments", "list").output
    _cli("promote", "followup_timing", "delay_5m", "--reason", "ops asked", "--actor", "ana")
    _cli("rollback", "followup_timing")
    out = tmp_path / "report.html"
    _cli("report", "followup_timing", "--out", str(out))
    assert out.stat().st_size > 10_000
    res = runner.invoke(app, ["validate", "-e", "followup_timing"])
    assert res.exit_code in (0, 2), res.output  # 2: a critical check failed (today's data)
    assert "followup_timing:" in res.output

    with engine.connect() as conn:
        audit = conn.execute(
            text(
                f'select experiment_key, action, actor, db_user from "{writer.schema}".promotions'  # noqa: S608
                " order by id"
            )
        ).all()
    assert [tuple(a) for a in audit] == [
        ("checkout_button", "promote", "auto", writer.login),
        ("enrichment_strategy", "promote", "prefect-ui", writer.login),
        ("enrichment_strategy", "rollback", "prefect-ui", writer.login),
        ("followup_timing", "promote", "ana", writer.login),
        ("followup_timing", "rollback", writer.login, writer.login),
    ]


def test_migrate_as_the_writer_is_one_line(writer: Writer, as_login: Any) -> None:
    as_login(writer)
    res = runner.invoke(app, ["migrate"])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    expected = f"error: `abflow migrate` needs the schema owner, not {writer.login}:"
    assert lines[0].startswith(expected), lines[0]


COMMANDS = [
    ["run", "--quiet"],
    ["backfill", "--start", "2026-11-01", "--end", "2026-11-02", "--quiet"],
    ["experiments", "apply", str(repo_root() / "experiments")],
    ["experiments", "list"],
    ["validate"],
    ["report", "checkout_button"],
    ["promote", "checkout_button", "green"],
    ["rollback", "checkout_button"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_schema_behind_stops_every_command_with_one_line(
    behind: Writer, as_login: Any, args: list[str]
) -> None:
    from abflow.warehouse.migrate import required_version

    as_login(behind)
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert lines == [
        f"error: schema {behind.schema} is at migration 4, this abflow needs"
        f" {required_version()}: run `abflow migrate` as the schema owner"
    ], res.output


def test_a_schema_behind_stops_the_flows(behind: Writer, as_login: Any) -> None:
    from abflow.warehouse.migrate import SchemaOutdated
    from flows.analyze import analyze_experiments
    from flows.promote import promote_flow

    as_login(behind)
    with pytest.raises(SchemaOutdated, match="is at migration 4"):
        analyze_experiments(experiment_keys=None, as_of=DEMO_AS_OF)
    with pytest.raises(SchemaOutdated, match="run `abflow migrate` as the schema owner"):
        promote_flow(experiment_key="x", variant_key="y", reason="z")


def test_a_missing_schema_is_at_migration_zero(writer: Writer, as_login: Any) -> None:
    as_login(Writer(url=writer.url, login=writer.login, schema="no_such_schema"))
    res = runner.invoke(app, ["experiments", "list"])
    assert res.exit_code == 1
    assert "error: schema no_such_schema is at migration 0, this abflow needs" in res.output
