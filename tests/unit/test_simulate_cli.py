"""`abflow simulate`: JSON and terminal output, and one-line errors for bad options."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from abflow.cli import app
from tests.conftest import repo_root

runner = CliRunner()
DEFAULT = str(repo_root() / "docs" / "examples" / "default_two_arms.yaml")


def test_simulate_json_reports_both_scenarios_by_day() -> None:
    res = runner.invoke(
        app,
        [
            "simulate",
            DEFAULT,
            "--runs",
            "40",
            "--days",
            "10",
            "--seed",
            "3",
            "--effect",
            "conversion=+30%",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    aa, effect = out["results"]
    assert (aa["scenario"], effect["scenario"]) == ("A/A", "effect")
    assert effect["effects"] == {"conversion": 0.3}
    assert len(aa["ship_by_day"]) == 10 and aa["runs"] == 40
    # cumulative shares never decrease, and a 30% lift at 1,000/arm/day ships most runs
    days = effect["ship_by_day"]
    assert all(b >= a for a, b in zip(days, days[1:], strict=False))
    assert effect["p_ship"] > 0.5 > aa["p_ship"]


def test_simulate_prints_a_table_and_a_chart() -> None:
    res = runner.invoke(app, ["simulate", DEFAULT, "--runs", "20", "--days", "5"])
    assert res.exit_code == 0, res.output
    assert "P(ship)" in res.output and "cumulative share of runs by day" in res.output


def test_simulate_rejects_bad_options_in_one_line() -> None:
    for args, needle in (
        (["--effect", "conversion=lots"], "--effect 'conversion=lots': expected METRIC=VALUE"),
        (["--effect", "revenue=+5%"], "--effect: unknown metric 'revenue'"),
        (["--baseline", "conversion=10%"], "--baseline 'conversion=10%'"),
    ):
        res = runner.invoke(app, ["simulate", DEFAULT, "--runs", "10", *args])
        assert res.exit_code == 1, res.output
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], res.output
    missing = runner.invoke(app, ["simulate", "/nonexistent.yaml"])
    assert missing.exit_code == 1
    assert "/nonexistent.yaml: cannot read file (No such file or directory)" in missing.output
