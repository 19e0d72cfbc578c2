"""Locate and read the project's .sql files (migrations and query templates)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

SQL_DIR = Path(__file__).resolve().parents[2] / "sql"


@cache
def read_sql(relative: str) -> str:
    """Return the text of sql/<relative>."""
    return (SQL_DIR / relative).read_text(encoding="utf-8")


def migration_files() -> list[Path]:
    """All migrations in version order (NNN_name.sql)."""
    return sorted((SQL_DIR / "migrations").glob("[0-9][0-9][0-9]_*.sql"))
