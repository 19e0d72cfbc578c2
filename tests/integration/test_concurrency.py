"""A scheduled run, a backfill and an operator's promote/rollback racing on one experiment.

Real threads on the embedded server, each with its own connections, all as one writer-only login
(as production runs them): the scheduled run and the backfill go through the write task
(abflow.tasks.warehouse.write_results: replace the results, auto-promote a healthy ship), the
operator alternates promote and rollback. Whatever interleaving happens,
experiment_config.version must move 1, 2, 3, … with no gap and no number used twice, and every
step must be one promotions row whose previous_config holds the version it replaced.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from abflow.definitions import Experiment, parse_experiment
from abflow.settings import Settings
from abflow.tasks.warehouse import write_results
from abflow.warehouse import promotion
from abflow.warehouse.experiments_repo import upsert_experiments
from tests.conftest import analyse, login_engine

KEY = "race_exp"
AS_OF = datetime(2026, 11, 21, tzinfo=UTC)
ROUNDS = 12


def _experiment() -> Experiment:
    return parse_experiment(
        {
            "key": KEY,
            "name": "race",
            "status": "running",
            "start_at": "2026-11-01T00:00:00Z",
            "variants": [
                {"key": "control", "weight": 0.5, "control": True},
                {"key": "treatment", "weight": 0.5, "config": {"on": True}},
            ],
            "metrics": [
                {"key": "conv", "kind": "proportion", "event": "race_buy", "role": "primary"}
            ],
            "decision": {"auto_promote": True, "min_runtime_days": 3},
        }
    )


@pytest.fixture(scope="module")
def race(engine: Engine, settings: Settings) -> Iterator[tuple[Experiment, Settings, str, str]]:
    """A clearly winning treatment (ships), and a writer-only login to race with."""
    e = _experiment()
    with engine.begin() as conn:
        upsert_experiments(conn, [e])
        conn.execute(
            text(
                "insert into assignments (experiment_key, unit_id, variant_key, assigned_at)"
                " select :k, 'race' || g, case when g % 2 = 0 then 'control' else 'treatment' end,"
                " timestamptz '2026-11-02' + g * interval '13 minutes'"
                " from generate_series(1, 2000) g"
            ),
            {"k": KEY},
        )
        conn.execute(
            text(
                "insert into events (unit_id, event_name, occurred_at)"
                " select 'race' || g, 'race_buy',"
                " timestamptz '2026-11-02' + g * interval '13 minutes' + interval '1 hour'"
                " from generate_series(1, 2000) g"
                " where (g % 2 = 0 and g % 20 = 0) or (g % 2 = 1 and g % 10 = 1)"
            )
        )
    for user_engine in login_engine(engine, settings, "abflow_writer"):
        url = user_engine.url.render_as_string(hide_password=False)
        login = str(user_engine.url.username)
        yield e, settings.model_copy(update={"database_url": url}), url, login


def _config(engine: Engine) -> tuple[int, str | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "select version, promoted_variant_key from experiment_config"
                " where experiment_key = :k"
            ),
            {"k": KEY},
        ).one()
    return int(row[0]), row[1]


def test_racing_writers_leave_a_gap_free_audited_version_sequence(
    engine: Engine, race: tuple[Experiment, Settings, str, str]
) -> None:
    e, writer_settings, url, login = race
    # the scheduled run's result and the backfill's daily results, computed up front
    scheduled = analyse(engine, e, as_of=AS_OF)
    assert scheduled.recommendation is not None
    assert scheduled.recommendation.decision == "ship"
    days = [analyse(engine, e, as_of=AS_OF - timedelta(days=d)) for d in range(1, 5)]
    start_version, _ = _config(engine)

    def scheduled_runs() -> None:
        for _ in range(ROUNDS):
            write_results.fn(writer_settings, url, _again(scheduled), e)

    def backfill() -> None:
        for _ in range(ROUNDS // len(days) + 1):
            for day in days:
                write_results.fn(writer_settings, url, _again(day), e)

    def operator() -> None:
        from abflow.tasks.warehouse import engine_for

        eng = engine_for(writer_settings, url)
        for i in range(ROUNDS):
            try:
                with eng.begin() as conn:
                    if i % 2 == 0:
                        promotion.rollback(conn, KEY, actor="ops", reason="race")
                    else:
                        promotion.promote(conn, KEY, "treatment", actor="ops", reason="race")
            except promotion.PromotionRefused:
                # Refusals change nothing: a rollback at the weighted split (rollback is a
                # stack), or a promote before the first analysis run was written.
                continue

    errors = _run_together([scheduled_runs, backfill, operator])
    assert errors == []

    end_version, promoted = _config(engine)
    with engine.connect() as conn:
        audit = conn.execute(
            text(
                "select action, variant_key, cast(previous_config ->> 'version' as int),"
                " previous_config ->> 'promoted_variant_key', db_user"
                " from promotions where experiment_key = :k order by id"
            ),
            {"k": KEY},
        ).all()
    steps = [row[2] for row in audit]
    assert len(audit) >= ROUNDS // 2  # the operator alone changed it this often
    # gap-free, no version used twice, every step recorded
    assert steps == list(range(start_version, end_version))
    # no lost update: a promotion is what the next change found in place
    for before, after in zip(audit, audit[1:], strict=False):
        if before[0] == "promote":
            assert after[3] == before[1]
    if audit[-1][0] == "promote":
        assert promoted == audit[-1][1]
    assert {row[4] for row in audit} == {login}  # and the database says who


def _again(result: Any) -> Any:
    """The same analysis under a fresh run id (each write is a new run of that as_of)."""
    return result.with_run_id(uuid.uuid4())


def _run_together(workers: list[Callable[[], None]]) -> list[BaseException]:
    """Start the workers at the same instant on their own threads; their exceptions."""
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def wrap(fn: Callable[[], None]) -> Callable[[], None]:
        def go() -> None:
            barrier.wait()
            try:
                fn()
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)

        return go

    threads = [threading.Thread(target=wrap(w)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors
