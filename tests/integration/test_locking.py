"""A scheduled run and a backfill never write one experiment at the same time."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from abflow.tasks.retry import is_transient
from abflow.warehouse import writer
from tests.conftest import analyse


def _result(engine: Engine, e: Any) -> Any:
    return analyse(engine, e)


def test_second_writer_waits_then_times_out_with_a_transient_error(
    engine: Engine, demo_loaded: dict[str, Any]
) -> None:
    e = demo_loaded["experiments"]["followup_timing"]
    result = _result(engine, e)
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with engine.begin() as conn:
            writer.lock_experiment(conn, e.key, 5)
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        started = time.monotonic()
        with pytest.raises(OperationalError) as info, engine.begin() as conn:
            writer.lock_experiment(conn, e.key, 0.5)
            writer.write_result(conn, result)
        waited = time.monotonic() - started
        assert 0.4 < waited < 5  # it waited for the lock, bounded by the timeout
        assert isinstance(info.value.orig, psycopg.errors.LockNotAvailable)
        assert is_transient(info.value)  # so the write task retries with backoff
    finally:
        release.set()
        t.join()
    # once the other writer is done, the same write goes through
    with engine.begin() as conn:
        writer.lock_experiment(conn, e.key, 5)
        writer.write_result(conn, result)


def test_other_experiments_are_not_blocked(engine: Engine, demo_loaded: dict[str, Any]) -> None:
    held = threading.Event()
    release = threading.Event()

    def holder() -> None:
        with engine.begin() as conn:
            writer.lock_experiment(conn, "followup_timing", 5)
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        with engine.begin() as conn:
            writer.lock_experiment(conn, "checkout_button", 0.5)  # no wait, no error
    finally:
        release.set()
        t.join()
