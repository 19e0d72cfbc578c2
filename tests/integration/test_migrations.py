"""Migrations: every contract table, view, comment and function exists; reruns are no-ops."""

from __future__ import annotations

from sqlalchemy import Engine, text

from abflow.settings import Settings
from abflow.warehouse.migrate import migrate

TABLES = {
    "assignments",
    "events",
    "experiments",
    "analysis_runs",
    "variant_stats",
    "lift_by_exposure_age",
    "insights",
    "health_checks",
    "recommendations",
    "experiment_config",
    "promotions",
}
VIEWS = {"latest_insights", "latest_recommendations", "latest_runs"}


def test_migrate_twice_is_a_noop(engine: Engine, settings: Settings) -> None:
    assert migrate(engine, settings.schema_name) == []
    with engine.connect() as conn:
        versions = conn.execute(text("select version from schema_migrations")).scalars().all()
    assert len(versions) == len(set(versions)) >= 2


def test_every_relation_exists_with_a_comment(engine: Engine, settings: Settings) -> None:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select c.relname, c.relkind, obj_description(c.oid, 'pg_class') as comment"
                " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
                " where n.nspname = :s and c.relkind in ('r', 'v')"
            ),
            {"s": settings.schema_name},
        ).all()
    found = {r.relname: r for r in rows}
    assert TABLES <= {k for k, r in found.items() if r.relkind == "r"}
    assert VIEWS <= {k for k, r in found.items() if r.relkind == "v"}
    missing_comments = [k for k in TABLES | VIEWS if not found[k].comment]
    assert missing_comments == []


def test_result_columns_match_the_contract(engine: Engine, settings: Settings) -> None:
    required = {
        "insights": {
            "run_id",
            "experiment_key",
            "as_of",
            "metric_key",
            "variant_key",
            "control_key",
            "segment",
            "method",
            "control_mean",
            "variant_mean",
            "abs_lift",
            "abs_ci_low",
            "abs_ci_high",
            "rel_lift",
            "rel_ci_low",
            "rel_ci_high",
            "p_value",
            "p_value_adjusted",
            "significant",
            "chance_to_beat_control",
            "expected_loss",
            "error",
        },
        "experiment_config": {
            "experiment_key",
            "status",
            "variants",
            "promoted_variant_key",
            "promoted_config",
            "version",
            "updated_at",
        },
        "promotions": {
            "id",
            "experiment_key",
            "variant_key",
            "action",
            "actor",
            "run_id",
            "reason",
            "at",
        },
        "recommendations": {
            "run_id",
            "experiment_key",
            "decision",
            "variant_key",
            "rationale",
            "days_remaining",
            "details",
            "created_at",
        },
    }
    with engine.connect() as conn:
        for table, cols in required.items():
            have = set(
                conn.execute(
                    text(
                        "select column_name from information_schema.columns"
                        " where table_schema = :s and table_name = :t"
                    ),
                    {"s": settings.schema_name, "t": table},
                ).scalars()
            )
            assert cols <= have, (table, cols - have)


def test_assign_variant_function_exists(engine: Engine) -> None:
    with engine.connect() as conn:
        assert (
            conn.execute(text("select assign_variant('no_such_experiment', 'u1')")).scalar() is None
        )
