"""Promotion tasks: manual promote and rollback of experiment_config."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from abflow.settings import Settings
from abflow.warehouse import promotion
from tasks.retry import RETRY_DELAYS, retry_transient
from tasks.warehouse import engine_for


@task(
    name="promote",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def promote_variant(
    settings: Settings,
    url: str,
    key: str,
    variant: str,
    actor: str,
    reason: str,
    force: bool = False,
) -> str:
    """Promote a variant in one transaction and return what happened."""
    with engine_for(settings, url).begin() as conn:
        return promotion.promote(
            conn, key, variant, actor=actor, reason=reason, force=force
        ).message


@task(
    name="rollback",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def rollback_variant(settings: Settings, url: str, key: str, actor: str, reason: str) -> str:
    """Roll back the current promotion in one transaction."""
    with engine_for(settings, url).begin() as conn:
        return promotion.rollback(conn, key, actor=actor, reason=reason).message
