"""Roles: abflow_app reads configs and latest views only; abflow_writer runs the pipeline."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import ProgrammingError
from sqlalchemy.pool import NullPool

from abflow.definitions import Experiment, parse_experiment
from abflow.settings import Settings
from abflow.warehouse import extract
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.migrate import migrate

KEY = "roles_exp"
AS_OF = datetime(2026, 11, 5, tzinfo=UTC)


def _experiment() -> Experiment:
    return parse_experiment(
        {
            "key": KEY,
            "name": "roles",
            "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "b", "weight": 0.5},
            ],
            "metrics": [
                {"key": "conv", "kind": "proportion", "event": "roles_buy", "role": "primary"}
            ],
        }
    )


@pytest.fixture(scope="module")
def seeded(engine: Engine) -> Experiment:
    """A small experiment of our own: config, a few exposures and events."""
    e = _experiment()
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                " select :k, 'rl' || g, case when g % 2 = 0 then 'control' else 'b' end,"
                " timestamptz '2026-11-02' + g * interval '1 minute'"
                " from generate_series(1, 40) g"
            ),
            {"k": KEY},
        )
        conn.execute(
            text(
                "insert into events (unit_id, event_name, occurred_at)"
                " select 'rl' || g, 'roles_buy', timestamptz '2026-11-03'"
                " from generate_series(1, 40) g where g % 3 = 0"
            )
        )
    return e


def _login(
    engine: Engine, settings: Settings, group: str | None, *, schema_usage: bool = False
) -> Iterator[Engine]:
    """A throwaway LOGIN role (member of `group`) and an engine connected as it."""
    name = f"t_{group or 'nobody'}_{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(16)  # ignored under trust auth, needed elsewhere
    membership = f" in role {group}" if group else ""
    with engine.begin() as conn:
        conn.execute(text(f"create role {name} login password '{password}'{membership}"))
        if schema_usage:
            conn.execute(text(f'grant usage on schema "{settings.schema_name}" to {name}'))
    url = make_url(engine.url.render_as_string(hide_password=False)).set(
        username=name, password=password
    )
    user_engine = create_engine(
        url,
        poolclass=NullPool,
        connect_args={"options": f"-c search_path={settings.schema_name}"},
    )
    try:
        yield user_engine
    finally:
        user_engine.dispose()
        with engine.begin() as conn:
            # drop owned also revokes what was granted to the role, which drop role requires.
            conn.execute(text(f"drop owned by {name}"))
            conn.execute(text(f"drop role {name}"))


@pytest.fixture(scope="module")
def app_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """Connected as a login member of abflow_app."""
    yield from _login(engine, settings, "abflow_app")


@pytest.fixture(scope="module")
def writer_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """Connected as a login member of abflow_writer."""
    yield from _login(engine, settings, "abflow_writer")


@pytest.fixture(scope="module")
def nobody_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """A login in no abflow role that can see the schema: PUBLIC rights plus USAGE."""
    yield from _login(engine, settings, None, schema_usage=True)


def _denied(eng: Engine, sql: str, params: dict[str, str] | None = None) -> None:
    with eng.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
        conn.execute(text(sql), params or {})


def test_roles_exist_as_nologin_groups(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select rolname, rolcanlogin from pg_roles"
                " where rolname in ('abflow_app', 'abflow_writer') order by rolname"
            )
        ).all()
    assert rows == [("abflow_app", False), ("abflow_writer", False)]


def test_app_reads_config_and_latest_views_and_assigns(app_engine: Engine) -> None:
    with app_engine.connect() as conn:
        cfg: list[dict[str, Any]] = conn.execute(
            text("select variants from experiment_config where experiment_key = :k"), {"k": KEY}
        ).scalar_one()
        assert [v["key"] for v in cfg] == ["control", "b"]
        conn.execute(text("select * from latest_insights limit 5")).all()
        conn.execute(text("select * from latest_recommendations limit 5")).all()
        variant = conn.execute(text("select assign_variant(:k, 'someone')"), {"k": KEY}).scalar()
        assert variant in {"control", "b"}


def test_app_sees_view_rows_through_the_owners_rights(
    engine: Engine, app_engine: Engine, seeded: Experiment
) -> None:
    """The views expose base-table rows the app may not select directly."""
    run_id = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into analysis_runs (run_id, experiment_key, as_of, started_at, status)"
                " values (:r, :k, :t, :t, 'succeeded')"
            ),
            {"r": run_id, "k": KEY, "t": AS_OF},
        )
        conn.execute(
            text(
                "insert into recommendations (run_id, experiment_key, decision, rationale)"
                " values (:r, :k, 'keep_running', 'roles test')"
            ),
            {"r": run_id, "k": KEY},
        )
    try:
        with app_engine.connect() as conn:
            got = conn.execute(
                text(
                    "select decision, rationale from latest_recommendations"
                    " where experiment_key = :k"
                ),
                {"k": KEY},
            ).one()
        assert tuple(got) == ("keep_running", "roles test")
        _denied(app_engine, "select * from recommendations")
    finally:
        with engine.begin() as conn:
            conn.execute(text("delete from analysis_runs where run_id = :r"), {"r": run_id})


DENIED_READS = [
    "select 1 from events",
    "select 1 from assignments",
    "select 1 from insights",
    "select 1 from promotions",
    "select 1 from analysis_runs",
    "select 1 from variant_stats",
    "select 1 from health_checks",
    "select 1 from recommendations",
    "select 1 from experiments",
    "select 1 from latest_runs",
]


@pytest.mark.parametrize("sql", DENIED_READS)
def test_app_cannot_read_raw_or_result_tables(app_engine: Engine, sql: str) -> None:
    _denied(app_engine, sql)


def test_app_cannot_write(app_engine: Engine) -> None:
    k = {"k": KEY}
    _denied(app_engine, "update experiment_config set version = 99 where experiment_key = :k", k)
    _denied(app_engine, "delete from experiment_config where experiment_key = :k", k)
    _denied(
        app_engine,
        "insert into promotions (experiment_key, action, actor) values (:k, 'promote', 'app')",
        k,
    )
    _denied(
        app_engine,
        "insert into events (unit_id, event_name, occurred_at) values (:k, 'x', now())",
        k,
    )


def test_public_may_not_call_assign_variant(nobody_engine: Engine) -> None:
    """EXECUTE was revoked from PUBLIC: seeing the schema is not enough to assign."""
    _denied(nobody_engine, "select assign_variant(:k, 'u1')", {"k": KEY})
    _denied(nobody_engine, "select 1 from experiment_config limit 1")


def test_writer_has_the_pipeline_grants(engine: Engine, settings: Settings) -> None:
    s = settings.schema_name
    with engine.connect() as conn:

        def has(check: str, obj: str, priv: str) -> bool:
            sql = f"select has_{check}_privilege('abflow_writer', :o, :p)"
            return bool(conn.execute(text(sql), {"o": obj, "p": priv}).scalar())

        tables: list[str] = list(
            conn.execute(
                text("select tablename from pg_tables where schemaname = :s"), {"s": s}
            ).scalars()
        )
        # 007_web_tokens.sql: revoked tokens stay on record, the web audit is append-only.
        withheld = {("web_tokens", "delete"), ("web_audit", "update"), ("web_audit", "delete")}
        for t in tables:
            for priv in ("select", "insert", "update", "delete"):
                assert has("table", f"{s}.{t}", priv) != ((t, priv) in withheld), (t, priv)
        assert has("sequence", f"{s}.promotions_id_seq", "usage")
        assert has("schema", s, "usage")
        assert not has("schema", s, "create")  # DDL stays with the migrating owner
        db: str = conn.execute(text("select current_database()")).scalar_one()
        assert has("database", db, "temporary")
        for view in ("latest_insights", "latest_recommendations"):
            assert conn.execute(
                text("select has_table_privilege('abflow_app', :o, 'select')"), {"o": f"{s}.{view}"}
            ).scalar()


def test_writer_can_extract_and_write(
    writer_engine: Engine, seeded: Experiment, settings: Settings
) -> None:
    """Extraction (temporary tables) and result/audit writes work as a writer login."""
    with writer_engine.connect() as conn, conn.begin():
        stats = extract.fetch_sufficient_stats(
            conn, seeded, AS_OF, assignments="assignments", events="events"
        )
    assert {(s.variant_key, s.units) for s in stats if s.segment == "all"} == {
        ("control", 20),
        ("b", 20),
    }
    run_id = uuid.uuid4()
    with writer_engine.connect() as conn:
        _write_and_undo(conn, run_id)


def _write_and_undo(conn: Connection, run_id: uuid.UUID) -> None:
    with conn.begin():
        conn.execute(
            text(
                "insert into analysis_runs (run_id, experiment_key, as_of, started_at, status)"
                " values (:r, :k, :t, :t, 'succeeded')"
            ),
            {"r": run_id, "k": KEY, "t": datetime(2026, 11, 6, tzinfo=UTC)},
        )
        pid: int = conn.execute(
            text(
                "insert into promotions (experiment_key, action, actor, run_id)"
                " values (:k, 'reweight', 'writer-test', :r) returning id"
            ),
            {"k": KEY, "r": run_id},
        ).scalar_one()
        conn.execute(
            text("update experiment_config set updated_at = now() where experiment_key = :k"),
            {"k": KEY},
        )
        assert pid > 0
        conn.execute(text("delete from promotions where id = :i"), {"i": pid})
        conn.execute(text("delete from analysis_runs where run_id = :r"), {"r": run_id})


def test_a_migrator_without_createrole_still_migrates(engine: Engine, settings: Settings) -> None:
    """Managed warehouses: a schema owner without CREATEROLE reuses the existing roles."""
    name = f"t_migrator_{uuid.uuid4().hex[:8]}"
    schema = f"{settings.schema_name}_m"
    password = secrets.token_hex(16)
    with engine.begin() as conn:
        db: str = conn.execute(text("select current_database()")).scalar_one()
        conn.execute(text(f"create role {name} login nocreaterole password '{password}'"))
        conn.execute(text(f'grant create on database "{db}" to {name}'))
    url = make_url(engine.url.render_as_string(hide_password=False)).set(
        username=name, password=password
    )
    mig_engine = create_engine(url, poolclass=NullPool)
    try:
        applied = migrate(mig_engine, schema)
        assert "003_roles" in applied
        with engine.connect() as conn:
            ok = conn.execute(
                text(
                    "select has_table_privilege('abflow_app', :c, 'select'),"
                    " has_table_privilege('abflow_app', :e, 'select'),"
                    " has_function_privilege('abflow_app', :f, 'execute'),"
                    " has_table_privilege('abflow_writer', :e, 'insert')"
                ),
                {
                    "c": f"{schema}.experiment_config",
                    "e": f"{schema}.events",
                    "f": f"{schema}.assign_variant(text, text)",
                },
            ).one()
        assert tuple(ok) == (True, False, True, True)
    finally:
        mig_engine.dispose()
        with engine.begin() as conn:
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
            conn.execute(text(f"drop owned by {name}"))
            conn.execute(text(f"drop role {name}"))
