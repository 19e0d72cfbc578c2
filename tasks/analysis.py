"""`tasks/analysis.py` of the project layout: the code lives in `abflow.tasks.analysis`."""

from abflow.tasks.analysis import (
    compute_statistics,
    validate_data,
)

__all__ = [
    "compute_statistics",
    "validate_data",
]
