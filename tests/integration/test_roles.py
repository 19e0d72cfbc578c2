"""Roles, as an attacker or a careless operator would try them with real LOGIN roles.

abflow_app reads configs and latest views only; abflow_reader reads every result table and view
and nothing raw; abflow_writer runs the pipeline but cannot rewrite history (promotions,
schema_migrations) or the raw inputs. The role matrix below is checked object by object.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.pool import NullPool

from abflow.definitions import Experiment, parse_experiment
from abflow.settings import Settings
from abflow.warehouse import extract, writer
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.migrate import migrate
from tests.conftest import analyse, login_engine

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


@pytest.fixture(scope="module")
def app_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """Connected as a login member of abflow_app."""
    yield from login_engine(engine, settings, "abflow_app")


@pytest.fixture(scope="module")
def writer_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """Connected as a login member of abflow_writer."""
    yield from login_engine(engine, settings, "abflow_writer")


@pytest.fixture(scope="module")
def reader_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """Connected as a login member of abflow_reader (what Grafana uses)."""
    yield from login_engine(engine, settings, "abflow_reader")


@pytest.fixture(scope="module")
def nobody_engine(engine: Engine, settings: Settings, seeded: Experiment) -> Iterator[Engine]:
    """A login in no abflow role that can see the schema: PUBLIC rights plus USAGE."""
    yield from login_engine(engine, settings, None, schema_usage=True)


def _denied(eng: Engine, sql: str, params: dict[str, Any] | None = None) -> None:
    with eng.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
        conn.execute(text(sql), params or {})


def test_roles_exist_as_nologin_groups(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select rolname, rolcanlogin from pg_roles"
                " where rolname like 'abflow\\_%' order by rolname"
            )
        ).all()
    assert rows == [("abflow_app", False), ("abflow_reader", False), ("abflow_writer", False)]


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
    "select 1 from lift_by_exposure_age",
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


# --- the role matrix: role x relation/function x privilege ------------------------------------

S, INS, U, D, T = "select", "insert", "update", "delete", "truncate"
ICOLS = "insert(columns)"  # column-level INSERT: every column but the stamps (id, at, db_user)
W, R, A = "abflow_writer", "abflow_reader", "abflow_app"
RESULT = {W: {S, INS, U, D}, R: {S}, A: set()}
INTERNAL = {W: {S, INS, U, D}, R: set(), A: set()}  # incremental refresh state: per-unit data
RAW = {W: {S}, R: set(), A: set()}
MATRIX: dict[str, dict[str, set[str]]] = {
    "assignments": RAW,
    "events": RAW,
    "experiments": RESULT,
    "analysis_runs": RESULT,
    "variant_stats": RESULT,
    "lift_by_exposure_age": RESULT,
    "insights": RESULT,
    "health_checks": RESULT,
    "recommendations": RESULT,
    "experiment_config": {W: {S, INS, U, D}, R: {S}, A: {S}},
    "promotions": {W: {S, ICOLS}, R: {S}, A: set()},
    "schema_migrations": {W: {S}, R: {S}, A: set()},
    "unit_metric_partials": INTERNAL,
    "unit_exposures_seen": INTERNAL,
    "refresh_state": INTERNAL,
    "web_tokens": {W: {S, INS, U}, R: set(), A: set()},  # hashes: nobody else's business
    "web_audit": {W: {S, INS}, R: set(), A: set()},  # append-only log of web writes
    "latest_runs": {W: {S}, R: {S}, A: set()},
    "latest_insights": {W: {S}, R: {S}, A: {S}},
    "latest_recommendations": {W: {S}, R: {S}, A: {S}},
}
ROLES = (W, R, A, "public")


def _held(conn: Connection, role: str, relation: str) -> set[str]:
    """The table privileges a role holds on a relation (directly, by membership or via PUBLIC)."""
    held = set()
    for priv in (S, INS, U, D, T, "references", "trigger"):
        if conn.execute(
            text("select has_table_privilege(:r, :o, :p)"), {"r": role, "o": relation, "p": priv}
        ).scalar():
            held.add(priv)
    if (
        INS not in held
        and conn.execute(
            text("select has_any_column_privilege(:r, :o, 'insert')"), {"r": role, "o": relation}
        ).scalar()
    ):
        held.add(ICOLS)
    return held


def test_every_relation_is_in_the_matrix(engine: Engine, settings: Settings) -> None:
    """A new table or view must be classified here (and in sql/privileges.sql) before it ships.

    On a freshly migrated schema: other tests add tables of their own to the session schema.
    """
    schema = f"{settings.schema_name}_fresh"
    migrate(engine, schema)
    try:
        with engine.connect() as conn:
            names = set(
                conn.execute(
                    text(
                        "select relname from pg_class"
                        " where relnamespace = cast(:s as regnamespace)"
                        " and relkind in ('r', 'p', 'v', 'm')"
                    ),
                    {"s": schema},
                ).scalars()
            )
            assert names == set(MATRIX)
            for relation in sorted(names):
                got = {role: _held(conn, role, f'"{schema}".{relation}') for role in ROLES}
                assert got == {**MATRIX[relation], "public": set()}, relation
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'drop schema "{schema}" cascade'))


@pytest.mark.parametrize("relation", sorted(MATRIX))
def test_role_matrix_on_relations(engine: Engine, settings: Settings, relation: str) -> None:
    qualified = f'"{settings.schema_name}".{relation}'
    with engine.connect() as conn:
        got = {role: _held(conn, role, qualified) for role in ROLES}
    assert got == {**MATRIX[relation], "public": set()}


def test_role_matrix_on_functions_schema_database(engine: Engine, settings: Settings) -> None:
    """Only assign_variant is callable, by the three roles; nobody creates anything."""
    s = settings.schema_name
    with engine.connect() as conn:
        functions = (
            conn.execute(
                text(
                    "select p.oid::regprocedure::text from pg_proc p"
                    " where p.pronamespace = cast(:s as regnamespace)"
                ),
                {"s": s},
            )
            .scalars()
            .all()
        )
        assert len(functions) >= 4  # assign_variant and the trigger functions
        for fn in functions:
            for role in ROLES:
                may = conn.execute(
                    text("select has_function_privilege(:r, :f, 'execute')"), {"r": role, "f": fn}
                ).scalar()
                assert may == (role != "public" and fn.endswith("assign_variant(text,text)")), (
                    role,
                    fn,
                )
        db = conn.execute(text("select current_database()")).scalar_one()
        for role in ROLES:
            q = "select has_schema_privilege(:r, :s, 'usage'),"
            q += " has_schema_privilege(:r, :s, 'create')"
            usage, create = conn.execute(text(q), {"r": role, "s": s}).one()
            assert (usage, create) == (role != "public", False), role
            if role != "public":
                assert not conn.execute(
                    text("select has_database_privilege(:r, :d, 'create')"), {"r": role, "d": db}
                ).scalar(), role
        assert conn.execute(
            text("select has_database_privilege(:r, :d, 'temporary')"), {"r": W, "d": db}
        ).scalar()
        seq = f'"{s}".promotions_id_seq'
        for role in ROLES:
            usage = conn.execute(
                text("select has_sequence_privilege(:r, :q, 'usage')"), {"r": role, "q": seq}
            ).scalar()
            assert usage == (role == W), role


# --- the writer, as an attacker --------------------------------------------------------------

WRITER_REFUSED = [
    "update promotions set actor = 'nobody'",
    "delete from promotions",
    "truncate promotions",
    "update schema_migrations set version = '001_tables'",
    "delete from schema_migrations",
    "insert into schema_migrations (version) values ('999_fake')",
    "truncate schema_migrations",
    "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
    " values (:k, 'forged', 'b', now())",
    "update assignments set variant_key = 'b' where experiment_key = :k",
    "delete from assignments where experiment_key = :k",
    "truncate assignments",
    "insert into events (unit_id, event_name, occurred_at) values ('rl1', 'roles_buy', now())",
    "update events set value = 1e9",
    "delete from events",
    "truncate events",
    # the stamps are the database's: no forged login, time or id
    "insert into promotions (experiment_key, action, actor, db_user)"
    " values (:k, 'promote', 'auto', 'postgres')",
    "insert into promotions (id, experiment_key, action, actor)"
    " values (9223372036854775807, :k, 'promote', 'auto')",
    "insert into promotions (experiment_key, action, actor, at)"
    " values (:k, 'promote', 'auto', timestamptz '2020-01-01')",
    # no DDL, no way around the triggers
    "alter table promotions disable trigger promotions_append_only",
    "drop trigger promotions_stamp on promotions",
    "create table sneaky (x int)",
    "create function sneaky() returns int language sql as 'select 1'",
    "create schema sneaky",
    "select refuse_history_change()",
    "set role abflow_app",
]


@pytest.mark.parametrize("sql", WRITER_REFUSED)
def test_writer_cannot_rewrite_history_inputs_or_schema(writer_engine: Engine, sql: str) -> None:
    with (
        writer_engine.connect() as conn,
        pytest.raises(ProgrammingError, match="permission denied|must be owner"),
    ):
        conn.execute(text(sql), {"k": KEY})


def _login_name(eng: Engine) -> str:
    return str(eng.url.username)


def test_audit_rows_carry_the_login_not_what_the_caller_says(
    writer_engine: Engine, seeded: Experiment
) -> None:
    """actor is the claim (auto, a token, --actor); db_user is the login, set by the database."""
    with writer_engine.begin() as conn:
        rows = conn.execute(
            text(
                "insert into promotions (experiment_key, action, actor) values"
                " (:k, 'reweight', 'auto'), (:k, 'reweight', ''), (:k, 'reweight', null)"
                " returning actor, db_user, at = now() as stamped_now"
            ),
            {"k": KEY},
        ).all()
    login = _login_name(writer_engine)
    assert [tuple(r) for r in rows] == [
        ("auto", login, True),
        (login, login, True),
        (login, login, True),
    ]


def test_history_is_append_only_for_the_owner_too(engine: Engine, seeded: Experiment) -> None:
    """Only visible DDL (disabling the trigger) could change history, never a stray statement."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into promotions (experiment_key, action, actor)"
                " values (:k, 'reweight', 'x')"
            ),
            {"k": KEY},
        )
    for sql in (
        "update promotions set actor = 'nobody' where experiment_key = :k",
        "delete from promotions where experiment_key = :k",
        "truncate promotions",
        "delete from schema_migrations",
        "update schema_migrations set applied_at = now()",
    ):
        with engine.connect() as conn, pytest.raises(ProgrammingError, match="append-only"):
            conn.execute(text(sql), {"k": KEY})


