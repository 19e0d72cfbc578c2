"""Retry policy: warehouse I/O retries transient errors only; data problems never retry."""

from __future__ import annotations

from typing import Any

import psycopg
import sqlalchemy.exc

TRANSIENT = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    ConnectionError,
    TimeoutError,
)

RETRY_DELAYS: list[float] = [2.0, 10.0, 30.0]


def is_transient(exc: BaseException) -> bool:
    """True for connection drops, timeouts and other errors a retry can fix."""
    return isinstance(exc, TRANSIENT)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry_condition_fn: continue to the retry policy only for transient errors."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False
