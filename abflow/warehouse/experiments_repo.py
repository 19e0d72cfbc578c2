"""The `experiments` and `experiment_config` tables: upsert definitions, read them back."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text

from abflow.definitions import DefinitionError, Experiment, parse_experiment


def variants_config(experiment: Experiment) -> list[dict[str, Any]]:
    """The variants array apps read from experiment_config (definition order matters)."""
    return [
        {"key": v.key, "weight": v.weight, "control": v.control, "config": v.config}
        for v in experiment.variants
    ]


def upsert_experiments(conn: Connection, experiments: list[Experiment]) -> None:
    """Insert or update definitions and keep experiment_config complete (caller owns the txn)."""
    for e in experiments:
        definition = e.model_dump(mode="json")
        conn.execute(
            text(
                "insert into experiments"
                " (experiment_key, name, status, start_at, end_at, definition, updated_at)"
                " values (:k, :name, :status, :start_at, :end_at, cast(:d as jsonb), now())"
                " on conflict (experiment_key) do update set name = excluded.name,"
                " status = excluded.status, start_at = excluded.start_at,"
                " end_at = excluded.end_at, definition = excluded.definition,"
                " updated_at = now()"
                " where experiments.definition is distinct from excluded.definition"
            ),
            {
                "k": e.key,
                "name": e.name,
                "status": e.status,
                "start_at": e.start_at,
                "end_at": e.end_at,
                "d": json.dumps(definition),
            },
        )
        # Applying a definition again restores an archived experiment (007_web_tokens.sql).
        conn.execute(
            text(
                "update experiments set archived_at = null, archived_by = null"
                " where experiment_key = :k and archived_at is not null"
            ),
            {"k": e.key},
        )
        # Weights in config follow the definition unless a bandit owns them; version moves
        # only when what apps see changes.
        conn.execute(
            text(
                "insert into experiment_config (experiment_key, status, variants, version)"
                " values (:k, :status, cast(:v as jsonb), 1)"
                " on conflict (experiment_key) do update set status = excluded.status,"
                " variants = case when :bandit then"
                "   (select jsonb_agg(jsonb_set(nv, '{weight}', coalesce(("
                "      select ov -> 'weight'"
                "      from jsonb_array_elements(experiment_config.variants) ov"
                "      where ov ->> 'key' = nv ->> 'key'), nv -> 'weight')) order by ord)"
                "    from jsonb_array_elements(excluded.variants) with ordinality as t(nv, ord))"
                "   else excluded.variants end,"
                " version = experiment_config.version + 1, updated_at = now()"
                " where experiment_config.status is distinct from excluded.status"
                "    or (not :bandit"
                "        and experiment_config.variants is distinct from excluded.variants)"
                "    or (:bandit and jsonb_array_length(experiment_config.variants)"
                "        <> jsonb_array_length(excluded.variants))"
            ),
            {
                "k": e.key,
                "status": e.status,
                "v": json.dumps(variants_config(e)),
                "bandit": e.allocation == "bandit",
            },
        )


def list_experiments(conn: Connection, *, status: str | None = None) -> list[Experiment]:
    """Definitions stored in the warehouse, optionally filtered by status, ordered by key."""
    rows = conn.execute(
        text(
            "select experiment_key, definition from experiments"
            " where (cast(:s as text) is null or status = :s) order by experiment_key"
        ),
        {"s": status},
    ).all()
    return [parse_experiment(r.definition, f"experiments[{r.experiment_key}]") for r in rows]


def list_experiments_checked(
    conn: Connection, *, status: str | None = None, keys: list[str] | None = None
) -> tuple[list[Experiment], dict[str, str]]:
    """Valid stored definitions, plus {key: one-line error} for those that no longer validate."""
    rows = conn.execute(
        text(
            "select experiment_key, definition from experiments"
            " where (cast(:s as text) is null or status = :s)"
            " and (cast(:keys as text[]) is null or experiment_key = any(cast(:keys as text[])))"
            " order by experiment_key"
        ),
        {"s": status, "keys": keys},
    ).all()
    good: list[Experiment] = []
    broken: dict[str, str] = {}
    for r in rows:
        try:
            good.append(parse_experiment(r.definition, f"experiments[{r.experiment_key}]"))
        except DefinitionError as exc:
            broken[r.experiment_key] = str(exc)
    return good, broken


def get_experiment(conn: Connection, key: str) -> Experiment | None:
    """One stored definition, or None."""
    row = conn.execute(
        text("select definition from experiments where experiment_key = :k"), {"k": key}
    ).first()
    return None if row is None else parse_experiment(row.definition, f"experiments[{key}]")
