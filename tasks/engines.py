"""`tasks/engines.py` of the project layout: the code lives in `abflow.tasks.engines`."""

from abflow.tasks.engines import (
    checks_elsewhere,
    exposure_elsewhere,
    extract_elsewhere,
    is_elsewhere,
    load_block_url,
    warehouse_url,
)

__all__ = [
    "checks_elsewhere",
    "exposure_elsewhere",
    "extract_elsewhere",
    "is_elsewhere",
    "load_block_url",
    "warehouse_url",
]
