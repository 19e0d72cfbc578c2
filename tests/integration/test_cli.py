"""The CLI at its doors: apply/list round trip, broken input, unreachable warehouse, plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from abflow.settings import get_settings

runner = CliRunner()


def _definitions(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(
            conn.execute(text("select experiment_key, definition::text from experiments")).all()
        )


def test_apply_and_list_round_trip(cli_env: None, engine: Engine) -> None:
    res = runner.invoke(app, ["experiments", "apply", str(DEMO_EXPERIMENTS_DIR)])
    assert res.exit_code == 0, res.output
    assert "applied checkout_button" in res.output
    res = runner.invoke(app, ["experiments", "list"])
    assert res.exit_code == 0
    for key in ("checkout_button", "followup_timing", "enrichment_strategy"):
        assert key in res.output
    from abflow.definitions import load_experiment_file
    from abflow.warehouse.experiments_repo import get_experiment

    original = load_experiment_file(DEMO_EXPERIMENTS_DIR / "checkout_button.yaml")
    with engine.connect() as conn:
        assert get_experiment(conn, "checkout_button") == original


BROKEN = {
    "malformed.yaml": ("key: x\nvariants: [unclosed", "malformed YAML"),
    "kind.yaml": (None, "metrics[m].kind"),
    "weights.yaml": (None, "weights must sum to 1"),
    "controls.yaml": (None, "exactly one variant must have control"),
    "quote.yaml": (None, "key: must match"),
}


def _yaml(name: str) -> str:
    kind = "median" if name == "kind.yaml" else "proportion"
    weights = (0.5, 0.6) if name == "weights.yaml" else (0.5, 0.5)
    control_b = "true" if name == "controls.yaml" else "false"
    key = "bad'; drop table events; --" if name == "quote.yaml" else "fine_key"
    return (
        f'key: "{key}"\nname: n\nstatus: running\nstart_at: 2026-11-01T00:00:00Z\n'
        f"variants:\n  - {{key: a, weight: {weights[0]}, control: true}}\n"
        f"  - {{key: b, weight: {weights[1]}, control: {control_b}}}\n"
        f"metrics:\n  - {{key: m, kind: {kind}, event: e, role: primary}}\n"
    )


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_definition_is_one_line_and_changes_nothing(
    name: str, cli_env: None, engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "a_good.yaml"
    good.write_text(_yaml("good.yaml").replace("fine_key", "would_be_applied"))
    bad = tmp_path / name
    text_, expected = BROKEN[name]
    bad.write_text(text_ or _yaml(name))
    before = _definitions(engine)
    res = runner.invoke(app, ["experiments", "apply", str(good), str(bad)])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert str(bad.name) in lines[0] and expected in lines[0], lines[0]
    assert _definitions(engine) == before  # all or nothing: the good file was not applied


def test_unreachable_database_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABFLOW_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    try:
        res = runner.invoke(app, ["migrate"])
    finally:
        get_settings.cache_clear()
    assert res.exit_code == 1
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "warehouse unreachable" in lines[0], res.output


def test_plan_matches_the_power_engine() -> None:
    from abflow.stats import sample_size_per_variant

    res = runner.invoke(app, ["plan", "--baseline", "0.1", "--mde", "0.1", "--relative"])
    assert res.exit_code == 0, res.output
    n = sample_size_per_variant(0.1, 0.1, relative=True, sequential=True)
    assert f"{n:,} units per variant" in res.output and "always-valid" in res.output
    fixed = runner.invoke(
        app, ["plan", "--baseline", "0.1", "--mde", "0.1", "--relative", "--fixed-horizon"]
    )
    m = sample_size_per_variant(0.1, 0.1, relative=True)
    assert f"{m:,} units per variant" in fixed.output and m < n
    bad = runner.invoke(app, ["plan", "--baseline", "1.5", "--mde", "0.1"])
    assert bad.exit_code == 1 and "--baseline" in bad.output
