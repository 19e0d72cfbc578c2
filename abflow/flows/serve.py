"""`abflow serve`: the same deployments as prefect.yaml, served from one process."""

from __future__ import annotations

from prefect import serve
from prefect.schedules import Cron

from abflow.flows.analyze import analyze_experiments
from abflow.flows.backfill import backfill_experiments
from abflow.flows.promote import promote_flow, rollback_flow, unpin_flow

# Daily at 06:15 UTC; on Sundays a full refresh (incremental refresh catches restated history).
ANALYZE_CRON = "15 6 * * 1-6"
FULL_REFRESH_CRON = "15 6 * * 0"


def deployments() -> list:
    """Runner deployments mirroring prefect.yaml (schedule, names, parameter schemas)."""
    return [
        analyze_experiments.to_deployment(
            name="analyze",
            schedules=[
                Cron(ANALYZE_CRON, timezone="UTC"),
                Cron(FULL_REFRESH_CRON, timezone="UTC", parameters={"full_refresh": True}),
            ],
            tags=["abflow", "scheduled"],
        ),
        backfill_experiments.to_deployment(name="backfill", tags=["abflow", "backfill"]),
        promote_flow.to_deployment(name="promote", tags=["abflow", "manual"]),
        rollback_flow.to_deployment(name="rollback", tags=["abflow", "manual"]),
        unpin_flow.to_deployment(name="unpin", tags=["abflow", "manual"]),
    ]


def serve_all() -> None:
    """Serve every deployment until interrupted (needs PREFECT_API_URL of a running server)."""
    serve(*deployments())
