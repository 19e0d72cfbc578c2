"""Application client: reads experiment_config and assigns units like abflow.assign_variant()."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from abflow.assignment import pick_variant


@dataclass(frozen=True)
class ExperimentConfig:
    """One row of experiment_config as apps see it."""

    experiment_key: str
    status: str
    variants: tuple[dict[str, Any], ...]
    promoted_variant_key: str | None
    promoted_config: dict[str, Any] | None
    version: int

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> ExperimentConfig:
        """From an experiment_config row."""
        return cls(
            experiment_key=row["experiment_key"],
            status=row["status"],
            variants=tuple(row["variants"]),
            promoted_variant_key=row["promoted_variant_key"],
            promoted_config=row["promoted_config"],
            version=row["version"],
        )


class AbflowClient:
    """Reads experiment_config (cached for ttl seconds) and assigns variants locally."""

    def __init__(self, engine: Engine, *, ttl_seconds: float = 30.0) -> None:
        self._engine = engine
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, ExperimentConfig | None]] = {}

    def config(self, experiment_key: str) -> ExperimentConfig | None:
        """The current config of an experiment (None if unknown)."""
        hit = self._cache.get(experiment_key)
        if hit and time.monotonic() - hit[0] < self._ttl:
            return hit[1]
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    text("select * from experiment_config where experiment_key = :k"),
                    {"k": experiment_key},
                )
                .mappings()
                .first()
            )
        cfg = None if row is None else ExperimentConfig.from_row(row)
        self._cache[experiment_key] = (time.monotonic(), cfg)
        return cfg

    def assign_variant(self, experiment_key: str, unit_id: str) -> str | None:
        """Same answer as the SQL function abflow.assign_variant(experiment_key, unit_id)."""
        cfg = self.config(experiment_key)
        if cfg is None:
            return None
        return pick_variant(
            experiment_key,
            unit_id,
            cfg.variants,
            status=cfg.status,
            promoted_variant_key=cfg.promoted_variant_key,
        )

    def variant_config(self, experiment_key: str, unit_id: str) -> dict[str, Any]:
        """The config dict the unit should see."""
        cfg = self.config(experiment_key)
        key = self.assign_variant(experiment_key, unit_id)
        if cfg is None or key is None:
            return {}
        if cfg.promoted_variant_key == key and cfg.promoted_config is not None:
            return dict(cfg.promoted_config)
        return dict(next((v.get("config", {}) for v in cfg.variants if v["key"] == key), {}))


def assign_variant(engine: Engine, experiment_key: str, unit_id: str) -> str | None:
    """One-off assignment without a long-lived client."""
    return AbflowClient(engine, ttl_seconds=0).assign_variant(experiment_key, unit_id)
