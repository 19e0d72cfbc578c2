"""Manual promote / rollback / unpin flows, runnable from the Prefect UI (same rules as the CLI)."""

from __future__ import annotations

from prefect import flow, get_run_logger

from abflow.settings import get_settings
from flows.analyze import resolve_url
from tasks.promotion import promote_variant, rollback_variant, unpin_config
from tasks.warehouse import prepare_warehouse


@flow(name="promote-variant")
def promote_flow(
    experiment_key: str,
    variant_key: str,
    reason: str | None = None,
    actor: str = "prefect-ui",
    force: bool = False,
) -> str:
    """Promote a variant into experiment_config and pin it.

    Refused unless the experiment's latest run succeeded; force (with a reason) overrides that.
    """
    settings = get_settings()
    url = resolve_url(settings)
    prepare_warehouse(settings, url)
    msg = promote_variant(settings, url, experiment_key, variant_key, actor, reason, force)
    get_run_logger().info(msg)
    return msg


@flow(name="rollback-variant")
def rollback_flow(
    experiment_key: str, reason: str = "manual rollback", actor: str = "prefect-ui"
) -> str:
    """Undo the newest promotion still in force and pin the result (fails if nothing is left)."""
    settings = get_settings()
    url = resolve_url(settings)
    prepare_warehouse(settings, url)
    msg = rollback_variant(settings, url, experiment_key, actor, reason)
    get_run_logger().info(msg)
    return msg


@flow(name="unpin-config")
def unpin_flow(experiment_key: str, reason: str = "manual unpin", actor: str = "prefect-ui") -> str:
    """Hand a pinned experiment_config back to the decision rules."""
    settings = get_settings()
    url = resolve_url(settings)
    prepare_warehouse(settings, url)
    msg = unpin_config(settings, url, experiment_key, actor, reason)
    get_run_logger().info(msg)
    return msg
