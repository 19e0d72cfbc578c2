"""Every statement abflow runs (or would run) for one experiment, as text in one dialect.

`abflow sql --experiment KEY --dialect D` prints this; the golden files in tests/engines/golden
are this output for the demo's checkout_button. Pure: no connection.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from abflow.definitions import Experiment
from abflow.warehouse import plan
from abflow.warehouse.dialects import Rendered, Source, dialect, render_plan

_HOW = {
    "materialize": "materialised as temporary table {relation}",
    "analyze": "planner statistics for {relation}",
    "view": "materialised as a cached temporary view {relation} "
    "(spark.sql(...).cache().createOrReplaceTempView)",
    "query": "rows come back to Python",
    "execute": "run for its effect",
}


def experiment_sql(
    experiment: Experiment,
    as_of: datetime,
    dialect_name: str,
    sources: Mapping[str, Source],
) -> str:
    """The analysis statements, then the data-quality statements, with their bound values."""
    from abflow.warehouse import sql_checks

    d = dialect(dialect_name)
    analysis = render_plan(plan.analysis_plan(experiment, as_of), dialect_name, sources)
    checks = render_plan(
        sql_checks.check_statements(experiment, as_of, now=None), dialect_name, sources
    )
    header = [
        f"-- abflow sql: experiment {experiment.key}, dialect {dialect_name}, "
        f"as of {as_of.isoformat()}",
        f"-- sources: assignments = {_source(sources['assignments'])}, "
        f"events = {_source(sources['events'])}",
        "-- Placeholders are bound values (listed above each statement), never SQL text.",
        "-- Rendered from sql/queries/*.sql (canonical) by sqlglot "
        f"{_sqlglot_version()}; {'executed' if d.executed else 'rendered only'} on this engine.",
        "",
        "-- == 1. sufficient statistics and exposure summary ==",
        "",
    ]
    body = [_statement(i, r) for i, r in enumerate(analysis, start=1)]
    quality_note = (
        "-- On PostgreSQL Great Expectations validates these same rows (query assets) instead."
        if dialect_name == "postgres"
        else "-- The suites of expectations/*.json as SQL (Great Expectations has no datasource "
        "here)."
    )
    checks_part = [
        "",
        "-- == 2. data-quality checks ==",
        quality_note,
        "",
        *(_statement(i, r) for i, r in enumerate(checks, start=len(analysis) + 1)),
    ]
    return "\n".join([*header, *body, *checks_part]).rstrip() + "\n"


def _statement(i: int, r: Rendered) -> str:
    how = _HOW[r.kind].format(relation=r.relation)
    lines = [f"-- [{i}] {r.name}: {how}"]
    if r.params:
        lines.append("-- parameters:")
        lines.extend(f"--   {k} = {_value(v)}" for k, v in sorted(r.params.items()))
    return "\n".join(lines) + "\n" + r.sql + ";\n"


def _value(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def _source(s: Source) -> str:
    return f"parquet:{s.path}" if s.kind == "parquet" else ".".join(s.parts)


def _sqlglot_version() -> str:
    import sqlglot

    return sqlglot.__version__
