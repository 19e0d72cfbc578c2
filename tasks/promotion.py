"""`tasks/promotion.py` of the project layout: the code lives in `abflow.tasks.promotion`."""

from abflow.tasks.promotion import (
    Change,
    promote_variant,
    rollback_variant,
    unpin_config,
)

__all__ = [
    "Change",
    "promote_variant",
    "rollback_variant",
    "unpin_config",
]
