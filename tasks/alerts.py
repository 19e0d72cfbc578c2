"""`tasks/alerts.py` of the project layout: the code lives in `abflow.tasks.alerts`."""

from abflow.tasks.alerts import (
    DIGEST_KEY,
    DIGEST_WINDOW,
    RETRY_DELAYS,
    promotion_mark,
    publish_config_events,
    publish_digest,
    publish_failure_events,
    publish_run_events,
    quietly,
)

__all__ = [
    "DIGEST_KEY",
    "DIGEST_WINDOW",
    "RETRY_DELAYS",
    "promotion_mark",
    "publish_config_events",
    "publish_digest",
    "publish_failure_events",
    "publish_run_events",
    "quietly",
]