@pytest.mark.parametrize(
    "sql",
    [
        "update experiment_config set version = version + 2 where experiment_key = :k",
        "update experiment_config set version = version - 1 where experiment_key = :k",
        "update experiment_config set status = 'stopped' where experiment_key = :k",
        "update experiment_config set promoted_variant_key = 'b' where experiment_key = :k",
    ],
)
def test_config_versions_move_one_step_with_every_visible_change(
    writer_engine: Engine, sql: str
) -> None:
    with writer_engine.connect() as conn, pytest.raises(IntegrityError, match="version"):
        conn.execute(text(sql), {"k": KEY})


def test_writer_extracts_and_replaces_results_by_experiment_and_as_of(
    writer_engine: Engine, seeded: Experiment
) -> None:
    """Extraction (temporary tables) and the replace-by-(experiment, as_of) write, as the writer."""
    with writer_engine.connect() as conn, conn.begin():
        stats = extract.fetch_sufficient_stats(
            conn, seeded, AS_OF, assignments="assignments", events="events"
        )
    assert {(s.variant_key, s.units) for s in stats if s.segment == "all"} == {
        ("control", 20),
        ("b", 20),
    }
    for _ in range(2):
        result = analyse(writer_engine, seeded, as_of=AS_OF)
        with writer_engine.begin() as conn:
            writer.lock_experiment(conn, KEY, 5)
            writer.write_result(conn, result)
    with writer_engine.connect() as conn:
        runs = conn.execute(
            text("select count(*) from analysis_runs where experiment_key = :k and as_of = :a"),
            {"k": KEY, "a": AS_OF},
        ).scalar()
    assert runs == 1
    with writer_engine.begin() as conn:
        conn.execute(
            text("update experiment_config set updated_at = now() where experiment_key = :k"),
            {"k": KEY},
        )


