"""Locate and read abflow's .sql files (migrations and query templates) inside the package."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from abflow.package_data import package_path

# abflow/sql inside the package (migrations/, queries/, privileges.sql).
SQL_DIR = package_path("sql")


@cache
def read_sql(relative: str) -> str:
    """Return the text of abflow/sql/<relative>."""
    return (SQL_DIR / relative).read_text(encoding="utf-8")


def migration_files() -> list[Path]:
    """All migrations in version order (NNN_name.sql)."""
    return sorted((SQL_DIR / "migrations").glob("[0-9][0-9][0-9]_*.sql"))
