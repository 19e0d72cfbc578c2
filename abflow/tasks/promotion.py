"""Promotion tasks: manual promote, rollback and unpin of experiment_config."""

from __future__ import annotations

from collections.abc import Callable

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Connection

from abflow.settings import Settings
from abflow.tasks.retry import RETRY_DELAYS, retry_transient
from abflow.tasks.warehouse import engine_for
from abflow.warehouse import promotion

Change = Callable[[Connection, float], promotion.PromotionOutcome]


def _change(settings: Settings, url: str, change: Change) -> str:
    """One transaction (the change takes the experiment's lock); the outcome's one line."""
    with engine_for(settings, url).begin() as conn:
        return change(conn, settings.lock_timeout_seconds).message


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
    reason: str | None,
    force: bool = False,
) -> str:
    """Promote a variant and pin the config; refused like the CLI."""
    return _change(
        settings,
        url,
        lambda conn, timeout: promotion.promote(
            conn, key, variant, actor=actor, reason=reason, force=force,
            lock_timeout_seconds=timeout,
        ),
    )  # fmt: skip


@task(
    name="rollback",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def rollback_variant(settings: Settings, url: str, key: str, actor: str, reason: str | None) -> str:
    """Undo the newest promotion still in force and pin the result."""
    return _change(
        settings,
        url,
        lambda conn, timeout: promotion.rollback(
            conn, key, actor=actor, reason=reason, lock_timeout_seconds=timeout
        ),
    )


@task(
    name="unpin",
    retries=3,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=retry_transient,
    cache_policy=NO_CACHE,
)
def unpin_config(settings: Settings, url: str, key: str, actor: str, reason: str | None) -> str:
    """Hand a pinned config back to the decision rules."""
    return _change(
        settings,
        url,
        lambda conn, timeout: promotion.unpin(
            conn, key, actor=actor, reason=reason, lock_timeout_seconds=timeout
        ),
    )