# --- the reader (Grafana, BI) ----------------------------------------------------------------


@pytest.mark.parametrize("relation", sorted(r for r, roles in MATRIX.items() if S in roles[R]))
def test_reader_reads_every_result_table_and_view(reader_engine: Engine, relation: str) -> None:
    with reader_engine.connect() as conn:
        conn.execute(text(f"select * from {relation} limit 1")).all()  # noqa: S608


READER_REFUSED = [
    "select 1 from assignments",
    "select 1 from events",
    "select 1 from unit_metric_partials",
    "select 1 from unit_exposures_seen",
    "select 1 from refresh_state",
    "insert into analysis_runs (run_id, experiment_key, as_of, started_at, status)"
    " values (gen_random_uuid(), :k, now(), now(), 'succeeded')",
    "delete from insights",
    "update experiment_config set status = 'stopped', version = version + 1"
    " where experiment_key = :k",
    "insert into promotions (experiment_key, action, actor) values (:k, 'promote', 'grafana')",
    "insert into experiments (experiment_key, name, status, start_at, definition)"
    " values ('x', 'x', 'draft', now(), '{}')",
    "select promotions_stamp()",
    "create table sneaky (x int)",
]


@pytest.mark.parametrize("sql", READER_REFUSED)
def test_reader_reads_nothing_raw_and_writes_nothing(reader_engine: Engine, sql: str) -> None:
    _denied(reader_engine, sql, {"k": KEY})


