"""`tasks/retry.py` of the project layout: the code lives in `abflow.tasks.retry`."""

from abflow.tasks.retry import (
    RETRY_DELAYS,
    TRANSIENT,
    is_transient,
    retry_transient,
)

__all__ = [
    "RETRY_DELAYS",
    "TRANSIENT",
    "is_transient",
    "retry_transient",
]
