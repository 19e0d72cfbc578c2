"""Bad input at the CLI's doors, as a careless operator types it: one clean line, nothing lost.

Non-finite YAML numbers, duplicate YAML keys, Rich markup in names and keys, `postgres://` URLs,
malformed settings and URLs carrying passwords.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from abflow.cli import app
from abflow.settings import Settings, get_settings

runner = CliRunner()
SECRET = "S3cretPassw0rd"


@pytest.fixture()
def cli_env(monkeypatch: pytest.MonkeyPatch, settings: Settings, engine: Engine) -> Iterator[Any]:
    """CLI settings on the session schema; `env(NAME=value)` overrides variables."""
    monkeypatch.setenv("ABFLOW_DATABASE_URL", str(settings.database_url))
    monkeypatch.setenv("ABFLOW_SCHEMA", settings.schema_name)

    def env(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    get_settings.cache_clear()
    yield env
    get_settings.cache_clear()


def _one_line(res: Any, exit_code: int = 1) -> str:
    """The single line a failed command printed."""
    assert res.exit_code == exit_code, res.output
    lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, res.output
    assert "Traceback" not in res.output
    return str(lines[0])


def _definition(key: str, name: str = "n", metric_extra: str = "", extra: str = "") -> str:
    return (
        f"key: {key}\nname: {name}\nstatus: running\nstart_at: 2026-11-01T00:00:00Z\n"
        "variants:\n  - {key: a, weight: 0.5, control: true}\n  - {key: b, weight: 0.5}\n"
        f"metrics:\n  - {{key: m, kind: proportion, event: e, role: primary{metric_extra}}}\n"
        "  - {key: cost, kind: mean, event: c, role: constraint, max: 0.1}\n" + extra
    )


def _stored(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                text("select count(*) from experiments where experiment_key = :k"), {"k": key}
            ).scalar_one()
        )


# --- YAML --------------------------------------------------------------------------------------

NON_FINITE = {
    "window_hours_inf": (", window_hours: .inf", "", "metrics[m].window_hours"),
    "max_nan": ("", "", "metrics[cost].max"),
    "min_runtime_inf": ("", "decision: {min_runtime_days: .inf}\n", "decision.min_runtime_days"),
    "weight_nan": ("", "", "variants[a].weight"),
    "config_inf": ("", "", "variants[a].config"),
}


@pytest.mark.parametrize("case", sorted(NON_FINITE))
def test_non_finite_yaml_numbers_are_one_line_and_store_nothing(
    case: str, cli_env: Any, engine: Engine, tmp_path: Path
) -> None:
    metric_extra, extra, field = NON_FINITE[case]
    body = _definition(f"bi_{case}", metric_extra=metric_extra, extra=extra)
    if case == "max_nan":
        body = body.replace("max: 0.1", "max: .nan")
    if case == "weight_nan":
        body = body.replace("{key: a, weight: 0.5", "{key: a, weight: .nan")
    if case == "config_inf":
        body = body.replace("control: true}", "control: true, config: {limit: -.inf}}")
    path = tmp_path / f"{case}.yaml"
    path.write_text(body)
    line = _one_line(runner.invoke(app, ["experiments", "apply", str(path)]))
    assert line.startswith(f"error: {path}: {field}:"), line
    assert "finite number" in line
    assert _stored(engine, f"bi_{case}") == 0


def test_duplicate_yaml_keys_are_one_line(cli_env: Any, engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(_definition("bi_dup") + "status: draft\n")
    line = _one_line(runner.invoke(app, ["experiments", "apply", str(path)]))
    assert line == (
        f"error: {path}: line 11: malformed YAML: duplicate key 'status' (first on line 3)"
    )
    assert _stored(engine, "bi_dup") == 0


def test_duplicate_keys_in_a_nested_mapping_are_refused_too(cli_env: Any, tmp_path: Path) -> None:
    path = tmp_path / "nested.yaml"
    path.write_text(_definition("bi_nested", metric_extra=", role: secondary"))
    line = _one_line(runner.invoke(app, ["experiments", "apply", str(path)]))
    assert "duplicate key 'role'" in line


# --- Rich markup -------------------------------------------------------------------------------


def test_markup_in_a_name_is_shown_not_parsed(cli_env: Any, engine: Engine, tmp_path: Path) -> None:
    """`Checkout [/bold] test` used to crash `experiments list` for everyone (MarkupError)."""
    path = tmp_path / "markup.yaml"
    path.write_text(_definition("bi_markup", name='"[/bold] [red]"'))
    res = runner.invoke(app, ["experiments", "apply", str(path)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["experiments", "list"])
    assert res.exit_code == 0, res.output
    assert "[/bold] [red]" in res.output


def test_validate_keeps_its_severity_labels(cli_env: Any, tmp_path: Path) -> None:
    """`[critical]`/`[warning]` used to vanish, read as markup tags."""
    path = tmp_path / "empty.yaml"
    path.write_text(_definition("bi_no_data"))
    assert runner.invoke(app, ["experiments", "apply", str(path)]).exit_code == 0
    res = runner.invoke(app, ["validate", "-e", "bi_no_data"])
    assert res.exit_code == 2, res.output  # a critical check failed
    assert "  [critical] gx_assignments_window_not_empty" in res.output
    assert "  [warning] " in res.output


def test_markup_in_arguments_and_errors_is_printed_as_typed(cli_env: Any) -> None:
    line = _one_line(runner.invoke(app, ["promote", "[bold]nope[/", "[red]"]))
    assert line.startswith("error: experiment '[bold]nope[/' is not defined"), line


def test_a_panel_shows_warehouse_strings_verbatim() -> None:
    """Variant keys, check samples and messages from the warehouse never become markup."""
    from datetime import UTC, datetime

    from rich.console import Console

    from abflow.console import experiment_panel

    run = {
        "experiment_key": "bi[/]",
        "as_of": datetime(2026, 11, 21, tzinfo=UTC),
        "status": "unhealthy",
        "excluded_units": 0,
    }
    res = {
        "run": run,
        "recommendation": {"decision": "investigate", "variant_key": None, "rationale": "[/b]"},
        "insights": [],
        "units": {"[bold]a": 3},
        "checks": [
            {
                "check_name": "unknown_variants",
                "severity": "critical",
                "passed": False,
                "observed": 1.0,
                "details": {"sample": ["[/red]<script>"]},
            }
        ],
        "config": None,
    }
    out = Console(record=True, width=200)  # markup on: Text must protect the strings itself
    out.print(experiment_panel(res))
    shown = out.export_text()
    for raw in ("bi[/]", "[bold]a: 3", '["[/red]<script>"]', "[/b]", "[critical] unknown_variants"):
        assert raw in shown
    failed = {**res, "run": {**run, "status": "failed", "message": "KeyError: [/x]"}, "checks": []}
    out.print(experiment_panel(failed))
    assert "health: not evaluated, the run failed: KeyError: [/x]" in out.export_text()


# --- URLs and settings -------------------------------------------------------------------------


def test_postgres_scheme_is_accepted(cli_env: Any, settings: Settings) -> None:
    url = str(settings.database_url).replace("postgresql+psycopg://", "postgres://", 1)
    cli_env(ABFLOW_DATABASE_URL=url)
    res = runner.invoke(app, ["experiments", "list"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ABFLOW_SCHEMA", "Bad-Schema", "error: ABFLOW_SCHEMA: String should match pattern"),
        ("ABFLOW_MAX_CONCURRENCY", "lots", "error: ABFLOW_MAX_CONCURRENCY: Input should be"),
        ("ABFLOW_LOCK_TIMEOUT_SECONDS", "inf", "error: ABFLOW_LOCK_TIMEOUT_SECONDS:"),
        ("ABFLOW_INCREMENTAL", "maybe", "error: ABFLOW_INCREMENTAL: Input should be a valid"),
        (
            "ABFLOW_DATABASE_URL",
            f"mysql://root:{SECRET}@db/x",
            "error: ABFLOW_DATABASE_URL: unsupported scheme mysql://",
        ),
    ],
)
def test_settings_errors_name_the_variable(
    cli_env: Any, variable: str, value: str, expected: str
) -> None:
    cli_env(**{variable: value})
    for args in (["experiments", "list"], ["migrate"], ["run", "--quiet"]):
        line = _one_line(runner.invoke(app, args))
        assert line.startswith(expected), line
        assert SECRET not in line


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"postgresql://ops:{SECRET}@127.0.0.1:notaport/db", "error: unusable database URL"),
        (f"postgres://ops:{SECRET}@127.0.0.1:1/db", "error: warehouse unreachable"),
        (f"postgresql://ops:{SECRET}@[::1/db", "error: unusable database URL"),
    ],
)
def test_database_url_errors_never_show_the_password(cli_env: Any, url: str, expected: str) -> None:
    cli_env(ABFLOW_DATABASE_URL=url)
    for args in (["migrate"], ["experiments", "list"], ["promote", "k", "v"]):
        line = _one_line(runner.invoke(app, args))
        assert line.startswith(expected), line
        assert SECRET not in line
