"""Changes to experiment_config, each one version step with one audit row in promotions.

People: `promote` (gated on the newest run), `rollback` (a stack down to the weighted split) and
`unpin`. A manual promote or rollback pins the config, and a pinned config is never changed by
the rules. The rules: `apply_run_outcome` auto-promotes a ship or writes bandit weights, but only
for the newest analysis of an unpinned config and never from a backfill.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, RowMapping, text

from abflow.definitions import Experiment
from abflow.results import ExperimentResult
from abflow.summary import utc_minute as _when
from abflow.warehouse.writer import lock_experiment

DEFAULT_LOCK_TIMEOUT_SECONDS = 300.0


class PromotionRefused(RuntimeError):
    """A promotion cannot be applied; the message says why in one line."""


class NothingToRollBack(PromotionRefused):
    """Rollback at the bottom of the stack: the config is already on its weighted split."""


@dataclass(frozen=True)
class PromotionOutcome:
    """What a promotion call did."""

    changed: bool
    version: int
    message: str


def _locked_config(
    conn: Connection, key: str, lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS
) -> RowMapping:
    """The config row, locked: the experiment's advisory lock (as writes take it), then the row."""
    # Re-entrant within a transaction: a result write that already holds it does not wait.
    lock_experiment(conn, key, lock_timeout_seconds)
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


def newest_run(conn: Connection, key: str) -> RowMapping | None:
    """The newest analysis run of an experiment, failed ones included (latest_runs skips those)."""
    return (
        conn.execute(
            text(
                "select status, message, as_of from analysis_runs where experiment_key = :k"
                " order by as_of desc, started_at desc limit 1"
            ),
            {"k": key},
        )
        .mappings()
        .first()
    )


def promote_gate(conn: Connection, key: str) -> str | None:
    """Why a person may not promote now (None when the newest run succeeded)."""
    run = newest_run(conn, key)
    if run is None:
        return "it has no analysis run yet"
    if run["status"] == "unhealthy":
        return f"the latest run is unhealthy ({run['message']})"
    if run["status"] != "succeeded":
        return f"the latest run (as of {_when(run['as_of'])}) {run['status']}: {run['message']}"
    return None


def _step(
    conn: Connection,
    cfg: RowMapping,
    action: str,
    *,
    actor: str,
    reason: str | None,
    variant: str | None,
    run_id: UUID | None = None,
    promoted: tuple[str | None, Any] | None = None,
    variants: list[dict[str, Any]] | None = None,
    pin: bool | None = None,
) -> int:
    """One version step of a config and its audit row; returns the new version.

    promoted=(variant, config) sets the override (None, None is the weighted split); variants
    replaces the weights; pin=True pins to (actor, reason, now), False unpins, None leaves it.
    """
    # No actor given: the database login asked (the same default the audit trigger applies).
    actor = actor or str(conn.execute(text("select session_user")).scalar_one())
    version: int = conn.execute(
        text(
            "update experiment_config set"
            " promoted_variant_key = case when cast(:set_promoted as boolean)"
            "   then cast(:pv as text) else promoted_variant_key end,"
            " promoted_config = case when cast(:set_promoted as boolean)"
            "   then cast(:pc as jsonb) else promoted_config end,"
            " variants = coalesce(cast(:vs as jsonb), variants),"
            " pinned = coalesce(cast(:pin as boolean), pinned),"
            " pinned_by = case when cast(:pin as boolean) is null then pinned_by"
            "   when cast(:pin as boolean) then cast(:actor as text) end,"
            " pinned_reason = case when cast(:pin as boolean) is null then pinned_reason"
            "   when cast(:pin as boolean) then cast(:reason as text) end,"
            " pinned_at = case when cast(:pin as boolean) is null then pinned_at"
            "   when cast(:pin as boolean) then now() end,"
            " version = version + 1, updated_at = now()"
            " where experiment_key = :k returning version"
        ),
        {
            "set_promoted": promoted is not None,
            "pv": promoted[0] if promoted else None,
            "pc": None if promoted is None or promoted[1] is None else json.dumps(promoted[1]),
            "vs": None if variants is None else json.dumps(variants),
            "pin": pin,
            "actor": actor,
            "reason": reason,
            "k": cfg["experiment_key"],
        },
    ).scalar_one()
    previous = {
        "promoted_variant_key": cfg["promoted_variant_key"],
        "promoted_config": cfg["promoted_config"],
        "variants": cfg["variants"],
        "version": cfg["version"],
        "pinned": cfg["pinned"],
    }
    conn.execute(
        text(
            "insert into promotions (experiment_key, variant_key, action, actor, run_id, reason,"
            " previous_config, version) values (:k, :v, :a, :actor, :run, :reason,"
            " cast(:prev as jsonb), :version)"
        ),
        {
            "k": cfg["experiment_key"],
            "v": variant,
            "a": action,
            "actor": actor,
            "run": run_id,
            "reason": reason,
            "prev": json.dumps(previous, default=str),
            "version": version,
        },
    )
    return version


