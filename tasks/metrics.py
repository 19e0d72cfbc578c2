"""`tasks/metrics.py` of the project layout: the code lives in `abflow.tasks.metrics`."""

from abflow.tasks.metrics import (
    push_metrics,
)

__all__ = [
    "push_metrics",
]
