"""Owner migrates, writer runs: every flow and command as a login that is only in abflow_writer.

The schema owner migrates a schema of its own and loads the demo data (raw inputs are written by
applications, never by abflow); then a fresh LOGIN role, member of abflow_writer and nothing
else, runs the analysis flow, a backfill, the promote and rollback flows and the CLI commands.
A schema that is behind stops each of them with the same single line.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from tests.conftest import DEMO_AS_OF
from tests.flows.conftest import Writer

runner = CliRunner()
KEYS = ["checkout_button", "enrichment_strategy", "followup_timing"]


def _cli(*args: str) -> Any:
    res = runner.invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def test_run_backfill_promote_rollback_and_cli_as_a_writer_only_login(
    writer: Writer, as_login: Any, engine: Engine, tmp_path: Any
) -> None:
    from abflow.flows.analyze import analyze_experiments
    from abflow.flows.backfill import backfill_experiments
    from abflow.flows.promote import promote_flow, rollback_flow

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
    _cli("experiments", "apply", str(DEMO_EXPERIMENTS_DIR))
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
    ["experiments", "apply", str(DEMO_EXPERIMENTS_DIR)],
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
    from abflow.flows.analyze import analyze_experiments
    from abflow.flows.promote import promote_flow
    from abflow.warehouse.migrate import SchemaOutdated

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


def test_a_reader_login_reads_and_is_refused_writes_in_one_line(
    writer: Writer, as_login: Any, engine: Engine, settings: Any
) -> None:
    from tests.conftest import login_engine

    scoped = settings.model_copy(update={"schema_name": writer.schema})
    for reader in login_engine(engine, scoped, "abflow_reader"):
        as_login(
            Writer(
                url=reader.url.render_as_string(hide_password=False),
                login=str(reader.url.username),
                schema=writer.schema,
            )
        )
        assert "followup_timing" in _cli("experiments", "list").output
        for args, expected in (
            (["promote", "followup_timing", "delay_5m"], "permission denied for table"),
            (["experiments", "apply", str(DEMO_EXPERIMENTS_DIR)], "permission denied"),
            (["migrate"], "`abflow migrate` needs the schema owner"),
        ):
            res = runner.invoke(app, args)
            lines = res.output.strip().splitlines()
            assert res.exit_code == 1 and len(lines) == 1 and expected in lines[0], res.output