def test_reader_may_assign(reader_engine: Engine) -> None:
    with reader_engine.connect() as conn:
        assert conn.execute(text("select assign_variant(:k, 'u1')"), {"k": KEY}).scalar() in {
            "control",
            "b",
        }


# --- default privileges that bite ---------------------------------------------------------------


def test_a_function_created_after_migrate_is_closed(
    engine: Engine,
    settings: Settings,
    app_engine: Engine,
    reader_engine: Engine,
    nobody_engine: Engine,
) -> None:
    """PostgreSQL grants EXECUTE to PUBLIC on every new function unless the creator's global
    default privileges say otherwise: the owner's are set by migrate."""
    fn = f'"{settings.schema_name}".later_fn'
    with engine.begin() as conn:
        conn.execute(text(f"create function {fn}() returns int language sql as 'select 42'"))
    try:
        with engine.connect() as conn:
            assert conn.execute(text(f"select {fn}()")).scalar() == 42
        for eng in (app_engine, reader_engine, nobody_engine):
            _denied(eng, f"select {fn}()")
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"drop function {fn}()"))


def test_migrate_closes_functions_another_role_created(
    engine: Engine, settings: Settings, app_engine: Engine
) -> None:
    """A function created by someone else (default privileges are per creator) is closed by the
    next `abflow migrate`."""
    s = settings.schema_name
    other = f"t_dba_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        conn.execute(text(f"create role {other} nologin"))
        conn.execute(text(f'grant create, usage on schema "{s}" to {other}'))
        conn.execute(text(f"set local role {other}"))
        conn.execute(
            text(f"create function \"{s}\".dba_fn() returns int language sql as 'select 7'")
        )
    try:
        with app_engine.connect() as conn:
            assert conn.execute(text(f'select "{s}".dba_fn()')).scalar() == 7  # PUBLIC default
        migrate(engine, s)
        _denied(app_engine, f'select "{s}".dba_fn()')
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'drop function "{s}".dba_fn()'))
            conn.execute(text(f"drop owned by {other}"))
            conn.execute(text(f"drop role {other}"))


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
                    " has_table_privilege('abflow_writer', :e, 'insert'),"
                    " has_table_privilege('abflow_writer', :i, 'insert'),"
                    " has_table_privilege('abflow_reader', :i, 'select')"
                ),
                {
                    "c": f"{schema}.experiment_config",
                    "e": f"{schema}.events",
                    "f": f"{schema}.assign_variant(text, text)",
                    "i": f"{schema}.insights",
                },
            ).one()
        assert tuple(ok) == (True, False, True, False, True, True)
    finally:
        mig_engine.dispose()
        with engine.begin() as conn:
            conn.execute(text(f'drop schema if exists "{schema}" cascade'))
            conn.execute(text(f"drop owned by {name}"))
            conn.execute(text(f"drop role {name}"))


def test_a_later_migration_may_backfill_the_audit_but_nobody_else(
    engine: Engine, writer_engine: Engine, seeded: Experiment
) -> None:
    """005_promotion_pins back-fills promotions.version with an UPDATE; on a database that got 006
    first it runs after the append-only trigger exists. Only a migration (as the owner) may."""
    backfill = "update promotions set reason = reason where experiment_key = :k"
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into promotions (experiment_key, action, actor)"
                " values (:k, 'reweight', 'x')"
            ),
            {"k": KEY},
        )
        conn.execute(text("select set_config('abflow.migration', '999_later', true)"))
        conn.execute(text(backfill), {"k": KEY})
        with pytest.raises(ProgrammingError, match="append-only"), conn.begin_nested():
            conn.execute(text("delete from promotions where experiment_key = :k"), {"k": KEY})
    with writer_engine.connect() as conn:
        conn.execute(text("select set_config('abflow.migration', '999_later', false)"))
        with pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text(backfill), {"k": KEY})
