"""Versioned migrations: each sql/migrations/NNN_*.sql applied once, recorded in a table.

Only `abflow migrate`, run as the schema owner, changes the schema. Everything else runs as a
login in `abflow_writer` (no CREATE anywhere) and calls `check_schema` instead: a schema that is
missing or behind stops the command with one line saying who has to migrate it.
"""

from __future__ import annotations

from typing import cast

import psycopg
from psycopg import sql
from sqlalchemy import Connection, Engine, text

from abflow.warehouse.sqlfiles import SQL_DIR, migration_files

# Serialise concurrent `migrate` calls (flow workers, CLI) on one advisory lock.
_MIGRATION_LOCK = 7_216_003_001
# Grants and revokes, re-asserted after every migrate: idempotent, and it repairs the grants a
# later migration loses by recreating an object (a dropped and recreated view starts ungranted).
PRIVILEGES_FILE = SQL_DIR / "privileges.sql"


class SchemaOutdated(RuntimeError):
    """The schema is missing, behind, or unreadable for this login; the message is one line."""


def version_number(version: str) -> int:
    """The numeric prefix of a migration version ('004_incremental' -> 4)."""
    return int(version.split("_", 1)[0])


def required_version() -> int:
    """The newest migration this abflow ships."""
    return max(version_number(p.stem) for p in migration_files())


def applied_versions(conn: Connection, schema: str) -> set[str] | None:
    """Versions recorded in the schema's schema_migrations; None if the schema has no such table."""
    table = conn.execute(
        text("select to_regclass(format('%I.schema_migrations', cast(:s as text)))"), {"s": schema}
    ).scalar()
    if table is None:
        return None
    raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
    with raw.cursor() as cur:
        cur.execute(
            sql.SQL("select version from {}").format(sql.Identifier(schema, "schema_migrations"))
        )
        return {r[0] for r in cur.fetchall()}


def schema_level(applied: set[str] | None) -> int:
    """The highest N such that every shipped migration up to N is applied (0: none or no schema)."""
    level = 0
    for path in migration_files():
        if applied is None or path.stem not in applied:
            break
        level = version_number(path.stem)
    return level


def check_schema(engine: Engine, schema: str) -> None:
    """Raise SchemaOutdated unless every shipped migration has been applied (no DDL, no writes)."""
    try:
        with engine.connect() as conn:
            applied = applied_versions(conn, schema)
    except Exception as exc:
        orig = getattr(exc, "orig", None)
        if not isinstance(orig, psycopg.errors.InsufficientPrivilege):
            raise
        message = str(orig).splitlines()[0]
        raise SchemaOutdated(
            f"cannot read {schema}.schema_migrations as this login ({message}):"
            f" grant it abflow_writer or abflow_reader"
        ) from None
    have, need = schema_level(applied), required_version()
    if have < need:
        raise SchemaOutdated(
            f"schema {schema} is at migration {have}, this abflow needs {need}:"
            " run `abflow migrate` as the schema owner"
        )


def migrate(engine: Engine, schema: str, *, upto: int | None = None) -> list[str]:
    """Apply pending migrations in one transaction; return the versions applied (empty if none).

    `upto` stops after that migration number (tests build schemas that are behind). The grants of
    sql/privileges.sql are re-applied every time.
    """
    applied: list[str] = []
    with engine.begin() as conn:
        conn.execute(text("select pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
        raw = cast(psycopg.Connection, conn.connection.dbapi_connection)
        exists = conn.execute(
            text("select exists (select from pg_namespace where nspname = :s)"), {"s": schema}
        ).scalar()
        with raw.cursor() as cur:
            if not exists:
                # Only when missing: `create schema if not exists` needs CREATE on the database
                # even when the schema is there.
                cur.execute(sql.SQL("create schema {}").format(sql.Identifier(schema)))
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
            if upto is not None and version_number(version) > upto:
                break
            if version in done:
                continue
            # Lets a migration back-fill a column it adds to an append-only table (006).
            conn.execute(text("select set_config('abflow.migration', :v, true)"), {"v": version})
            # Migration files are trusted project files (no user input); run them verbatim.
            with raw.cursor() as cur:
                cur.execute(path.read_text(encoding="utf-8").encode())
            conn.execute(
                text("insert into schema_migrations (version) values (:v)"), {"v": version}
            )
            applied.append(version)
        conn.execute(text("select set_config('abflow.migration', '', true)"))
        if upto is None:
            with raw.cursor() as cur:
                cur.execute(PRIVILEGES_FILE.read_text(encoding="utf-8").encode())
    return applied
