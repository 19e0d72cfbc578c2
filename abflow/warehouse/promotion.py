"""Changes to experiment_config, each audited in promotions: promote, rollback, reweight."""

from __future__ import annotations

import json
from dataclasses import dataclass
from uuid import UUID

from sqlalchemy import Connection, text


class PromotionRefused(RuntimeError):
    """A promotion cannot be applied; the message says why in one line."""


@dataclass(frozen=True)
class PromotionOutcome:
    """What a promotion call did."""

    changed: bool
    version: int
    message: str


def _locked_config(conn: Connection, key: str):
    row = (
        conn.execute(
            text("select * from experiment_config where experiment_key = :k for update"), {"k": key}
        )
        .mappings()
        .first()
    )
    if row is None:
        raise PromotionRefused(
            f"experiment '{key}' is not defined (run `abflow experiments apply`)"
        )
    return row


def latest_run_health(conn: Connection, key: str) -> tuple[str | None, str | None]:
    """Status and message of the newest analysis run of an experiment."""
    row = conn.execute(
        text("select status, message from latest_runs where experiment_key = :k"), {"k": key}
    ).first()
    return (row[0], row[1]) if row else (None, None)


def promote(
    conn: Connection,
    key: str,
    variant: str,
    *,
    actor: str,
    reason: str | None,
    run_id: UUID | None = None,
    force: bool = False,
) -> PromotionOutcome:
    """Promote a variant: config override, version + 1, audit row; a no-op if already promoted."""
    cfg = _locked_config(conn, key)
    variants = {v["key"]: v for v in cfg["variants"]}
    if variant not in variants:
        raise PromotionRefused(
            f"variant '{variant}' is not in experiment '{key}' (variants: {', '.join(variants)})"
        )
    status, message = latest_run_health(conn, key)
    if status == "unhealthy" and not force:
        raise PromotionRefused(
            f"refusing to promote '{variant}' in '{key}': the latest run is unhealthy ({message})"
        )
    if cfg["promoted_variant_key"] == variant:
        return PromotionOutcome(False, cfg["version"], f"'{variant}' is already promoted")
    new_version = cfg["version"] + 1
    conn.execute(
        text(
            "update experiment_config set promoted_variant_key = :v,"
            " promoted_config = cast(:c as jsonb), version = :ver, updated_at = now()"
            " where experiment_key = :k"
        ),
        {
            "v": variant,
            "c": json.dumps(variants[variant].get("config", {})),
            "ver": new_version,
            "k": key,
        },
    )
    _audit(conn, key, variant, "promote", actor, run_id, reason, cfg)
    return PromotionOutcome(True, new_version, f"promoted '{variant}' (config v{new_version})")


def rollback(
    conn: Connection, key: str, *, actor: str, reason: str | None, run_id: UUID | None = None
) -> PromotionOutcome:
    """Undo the current promotion: restore the config that preceded the last promote."""
    cfg = _locked_config(conn, key)
    if cfg["promoted_variant_key"] is None:
        return PromotionOutcome(False, cfg["version"], "nothing is promoted")
    prev = conn.execute(
        text(
            "select previous_config from promotions where experiment_key = :k"
            " and action = 'promote' order by id desc limit 1"
        ),
        {"k": key},
    ).scalar()
    prev_variant = (prev or {}).get("promoted_variant_key")
    prev_config = (prev or {}).get("promoted_config")
    new_version = cfg["version"] + 1
    conn.execute(
        text(
            "update experiment_config set promoted_variant_key = :v,"
            " promoted_config = cast(:c as jsonb), version = :ver, updated_at = now()"
            " where experiment_key = :k"
        ),
        {
            "v": prev_variant,
            "c": None if prev_config is None else json.dumps(prev_config),
            "ver": new_version,
            "k": key,
        },
    )
    _audit(conn, key, cfg["promoted_variant_key"], "rollback", actor, run_id, reason, cfg)
    restored = f"'{prev_variant}'" if prev_variant else "the weighted split"
    return PromotionOutcome(True, new_version, f"rolled back to {restored} (config v{new_version})")


def reweight(
    conn: Connection,
    key: str,
    weights: dict[str, float],
    *,
    actor: str,
    reason: str | None,
    run_id: UUID | None = None,
) -> PromotionOutcome:
    """Write new traffic weights (bandit) into experiment_config; a no-op if unchanged."""
    cfg = _locked_config(conn, key)
    variants = [dict(v) for v in cfg["variants"]]
    if {v["key"] for v in variants} != set(weights):
        raise PromotionRefused(f"reweight of '{key}' must name every variant exactly once")
    if all(abs(float(v["weight"]) - weights[v["key"]]) < 1e-9 for v in variants):
        return PromotionOutcome(False, cfg["version"], "weights unchanged")
    for v in variants:
        v["weight"] = round(weights[v["key"]], 6)
    new_version = cfg["version"] + 1
    conn.execute(
        text(
            "update experiment_config set variants = cast(:vs as jsonb), version = :ver,"
            " updated_at = now() where experiment_key = :k"
        ),
        {"vs": json.dumps(variants), "ver": new_version, "k": key},
    )
    _audit(conn, key, None, "reweight", actor, run_id, reason, cfg)
    return PromotionOutcome(True, new_version, f"reweighted (config v{new_version})")


def _audit(
    conn: Connection,
    key: str,
    variant: str | None,
    action: str,
    actor: str,
    run_id: UUID | None,
    reason: str | None,
    cfg,
) -> None:
    previous = {
        "promoted_variant_key": cfg["promoted_variant_key"],
        "promoted_config": cfg["promoted_config"],
        "variants": cfg["variants"],
        "version": cfg["version"],
    }
    conn.execute(
        text(
            "insert into promotions (experiment_key, variant_key, action, actor, run_id, reason,"
            " previous_config) values (:k, :v, :a, :actor, :run, :reason, cast(:prev as jsonb))"
        ),
        {
            "k": key,
            "v": variant,
            "a": action,
            "actor": actor,
            "run": run_id,
            "reason": reason,
            "prev": json.dumps(previous),
        },
    )