def _variant(cfg: RowMapping, variant: str | None) -> dict[str, Any] | None:
    return next((v for v in cfg["variants"] if v["key"] == variant), None)


def _variant_config(cfg: RowMapping, variant: str) -> Any:
    found = _variant(cfg, variant)
    return None if found is None else found.get("config") or {}


# --- people ----------------------------------------------------------------------------------


def promote(
    conn: Connection,
    key: str,
    variant: str,
    *,
    actor: str,
    reason: str | None = None,
    run_id: UUID | None = None,
    force: bool = False,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> PromotionOutcome:
    """A person promotes a variant and pins the config (one version step, one `promote` row).

    Refused unless the newest run (failed ones included) succeeded; force overrides that and
    needs a reason, recorded with what was overridden. Promoting the variant the rules already
    promoted only pins it (a `pin` row).
    """
    if force and not (reason or "").strip():
        raise PromotionRefused("--force needs --reason: say why the latest run may be overridden")
    cfg = _locked_config(conn, key, lock_timeout_seconds)
    if _variant(cfg, variant) is None:
        raise PromotionRefused(
            f"variant '{variant}' is not in experiment '{key}' (variants: "
            f"{', '.join(v['key'] for v in cfg['variants'])})"
        )
    refusal = promote_gate(conn, key)
    if refusal and not force:
        raise PromotionRefused(
            f"refusing to promote '{variant}' in '{key}': {refusal}"
            ' (override with --force --reason "…")'
        )
    why = reason or "manual promotion"
    if refusal:
        why = f"{why} [forced: {refusal}]"
    unpin_hint = f"runs leave it alone until `abflow unpin {key}`"
    if cfg["promoted_variant_key"] == variant:
        if cfg["pinned"]:
            return PromotionOutcome(
                False, cfg["version"], f"'{variant}' is already promoted and pinned"
            )
        version = _step(conn, cfg, "pin", actor=actor, reason=why, variant=variant, pin=True)
        return PromotionOutcome(
            True,
            version,
            f"'{variant}' was already promoted; pinned (config v{version}): " + unpin_hint,
        )
    version = _step(
        conn,
        cfg,
        "promote",
        actor=actor,
        reason=why,
        variant=variant,
        run_id=run_id,
        promoted=(variant, _variant_config(cfg, variant)),
        pin=True,
    )
    return PromotionOutcome(
        True, version, f"promoted '{variant}' and pinned (config v{version}): {unpin_hint}"
    )


def _state_below(conn: Connection, key: str) -> tuple[str | None, Any]:
    """(variant, config) in force before the newest promotion not yet rolled back.

    The promote and rollback rows form a stack: a promote pushes the state it replaced, a
    rollback pops one. An empty stack is the weighted split.
    """
    rows = conn.execute(
        text(
            "select action, previous_config from promotions where experiment_key = :k"
            " and action in ('promote', 'rollback') order by id"
        ),
        {"k": key},
    ).mappings()
    stack: list[tuple[str | None, Any]] = []
    for row in rows:
        if row["action"] == "promote":
            prev = row["previous_config"] or {}
            stack.append((prev.get("promoted_variant_key"), prev.get("promoted_config")))
        elif stack:
            stack.pop()
    return stack[-1] if stack else (None, None)


def rollback(
    conn: Connection,
    key: str,
    *,
    actor: str,
    reason: str | None = None,
    run_id: UUID | None = None,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> PromotionOutcome:
    """Undo the newest promotion still in force and pin the result (one `rollback` row).

    Repeated calls walk back through the promotions down to the weighted split; there
    NothingToRollBack is raised.
    """
    cfg = _locked_config(conn, key, lock_timeout_seconds)
    current = cfg["promoted_variant_key"]
    if current is None:
        raise NothingToRollBack(
            f"nothing to roll back in '{key}': it is on its weighted split (config "
            f"v{cfg['version']})"
        )
    target, snapshot = _state_below(conn, key)
    # The variant's config as defined now; its snapshot if the definition dropped it since.
    config = None if target is None else _variant_config(cfg, target)
    version = _step(
        conn,
        cfg,
        "rollback",
        actor=actor,
        reason=reason or "manual rollback",
        variant=current,
        run_id=run_id,
        promoted=(target, snapshot if target is not None and config is None else config),
        pin=True,
    )
    restored = f"'{target}'" if target else "the weighted split"
    return PromotionOutcome(
        True,
        version,
        f"rolled back '{current}' to {restored} and pinned (config v{version}):"
        f" runs leave it alone until `abflow unpin {key}`",
    )


def unpin(
    conn: Connection,
    key: str,
    *,
    actor: str,
    reason: str | None = None,
    lock_timeout_seconds: float = DEFAULT_LOCK_TIMEOUT_SECONDS,
) -> PromotionOutcome:
    """Hand a pinned config back to the decision rules (one `unpin` row); a no-op if not pinned."""
    cfg = _locked_config(conn, key, lock_timeout_seconds)
    if not cfg["pinned"]:
        return PromotionOutcome(
            False, cfg["version"], "not pinned: the decision rules already control this config"
        )
    version = _step(
        conn,
        cfg,
        "unpin",
        actor=actor,
        reason=reason or "manual unpin",
        variant=cfg["promoted_variant_key"],
        pin=False,
    )
    return PromotionOutcome(
        True,
        version,
        f"unpinned (config v{version}; pinned by {cfg['pinned_by']} since "
        f"{_when(cfg['pinned_at'])}): the newest healthy analysis may change it again",
    )


# --- the rules -------------------------------------------------------------------------------


def reweight(
    conn: Connection,
    key: str,
    weights: dict[str, float],
    *,
    actor: str,
    reason: str | None,
    run_id: UUID | None = None,
) -> PromotionOutcome:
    """Write new traffic weights (bandit) into experiment_config; a no-op if unchanged.

    The primitive: apply_run_outcome decides whether a run may call it (pins, newest run).
    """
    cfg = _locked_config(conn, key)
    variants = [dict(v) for v in cfg["variants"]]
    if {v["key"] for v in variants} != set(weights):
        raise PromotionRefused(f"reweight of '{key}' must name every variant exactly once")
    if all(abs(float(v["weight"]) - weights[v["key"]]) < 1e-9 for v in variants):
        return PromotionOutcome(False, cfg["version"], "weights unchanged")
    for v in variants:
        v["weight"] = round(weights[v["key"]], 6)
    version = _step(
        conn, cfg, "reweight", actor=actor, reason=reason, variant=None, run_id=run_id,
        variants=variants,
    )  # fmt: skip
    return PromotionOutcome(True, version, f"reweighted (config v{version})")


def _blocked(conn: Connection, cfg: RowMapping, result: ExperimentResult) -> str | None:
    """Why this run may not change the config: a pin, or a newer analysis of the experiment."""
    if cfg["pinned"]:
        return (
            f"the config is pinned by {cfg['pinned_by']} since {_when(cfg['pinned_at'])}"
            f" ({cfg['pinned_reason']}); `abflow unpin {cfg['experiment_key']}` hands it back"
        )
    newer = conn.execute(
        text(
            "select max(as_of) from analysis_runs where experiment_key = :k and run_id <> :r"
            " and as_of > :a"
        ),
        {"k": result.run.experiment_key, "r": result.run.run_id, "a": result.run.as_of},
    ).scalar()
    if newer is not None:
        return f"a newer analysis (as of {_when(newer)}) exists; only the newest may change it"
    return None


def apply_run_outcome(
    conn: Connection, experiment: Experiment, result: ExperimentResult, *, backfill: bool = False
) -> str | None:
    """What a just-written run does to experiment_config: auto-promote a ship, or reweight.

    Call in the transaction that wrote the run, under the experiment's advisory lock. Nothing
    happens for a backfill, a pinned config or a run older than another run of the experiment;
    the message says why (None when the run had nothing to apply).
    """
    rec = result.recommendation
    healthy = result.run.status == "succeeded"
    wants_promotion = (
        experiment.decision.auto_promote
        and experiment.allocation == "fixed"
        and healthy
        and rec is not None
        and rec.decision == "ship"
        and bool(rec.variant_key)
    )
    wants_reweight = experiment.allocation == "bandit" and healthy
    if not (wants_promotion or wants_reweight):
        return None
    verb = "promoted" if wants_promotion else "reweighted"
    if backfill:
        return f"not {verb}: backfills never change experiment_config"
    cfg = _locked_config(conn, experiment.key)
    why_not = _blocked(conn, cfg, result)
    if why_not:
        return f"not {verb}: {why_not}"
    if wants_reweight:
        # Bandits never declare a winner: Thompson sampling moves traffic instead.
        # The weights in force now (not the defined ones): arms that cannot be judged keep them.
        current = {str(v["key"]): float(v["weight"]) for v in cfg["variants"]}
        # imported here: the CLI imports this module for PromotionRefused before every run,
        # and the bandit module brings NumPy and SciPy (~0.2 s) that only bandits need
        from abflow import bandit

        alloc = bandit.allocate(experiment, list(result.variant_stats), current)
        if not alloc.reweighted:
            return alloc.reason
        return reweight(
            conn, experiment.key, alloc.weights, actor="auto", reason=alloc.reason,
            run_id=result.run.run_id,
        ).message  # fmt: skip
    assert rec is not None and rec.variant_key  # wants_promotion
    if cfg["promoted_variant_key"] == rec.variant_key:
        return f"'{rec.variant_key}' is already promoted"
    if _variant(cfg, rec.variant_key) is None:
        raise PromotionRefused(
            f"variant '{rec.variant_key}' is not in experiment '{experiment.key}'"
        )
    config = _variant_config(cfg, rec.variant_key)
    version = _step(
        conn, cfg, "promote", actor="auto", reason=rec.rationale, variant=rec.variant_key,
        run_id=result.run.run_id, promoted=(rec.variant_key, config),
    )  # fmt: skip
    return f"promoted '{rec.variant_key}' (config v{version})"


# --- reading ---------------------------------------------------------------------------------


def configs(conn: Connection, keys: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """experiment_config rows by experiment key (all, or the given keys)."""
    rows = conn.execute(
        text(
            "select * from experiment_config where cast(:keys as text[]) is null"
            " or experiment_key = any(cast(:keys as text[]))"
        ),
        {"keys": keys},
    ).mappings()
    return {r["experiment_key"]: dict(r) for r in rows}
