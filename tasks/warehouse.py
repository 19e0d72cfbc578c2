"""`tasks/warehouse.py` of the project layout: the code lives in `abflow.tasks.warehouse`."""

from abflow.tasks.warehouse import (
    allocation_periods,
    check_schema_version,
    engine_for,
    extract_aggregates,
    load_experiments,
    record_failure,
    refresh_window,
    write_results,
)

__all__ = [
    "allocation_periods",
    "check_schema_version",
    "engine_for",
    "extract_aggregates",
    "load_experiments",
    "record_failure",
    "refresh_window",
    "write_results",
]
