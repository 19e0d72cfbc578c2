"""prefect.yaml entrypoint `flows/promote.py`: the flows live in `abflow.flows.promote`."""

from abflow.flows.promote import (
    promote_flow,
    rollback_flow,
    unpin_flow,
)

__all__ = [
    "promote_flow",
    "rollback_flow",
    "unpin_flow",
]
