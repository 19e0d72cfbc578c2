"""`flows/serve.py` of the project layout: the code lives in `abflow.flows.serve`."""

from abflow.flows.serve import (
    ANALYZE_CRON,
    FULL_REFRESH_CRON,
    deployments,
    serve_all,
)

__all__ = [
    "ANALYZE_CRON",
    "FULL_REFRESH_CRON",
    "deployments",
    "serve_all",
]
