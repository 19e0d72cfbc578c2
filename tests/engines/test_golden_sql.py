"""Golden SQL per dialect: what `abflow sql` prints for the demo's checkout_button.

checkout_button has every shape the SQL handles: a segment dimension (JSON attributes), CUPED,
a proportion with a window, a sum, a ratio and a mean guardrail. Each statement must parse back
in its own dialect. After an intended change (or a sqlglot upgrade) regenerate with
`ABFLOW_UPDATE_GOLDEN=1 .venv/bin/pytest tests/engines/test_golden_sql.py` and review the diff.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abflow.cli import app
from abflow.definitions import load_experiment_files
from abflow.demo_data import DEMO_EXPERIMENTS_DIR
from abflow.warehouse import plan, sql_checks
from abflow.warehouse.dialects import DIALECTS, RenderError, Source, parse_check, render_plan
from abflow.warehouse.extract import default_sources
from abflow.warehouse.show import experiment_sql

GOLDEN = Path(__file__).parent / "golden"
AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
DEFINITION = DEMO_EXPERIMENTS_DIR / "checkout_button.yaml"


def _experiment():  # type: ignore[no-untyped-def]
    return load_experiment_files([DEFINITION])[0]


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_rendered_sql_matches_golden_file(dialect_name: str) -> None:
    text = experiment_sql(
        _experiment(), AS_OF, dialect_name, default_sources("assignments", "events")
    )
    path = GOLDEN / f"checkout_button.{dialect_name}.sql"
    if os.environ.get("ABFLOW_UPDATE_GOLDEN"):
        path.write_text(text, encoding="utf-8")
    assert path.is_file(), f"{path} missing: run with ABFLOW_UPDATE_GOLDEN=1"
    assert text == path.read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
@pytest.mark.parametrize("key", ["checkout_button", "followup_timing", "enrichment_strategy"])
def test_every_statement_parses_back_in_its_dialect(dialect_name: str, key: str) -> None:
    experiment = load_experiment_files([DEMO_EXPERIMENTS_DIR / f"{key}.yaml"])[0]
    statements = [
        *plan.analysis_plan(experiment, AS_OF),
        *sql_checks.check_statements(experiment, AS_OF, now=AS_OF),
    ]
    rendered = render_plan(statements, dialect_name, default_sources("assignments", "events"))
    assert rendered
    for r in rendered:
        parse_check(r.sql, dialect_name)
        # every bound value is used by its statement
        assert all(name in r.sql for name in r.params), r.name


def test_traps_are_avoided() -> None:
    """The constructs sqlglot 30.30 gets wrong are not in the canonical SQL."""
    text = "\n".join(
        (GOLDEN / f"checkout_button.{d}.sql").read_text(encoding="utf-8").upper() for d in DIALECTS
    )
    for trap in ("APPROX", "UNNEST", "EXPLODE", "ARRAY[", "DATEDIFF", "::"):
        assert trap not in text, trap
    # percentile functions (exact ones turn approximate on some engines); capping's percentile
    # caps are ranks, and the word itself appears as the cap type 'percentile'
    assert not re.search(r"PERCENTILE\w*\s*\(|MEDIAN\s*\(|QUANTILE\w*\s*\(", text)


def test_redshift_gets_no_aggregate_filter_clause() -> None:
    """Redshift has no FILTER (WHERE ...) on aggregates: CASE inside the aggregate instead."""
    text = (GOLDEN / "checkout_button.redshift.sql").read_text(encoding="utf-8")
    assert "FILTER(" not in text and "COUNT(CASE WHEN" in text
    assert "FILTER(" in (GOLDEN / "checkout_button.postgres.sql").read_text(encoding="utf-8")


def test_parquet_sources_render_only_for_duckdb_and_spark() -> None:
    sources = {
        "assignments": Source.parse("parquet:/data/assignments/*.parquet"),
        "events": Source.parse("parquet:/data/events/*.parquet"),
    }
    statements = plan.analysis_plan(_experiment(), AS_OF)
    duck = render_plan(statements, "duckdb", sources)
    assert "READ_PARQUET('/data/events/*.parquet') AS e" in duck[3].sql
    spark = render_plan(statements, "spark", sources)
    assert "parquet.`/data/events/*.parquet`" in spark[3].sql
    with pytest.raises(RenderError, match="Parquet"):
        render_plan(statements, "snowflake", sources)


def test_cli_prints_the_golden_text_and_refuses_unknown_dialects() -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "sql",
            "--experiment",
            str(DEFINITION),
            "--dialect",
            "trino",
            "--as-of",
            AS_OF.isoformat(),
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (GOLDEN / "checkout_button.trino.sql").read_text(encoding="utf-8")
    bad = runner.invoke(app, ["sql", "--experiment", str(DEFINITION), "--dialect", "oracle"])
    assert bad.exit_code == 1
    assert "expected one of" in bad.output


@pytest.mark.parametrize("dialect_name", list(DIALECTS))
def test_bandit_periods_render_as_bound_values_in_every_dialect(dialect_name: str) -> None:
    """A bandit's period boundaries are a table of placeholders, never SQL text."""
    experiment = _experiment()
    starts = [
        experiment.start_at,
        datetime(2026, 11, 5, 12, tzinfo=UTC),
        datetime(2026, 11, 9, tzinfo=UTC),
    ]
    rendered = render_plan(
        plan.analysis_plan(experiment, AS_OF, starts),
        dialect_name,
        default_sources("assignments", "events"),
    )
    text = "\n".join(r.sql for r in rendered)
    params = {k: v for r in rendered for k, v in r.params.items()}
    assert "2026-11-05" not in text and "#period=" not in text
    assert params["bandit_periods_2_period_label"] == "#period=2"
    assert params["bandit_periods_2_period_start"] == starts[1]
    assert params["bandit_periods_2_period_end"] == starts[2]
    assert params["bandit_periods_3_period_end"] is None
    for r in rendered:
        parse_check(r.sql, dialect_name)
        assert all(name in r.sql for name in r.params), r.name
