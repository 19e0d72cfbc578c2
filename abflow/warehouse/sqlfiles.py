"""Locate and read abflow's .sql files (migrations and query templates) inside the package."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from abflow.package_data import package_path

# abflow/sql inside the package (migrations/, queries/, privileges.sql).
SQL_DIR = package_path("sql")


@cache
def read_sql(relative: str) -> str:
    """Return the text of abflow/sql/<relative>."""
    return (SQL_DIR / relative).read_text(encoding="utf-8")


@cache
def _queries() -> Environment:
    # Query files may share column lists and expressions through Jinja macros (sql/macros.sql),
    # as dbt projects do; rendering only expands them: no value or identifier ever enters here.
    return Environment(
        loader=FileSystemLoader(SQL_DIR),
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def query_sql(relative: str) -> str:
    """The text of the query file abflow/sql/<relative> with its macros expanded."""
    return _queries().get_template(relative).render()


def migration_files() -> list[Path]:
    """All migrations in version order (NNN_name.sql)."""
    return sorted((SQL_DIR / "migrations").glob("[0-9][0-9][0-9]_*.sql"))
