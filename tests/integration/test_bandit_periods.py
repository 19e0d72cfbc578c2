"""A bandit through the warehouse (embedded PostgreSQL) with two reweights (issue 19).

Exposures arrive in three allocation periods, each split by the weights experiment_config held
at the time, while the base rate climbs from 10% to 20% to 30% and the arms do not differ. Every
run goes through the flow's own tasks as an `abflow_writer` login: the allocation periods from
the promotions history, the one metric pass with its '#period=N' rows (full pass and
incremental refresh), the analysis, and the write that reweights. The periods start at the
real `promotions.at` instants, so the data is timed around the wall clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prefect.logging import disable_run_logger
from sqlalchemy import Engine, text

from abflow.decisions.bandit_sim import bandit_experiment
from abflow.definitions import Experiment, parse_experiment
from abflow.results import ExperimentResult
from abflow.settings import Settings
from abflow.tasks.analysis import compute_statistics
from abflow.tasks.warehouse import allocation_periods, extract_aggregates, write_results
from abflow.warehouse.experiments_repo import upsert_experiments
from tests.conftest import login_engine

RATES = (0.10, 0.20, 0.30)
UNITS = 3000


@pytest.fixture()
def writer_url(engine: Engine, settings: Settings) -> Iterator[str]:
    for user_engine in login_engine(engine, settings, "abflow_writer"):
        yield user_engine.url.render_as_string(hide_password=False)


def _experiment(engine: Engine, key: str, start: datetime) -> Experiment:
    base = bandit_experiment(key=key, start=start).model_dump(mode="json")
    revenue = {"key": "revenue", "kind": "mean", "event": "purchase", "value": "sum"}
    e = parse_experiment({**base, "metrics": [*base["metrics"], revenue]})
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
    return e


def _weights(engine: Engine, key: str) -> dict[str, float]:
    with engine.connect() as conn:
        variants = conn.execute(
            text("select variants from experiment_config where experiment_key = :k"), {"k": key}
        ).scalar_one()
    return {v["key"]: float(v["weight"]) for v in variants}


def _expose(
    engine: Engine,
    key: str,
    after: datetime,
    weights: dict[str, float],
    rate: float,
    rng: np.random.Generator,
    period: int,
    lift: float = 0.0,
) -> dict[str, int]:
    """UNITS first exposures just after `after`, split by `weights`, converting at `rate`

    (b at `rate` x (1 + lift)).
    """
    arms = rng.choice(list(weights), size=UNITS, p=list(weights.values()))
    offsets = rng.uniform(0.001, 0.3, size=UNITS)
    assignments, events = [], []
    for i, (arm, off) in enumerate(zip(arms, offsets, strict=True)):
        unit = f"{key}-{period}-{i}"
        at = after + timedelta(seconds=float(off))
        assignments.append({"k": key, "u": unit, "v": str(arm), "t": at})
        if rng.random() < rate * (1 + lift if arm == "b" else 1):
            events.append({"u": unit, "t": at + timedelta(milliseconds=5), "x": 10.0})
    with engine.begin() as conn:
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                " values (:k, :u, :v, :t)"
            ),
            assignments,
        )
        conn.execute(
            text(
                "insert into events (unit_id, event_name, value, occurred_at)"
                " values (:u, 'purchase', :x, :t)"
            ),
            events,
        )
    time.sleep(0.35)  # every exposure and event is then in the past: as_of = now
    return {k: int((arms == k).sum()) for k in weights}


def _run(settings: Settings, url: str, e: Experiment) -> tuple[ExperimentResult, str | None]:
    """One scheduled run of the experiment through the flow's tasks (without Prefect)."""
    as_of = datetime.now(UTC)
    with disable_run_logger():
        periods = allocation_periods.fn(settings, url, e, as_of)
        stats, exposure = extract_aggregates.fn(settings, url, e, as_of, False, periods)
        result = compute_statistics.fn(
            uuid.uuid4(), e, as_of, None, as_of, as_of, stats, exposure, [], periods
        )
        return result, write_results.fn(settings, url, result, e)


def _reweights(engine: Engine, key: str) -> list[datetime]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                text(
                    "select at from promotions where experiment_key = :k and action = 'reweight'"
                    " order by id"
                ),
                {"k": key},
            ).scalars()
        )


