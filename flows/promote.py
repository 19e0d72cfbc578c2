"""Manual promote / rollback flows, runnable from the Prefect UI."""

from __future__ import annotations

from prefect import flow, get_run_logger

from abflow.settings import get_settings
from flows.analyze import resolve_url
from tasks.promotion import promote_variant, rollback_variant
from tasks.warehouse import check_schema_version


@flow(name="promote-variant")
def promote_flow(
    experiment_key: str,
    variant_key: str,
    reason: str,
    actor: str = "prefect-ui",
    force: bool = False,
) -> str:
    """Promote a variant into experiment_config (refused when the latest run is unhealthy)."""
    settings = get_settings()
    url = resolve_url(settings)
    check_schema_version(settings, url)
    msg = promote_variant(settings, url, experiment_key, variant_key, actor, reason, force)
    get_run_logger().info(msg)
    return msg


@flow(name="rollback-variant")
def rollback_flow(
    experiment_key: str, reason: str = "manual rollback", actor: str = "prefect-ui"
) -> str:
    """Roll back the current promotion of an experiment."""
    settings = get_settings()
    url = resolve_url(settings)
    check_schema_version(settings, url)
    msg = rollback_variant(settings, url, experiment_key, actor, reason)
    get_run_logger().info(msg)
    return msg
