"""prefect.yaml entrypoint `flows/backfill.py`: the flows live in `abflow.flows.backfill`."""

from abflow.flows.backfill import (
    Day,
    backfill_experiments,
)

__all__ = [
    "Day",
    "backfill_experiments",
]
