"""Each decision reached from generated warehouse data built to produce it; a bandit reweight."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, text

from abflow.bandit import allocate, primary_arms, thompson_weights
from abflow.definitions import Experiment, parse_experiment
from abflow.results import ExperimentResult
from abflow.warehouse import writer
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.promotion import reweight
from tests.conftest import DEMO_AS_OF, analyse


def _definition(
    key: str, arms: dict[str, float], *, start: str, metrics: list[dict[str, Any]], **extra: Any
) -> Experiment:
    keys = list(arms)
    w = round(1 / len(keys), 6)
    weights = [round(1 - w * (len(keys) - 1), 6)] + [w] * (len(keys) - 1)
    return parse_experiment(
        {
            "key": key,
            "name": key,
            "status": "running",
            "start_at": start,
            "variants": [
                {"key": k, "weight": wt, "control": i == 0, "config": {"arm": k}}
                for i, (k, wt) in enumerate(zip(keys, weights, strict=True))
            ],
            "metrics": metrics,
            **extra,
        }
    )


def _conv(mde: float | None = None) -> dict[str, Any]:
    m: dict[str, Any] = {"key": "conv", "kind": "proportion", "event": "dec_buy", "role": "primary"}
    return {**m, "mde": mde} if mde else m


def _load(
    conn: Connection,
    e: Experiment,
    arms: dict[str, float],
    per_arm: int,
    *,
    latency: bool = False,
) -> None:
    """Round-robin exposures spread evenly from start to 2 h before as_of; events 1 h later."""
    prefix = f"{e.key}_"
    span = (DEMO_AS_OF - e.start_at).total_seconds() - 7200
    keys = list(arms)
    conn.execute(
        text(
            "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
            " select :k, :p || g, (cast(:keys as text[]))[1 + g % :n],"
            " cast(:start as timestamptz) + (g * :span / :total) * interval '1 second'"
            " from generate_series(0, :total - 1) g"
        ),
        {
            "k": e.key,
            "p": prefix,
            "keys": keys,
            "n": len(keys),
            "start": e.start_at,
            "span": span,
            "total": per_arm * len(keys),
        },
    )
    for variant, rate in arms.items():
        conn.execute(
            text(
                "insert into events (unit_id, event_name, value, occurred_at)"
                " select unit_id, 'dec_buy', null, assigned_at + interval '1 hour'"
                " from assignments where experiment_key = :k and variant_key = :v"
                # A deterministic uniform [0, 1) per unit from md5(unit_id): arms differ only
                # by their rate, never by the pattern.
                " and ('x' || substr(md5(unit_id), 1, 7))::bit(28)::int / 268435456.0 < :rate"
            ),
            {"k": e.key, "v": variant, "rate": rate},
        )
    if latency:
        # Page loads around 200 ms, the same in every arm: a guardrail that holds.
        conn.execute(
            text(
                "insert into events (unit_id, event_name, value, occurred_at)"
                " select unit_id, 'dec_page_load',"
                " 150 + 100 * (('x' || substr(md5(unit_id), 1, 7))::bit(28)::int / 268435456.0),"
                " assigned_at + interval '30 minutes'"
                " from assignments where experiment_key = :k"
            ),
            {"k": e.key},
        )


def _run(engine: Engine, e: Experiment, run_id: uuid.UUID | None = None) -> ExperimentResult:
    """Extraction in one snapshot, then the pure assembly (as abflow.tasks.warehouse does)."""
    return analyse(engine, e, run_id=run_id)


def _seed(engine: Engine, e: Experiment, arms: dict[str, float], per_arm: int, **kw: Any) -> None:
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
        # Idempotent within a session (e.g. pytest --count): only our own prefixed rows.
        conn.execute(text("delete from events where unit_id like :p"), {"p": f"{e.key}\\_%"})
        conn.execute(text("delete from assignments where experiment_key = :k"), {"k": e.key})
        _load(conn, e, arms, per_arm, **kw)


def _primary(result: ExperimentResult, variant: str) -> Any:
    return next(
        i
        for i in result.insights
        if i.metric_key == "conv" and i.variant_key == variant and i.segment == "all"
    )


def test_ship_from_data(engine: Engine) -> None:
    latency = {
        "key": "latency_ms",
        "kind": "mean",
        "event": "dec_page_load",
        "value": "mean",
        "direction": "decrease",
        "role": "guardrail",
        "non_inferiority_margin": 0.05,
    }
    arms = {"control": 0.10, "b": 0.13}
    e = _definition("dec_ship", arms, start="2026-11-07T00:00:00Z", metrics=[_conv(), latency])
    _seed(engine, e, arms, 4000, latency=True)
    result = _run(engine, e)
    rec = result.recommendation
    assert rec is not None and result.run.status == "succeeded"
    assert (rec.decision, rec.variant_key) == ("ship", "b"), rec.rationale
    p = _primary(result, "b")
    # Always-valid p (the daily schedule may have looked every day): significant at α = 0.05.
    assert p.significant and 0.2 < p.rel_lift < 0.4 and p.p_value < 0.05
    assert f"{p.rel_lift * 100:+.1f}%" in rec.rationale
    assert "latency_ms upper bound" in rec.rationale and "Ship it." in rec.rationale
    # Written like write_results does, apps see it through latest_recommendations.
    with engine.begin() as conn:
        writer.lock_experiment(conn, e.key, 10)
        writer.write_result(conn, result)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "select decision, variant_key, run_status from latest_recommendations"
                " where experiment_key = :k"
            ),
            {"k": e.key},
        ).one()
    assert tuple(row) == ("ship", "b", "succeeded")


def test_rollback_from_data(engine: Engine) -> None:
    arms = {"control": 0.15, "b": 0.10}
    e = _definition("dec_rollback", arms, start="2026-11-10T00:00:00Z", metrics=[_conv()])
    _seed(engine, e, arms, 6000)
    result = _run(engine, e)
    rec = result.recommendation
    assert rec is not None
    assert (rec.decision, rec.variant_key) == ("rollback", "control"), rec.rationale
    p = _primary(result, "b")
    assert p.significant and p.rel_lift < -0.2
    assert f"conv worse by {p.rel_lift * 100:+.1f}%" in rec.rationale


def test_stop_inconclusive_from_data(engine: Engine) -> None:
    arms = {"control": 0.20, "b": 0.20}
    # A 30% relative MDE on a 20% baseline plans for ~1,700 units per arm under the always-valid
    # rule (a few hundred at a fixed horizon); 2,500 exceed it.
    e = _definition("dec_stop", arms, start="2026-11-01T00:00:00Z", metrics=[_conv(mde=0.3)])
    _seed(engine, e, arms, 2500)
    result = _run(engine, e)
    rec = result.recommendation
    assert rec is not None
    assert rec.decision == "stop_inconclusive", rec.rationale
    needed = rec.details["required_per_variant"]
    assert needed is not None and needed < 2500
    assert f"planned sample of {needed} units per variant is reached" in rec.rationale
    assert not _primary(result, "b").significant


def test_keep_running_from_data(engine: Engine) -> None:
    arms = {"control": 0.10, "b": 0.10}
    e = _definition("dec_keep", arms, start="2026-11-15T00:00:00Z", metrics=[_conv()])
    _seed(engine, e, arms, 600)
    result = _run(engine, e)
    rec = result.recommendation
    assert rec is not None and result.run.status == "succeeded"
    assert (rec.decision, rec.variant_key) == ("keep_running", None), rec.rationale
    # 600 units per arm in 6 days, 100/day: about (needed - 600) / 100 more days.
    needed = rec.details["required_per_variant"]
    assert rec.days_remaining == pytest.approx((needed - 600) / 100, abs=0.01)
    assert f"about {(needed - 600) / 100:.0f} more days" in rec.rationale


def _config(engine: Engine, key: str) -> dict[str, Any]:
    with engine.connect() as conn:
        cfg = dict(
            conn.execute(
                text("select variants, version from experiment_config where experiment_key = :k"),
                {"k": key},
            )
            .mappings()
            .one()
        )
        cfg["audit"] = conn.execute(
            text(
                "select action, actor, run_id, reason from promotions where experiment_key = :k"
                " order by id"
            ),
            {"k": key},
        ).all()
    return cfg


def _write_with_bandit(engine: Engine, e: Experiment, result: ExperimentResult) -> bool:
    """What write_results does for allocation: bandit: results, then weights, one transaction."""
    with engine.begin() as conn:
        writer.lock_experiment(conn, e.key, 10)
        writer.write_result(conn, result)
        if result.run.status != "succeeded":
            return False
        decision = allocate(e, result.variant_stats)
        if not decision.reweighted:
            return False
        return reweight(
            conn,
            e.key,
            decision.weights,
            actor="auto",
            reason=decision.reason,
            run_id=result.run.run_id,
        ).changed


def test_bandit_reweights_once_towards_the_winner(engine: Engine) -> None:
    arms = {"control": 0.10, "b": 0.10, "c": 0.14}
    e = _definition(
        "dec_bandit", arms, start="2026-11-12T00:00:00Z", metrics=[_conv()], allocation="bandit"
    )
    _seed(engine, e, arms, 2000)
    before = _config(engine, e.key)
    assert [v["weight"] for v in before["variants"]] == [0.333334, 0.333333, 0.333333]

    result = _run(engine, e)
    assert result.run.status == "succeeded"
    arms_stats = primary_arms(e, result.variant_stats)
    assert [(k, s.n) for k, s in arms_stats] == [("control", 2000), ("b", 2000), ("c", 2000)]
    direct = thompson_weights(arms_stats, floor=0.01, min_units=100, seed=0)
    assert direct.reweighted and direct == allocate(e, result.variant_stats)
    assert max(direct.probabilities, key=direct.probabilities.__getitem__) == "c"
    assert _write_with_bandit(engine, e, result)
    after = _config(engine, e.key)
    weights = {v["key"]: v["weight"] for v in after["variants"]}
    assert after["version"] == before["version"] + 1
    assert weights == direct.weights
    assert weights["c"] > 0.9 and min(weights.values()) >= e.decision.bandit_floor
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-9)
    # Order and configs are untouched: only the weights move.
    assert [v["key"] for v in after["variants"]] == ["control", "b", "c"]
    assert [v["config"] for v in after["variants"]] == [v["config"] for v in before["variants"]]
    reweights = [a for a in after["audit"] if a.action == "reweight"]
    assert len(reweights) == len([a for a in before["audit"] if a.action == "reweight"]) + 1
    last = reweights[-1]
    assert last.actor == "auto" and last.run_id == result.run.run_id
    assert "Thompson sampling" in last.reason and "c 9" in last.reason

    # Same data, new run: identical weights, so no new version and no second audit row.
    assert not _write_with_bandit(engine, e, _run(engine, e))
    again = _config(engine, e.key)
    assert again["version"] == after["version"] and again["variants"] == after["variants"]
    assert len(again["audit"]) == len(after["audit"])

    # Re-applying the definition (experiments apply) keeps the bandit's weights.
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
    assert _config(engine, e.key)["variants"] == after["variants"]


def test_bandit_waits_for_min_units(engine: Engine) -> None:
    arms = {"control": 0.10, "b": 0.30}
    e = _definition(
        "dec_bandit_thin",
        arms,
        start="2026-11-12T00:00:00Z",
        metrics=[_conv()],
        allocation="bandit",
        decision={"bandit_min_units": 500},
    )
    _seed(engine, e, arms, 300)
    before = _config(engine, e.key)
    assert not _write_with_bandit(engine, e, _run(engine, e))
    assert _config(engine, e.key) == before
