"""Versioned migrations: each sql/migrations/NNN_*.sql applied once, recorded in a table."""

from __future__ import annotations

from typing import cast

import psycopg
from psycopg import sql
from sqlalchemy import Engine, text

from abflow.warehouse.sqlfiles import migration_files

# Serialise concurrent `migrate` calls (flow workers, CLI) on one advisory lock.
_MIGRATION_LOCK = 7_216_003_001


def migrate(engine: Engine, schema: str) -> list[str]:
    """Apply pending migrations in one transaction; return the versions applied (empty if none)."""
    applied: list[str] = []
    with engine.begin() as conn:
        conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
        with raw.cursor() as cur:
            cur.execute(sql.SQL("create schema if not exists {}").format(sql.Identifier(schema)))
            cur.execute(
                sql.SQL("set local search_path to {}, public").format(sql.Identifier(schema))
            )
        conn.execute(
            text(
                "create table if not exists schema_migrations ("
                " version text primary key, applied_at timestamptz not null default now())"
            )
        )
        done = {r[0] for r in conn.execute(text("select version from schema_migrations"))}
        for path in migration_files():
            version = path.stem
            if version in done:
                continue
            # Migration files are trusted project files (no user input); run them verbatim.
            with raw.cursor() as cur:
                cur.execute(path.read_text(encoding="utf-8").encode())
            conn.execute(
                text("insert into schema_migrations (version) values (:v)"), {"v": version}
            )
            applied.append(version)
    return applied
