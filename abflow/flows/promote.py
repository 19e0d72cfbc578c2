"""Manual promote / rollback / unpin flows, runnable from the Prefect UI (same rules as the CLI)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from abflow.flows.analyze import resolve_url
from abflow.settings import get_settings
from abflow.tasks.alerts import promotion_mark, publish_config_events, quietly
from abflow.tasks.promotion import promote_variant, rollback_variant, unpin_config
from abflow.tasks.warehouse import check_schema_version


def _manual(change: Any, key: str, *args: Any) -> str:
    """Check the schema version, run one config-change task, log and return its outcome.

    The change's promotions rows become events (promoted, rolled_back, pinned, unpinned).
    """
    settings = get_settings()
    url = resolve_url(settings)
    check_schema_version(settings, url)
    mark = quietly(lambda: promotion_mark(settings, url, key), "abflow events")
    msg: str = change(settings, url, key, *args)
    get_run_logger().info(msg)
    if mark is not None:
        quietly(lambda: publish_config_events(settings, url, key, mark), "abflow events")
    return msg


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
    return _manual(promote_variant, experiment_key, variant_key, actor, reason, force)


@flow(name="rollback-variant")
def rollback_flow(
    experiment_key: str, reason: str = "manual rollback", actor: str = "prefect-ui"
) -> str:
    """Undo the newest promotion still in force and pin the result (fails if nothing is left)."""
    return _manual(rollback_variant, experiment_key, actor, reason)


@flow(name="unpin-config")
def unpin_flow(experiment_key: str, reason: str = "manual unpin", actor: str = "prefect-ui") -> str:
    """Hand a pinned experiment_config back to the decision rules."""
    return _manual(unpin_config, experiment_key, actor, reason)
