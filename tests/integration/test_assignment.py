"""SQL assign_variant() and the Python client agree on every unit and honour the weights."""

from __future__ import annotations

import numpy as np
from sqlalchemy import Engine, text

from abflow.client import AbflowClient
from abflow.definitions import parse_experiment
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.promotion import promote, rollback

N_UNITS = 100_000


def _experiment(key: str, weights: list[float], status: str = "running") -> dict:
    names = ["control", "b", "c"][: len(weights)]
    return {
        "key": key,
        "name": key,
        "status": status,
        "start_at": "2026-11-01T00:00:00Z",
        "variants": [
            {"key": n, "weight": w, "control": n == "control", "config": {"arm": n}}
            for n, w in zip(names, weights, strict=True)
        ],
        "metrics": [{"key": "conv", "kind": "proportion", "event": "purchase", "role": "primary"}],
    }


def test_sql_and_python_agree_on_100k_units(engine: Engine) -> None:
    weights = [0.2, 0.3, 0.5]
    exp = parse_experiment(_experiment("assign_split", weights))
    with engine.begin() as conn:
        upsert_experiments(conn, [exp])
        rows = conn.execute(
            text(
                "select 'u' || g as unit_id, assign_variant('assign_split', 'u' || g)"
                " from generate_series(1, :n) g"
            ),
            {"n": N_UNITS},
        ).all()
    client = AbflowClient(engine)
    py = [client.assign_variant("assign_split", unit) for unit, _ in rows]
    sql_side = [v for _, v in rows]
    assert py == sql_side
    counts = {k: sql_side.count(k) / N_UNITS for k in ("control", "b", "c")}
    for k, w in zip(("control", "b", "c"), weights, strict=True):
        assert abs(counts[k] - w) < 0.01, counts


def test_promotion_overrides_and_stopped_returns_control(engine: Engine) -> None:
    exp = parse_experiment(_experiment("assign_promo", [0.5, 0.5]))
    with engine.begin() as conn:
        upsert_experiments(conn, [exp])
        # No analysis run exists: a person may still promote, with --force and a reason.
        promote(conn, "assign_promo", "b", actor="test", reason="assignment test", force=True)
    client = AbflowClient(engine, ttl_seconds=0)
    units = [f"x{i}" for i in range(200)]
    with engine.connect() as conn:
        sql_side = [
            conn.execute(text("select assign_variant('assign_promo', :u)"), {"u": u}).scalar()
            for u in units
        ]
    assert set(sql_side) == {"b"}
    assert {client.assign_variant("assign_promo", u) for u in units} == {"b"}
    assert client.variant_config("assign_promo", "x1") == {"arm": "b"}
    with engine.begin() as conn:
        rollback(conn, "assign_promo", actor="test", reason="undo")
        upsert_experiments(
            conn, [parse_experiment(_experiment("assign_promo", [0.5, 0.5], "stopped"))]
        )
    with engine.connect() as conn:
        stopped = {
            conn.execute(text("select assign_variant('assign_promo', :u)"), {"u": u}).scalar()
            for u in units
        }
    assert stopped == {"control"}
    assert {client.assign_variant("assign_promo", u) for u in units} == {"control"}


def test_python_bucket_is_uniform() -> None:
    from abflow.assignment import bucket

    b = np.array([bucket("uniform", str(i)) for i in range(20_000)])
    assert 0 <= b.min() and b.max() < 1
    hist, _ = np.histogram(b, bins=10, range=(0, 1))
    assert (abs(hist / len(b) - 0.1) < 0.01).all()
