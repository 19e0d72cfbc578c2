"""`abflow serve`: the same deployments as prefect.yaml, served from one process."""

from __future__ import annotations

from prefect import serve

from abflow.flows.analyze import analyze_experiments
from abflow.flows.backfill import backfill_experiments
from abflow.flows.promote import promote_flow, rollback_flow, unpin_flow

ANALYZE_CRON = "15 6 * * *"


def deployments() -> list:
    """Runner deployments mirroring prefect.yaml (schedule, names, parameter schemas)."""
    return [
        analyze_experiments.to_deployment(
            name="analyze", cron=ANALYZE_CRON, tags=["abflow", "scheduled"]
        ),
        backfill_experiments.to_deployment(name="backfill", tags=["abflow", "backfill"]),
        promote_flow.to_deployment(name="promote", tags=["abflow", "manual"]),
        rollback_flow.to_deployment(name="rollback", tags=["abflow", "manual"]),
        unpin_flow.to_deployment(name="unpin", tags=["abflow", "manual"]),
    ]


def serve_all() -> None:
    """Serve every deployment until interrupted (needs PREFECT_API_URL of a running server)."""
    serve(*deployments())