@pytest.mark.parametrize("incremental", [False, True], ids=["full_pass", "incremental"])
def test_two_reweights_give_three_periods_and_honest_results(
    engine: Engine, settings: Settings, writer_url: str, incremental: bool
) -> None:
    key = f"bandit_it_{'inc' if incremental else 'full'}_{uuid.uuid4().hex[:6]}"
    run_settings = settings.model_copy(update={"incremental": incremental})
    start = datetime.now(UTC) - timedelta(hours=1)
    e = _experiment(engine, key, start)
    rng = np.random.default_rng(1919)
    served: list[tuple[dict[str, float], dict[str, int]]] = []
    after = start + timedelta(minutes=1)
    messages: list[Any] = []
    for period, rate in enumerate(RATES, start=1):
        weights = _weights(engine, key)
        served.append((weights, _expose(engine, key, after, weights, rate, rng, period)))
        result, message = _run(run_settings, writer_url, e)
        messages.append(message)
        assert result.run.status == "succeeded", result.run.message
        if period < len(RATES):
            assert message is not None and message.startswith("reweighted"), message
            after = _reweights(engine, key)[-1]
    # two reweights started periods 2 and 3; the last run wrote a third (for period 4)
    reweights = _reweights(engine, key)
    assert len(reweights) == 3, messages
    reweights = reweights[:2]

    # the last run saw three periods, each with the weights in force and its own units
    srm = next(c for c in result.health_checks if c.check_name == "srm")
    assert srm.passed and srm.severity == "critical", srm.details
    assert [p["start"] for p in srm.details["periods"]] == [
        t.isoformat() for t in (start, *reweights)
    ]
    for p, (weights, counts) in zip(srm.details["periods"], served, strict=True):
        assert p["weights"] == pytest.approx(weights)
        assert p["counts"] == counts
    by_segment = {
        (r.segment, r.variant_key): r.units
        for r in result.variant_stats
        if r.metric_key == "conversion"
    }
    for i, (_, counts) in enumerate(served, start=1):
        for arm, n in counts.items():
            assert by_segment.get((f"#period={i}", arm), 0) == n
    assert by_segment[("all", "b")] == sum(c["b"] for _, c in served)

    # no true difference: the period-combined lift is small and not significant, although
    # the baseline tripled while the weights moved
    primary = next(
        i for i in result.insights if i.metric_key == "conversion" and i.segment == "all"
    )
    assert primary.method == "welch_t+period_weighted"
    assert abs(primary.rel_lift) < 0.15 and primary.p_value > 0.01, primary
    assert primary.rel_ci_low < 0 < primary.rel_ci_high
    history = result.recommendation.details["bandit"]["weight_history"]  # type: ignore[union-attr]
    assert [h["units"] for h in history] == [c for _, c in served]

    # what was written is what the report and the CLI read back
    with engine.connect() as conn:
        written = conn.execute(
            text(
                "select count(*) from variant_stats where run_id = :r and segment like '#period=%'"
            ),
            {"r": result.run.run_id},
        ).scalar_one()
        method = conn.execute(
            text(
                "select method from insights where run_id = :r and metric_key = 'conversion'"
                " and segment = 'all'"
            ),
            {"r": result.run.run_id},
        ).scalar_one()
    assert written == 2 * 2 * 3  # metrics x arms x periods
    assert method == "welch_t+period_weighted"


def test_a_split_that_ignores_the_reweight_fails_srm(
    engine: Engine, settings: Settings, writer_url: str
) -> None:
    key = f"bandit_it_broken_{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC) - timedelta(hours=1)
    e = _experiment(engine, key, start)
    rng = np.random.default_rng(7)
    # b far ahead (20% vs 10%), so the reweight moves most traffic to it
    split = {"control": 0.5, "b": 0.5}
    _expose(engine, key, start + timedelta(minutes=1), split, 0.10, rng, 1, lift=1.0)
    first, message = _run(settings, writer_url, e)
    assert first.run.status == "succeeded" and (message or "").startswith("reweighted")
    new = _weights(engine, key)
    assert new["b"] > 0.9, new
    # the application keeps serving 50/50 after the reweight
    _expose(engine, key, _reweights(engine, key)[-1], {"control": 0.5, "b": 0.5}, 0.2, rng, 2)
    broken, message = _run(settings, writer_url, e)
    srm = next(c for c in broken.health_checks if c.check_name == "srm")
    assert not srm.passed and srm.severity == "critical", srm
    assert broken.run.status == "unhealthy"
    assert len(_reweights(engine, key)) == 1  # an unhealthy run never reweights
