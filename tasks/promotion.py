"""Promotion tasks: manual promote, rollback and unpin of experiment_config."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from abflow.settings import Settings
from abflow.warehouse import promotion
from tasks.retry import RETRY_DELAYS, retry_transient
from tasks.warehouse import engine_for

_MANUAL = {
    "retries": 3,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_condition_fn": retry_transient,
    "cache_policy": NO_CACHE,
}


@task(name="promote", **_MANUAL)  # type: ignore[call-overload]
def promote_variant(
    settings: Settings,
    url: str,
    key: str,
    variant: str,
    actor: str,
    reason: str | None,
    force: bool = False,
) -> str:
    """Promote a variant and pin the config in one transaction; refused like the CLI."""
    with engine_for(settings, url).begin() as conn:
        return promotion.promote(
            conn, key, variant, actor=actor, reason=reason, force=force,
            lock_timeout_seconds=settings.lock_timeout_seconds,
        ).message  # fmt: skip


@task(name="rollback", **_MANUAL)  # type: ignore[call-overload]
def rollback_variant(settings: Settings, url: str, key: str, actor: str, reason: str | None) -> str:
    """Undo the newest promotion still in force and pin the result, in one transaction."""
    with engine_for(settings, url).begin() as conn:
        return promotion.rollback(
            conn, key, actor=actor, reason=reason,
            lock_timeout_seconds=settings.lock_timeout_seconds,
        ).message  # fmt: skip


@task(name="unpin", **_MANUAL)  # type: ignore[call-overload]
def unpin_config(settings: Settings, url: str, key: str, actor: str, reason: str | None) -> str:
    """Hand a pinned config back to the decision rules in one transaction."""
    with engine_for(settings, url).begin() as conn:
        return promotion.unpin(
            conn, key, actor=actor, reason=reason,
            lock_timeout_seconds=settings.lock_timeout_seconds,
        ).message  # fmt: skip
