"""experiment_config as apps read it, cached briefly, and assignment through the Python client.

`/api/assign` answers with `AbflowClient`'s own `assign_variant` and `variant_config` (fed from
this cache instead of its 30 s one), so the HTTP answer, the Python client and the SQL function
`assign_variant()` agree on every unit by construction.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import Engine, text

from abflow.client import AbflowClient, ExperimentConfig

_MISSING: dict[str, Any] = {}


class ConfigCache:
    """experiment_config rows by key, each reused for `ttl` seconds (unknown keys too)."""

    def __init__(self, engine: Engine, ttl: float) -> None:
        self._engine = engine
        self._ttl = ttl
        self._rows: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def peek(self, key: str) -> tuple[bool, dict[str, Any] | None]:
        """(fresh, row) without touching the database; row None for an unknown experiment."""
        hit = self._rows.get(key)
        if hit is None or hit[0] <= time.monotonic():
            return False, None
        return True, (hit[1] or None)

    def load(self, key: str) -> dict[str, Any] | None:
        """The row from the database (and into the cache)."""
        with self._engine.connect() as conn:
            row = (
                conn.execute(
                    text("select * from experiment_config where experiment_key = :k"), {"k": key}
                )
                .mappings()
                .first()
            )
        value = dict(row) if row is not None else _MISSING
        with self._lock:
            if len(self._rows) > 50_000:
                self._rows.clear()
            self._rows[key] = (time.monotonic() + self._ttl, value)
        return value or None

    def get(self, key: str) -> dict[str, Any] | None:
        """The row, cached or loaded."""
        fresh, row = self.peek(key)
        return row if fresh else self.load(key)

    def forget(self, key: str | None = None) -> None:
        """Drop one key (after a change made by this process) or everything."""
        with self._lock:
            if key is None:
                self._rows.clear()
            else:
                self._rows.pop(key, None)


class CachedClient(AbflowClient):
    """The Python client, reading its configs from a ConfigCache row already at hand."""

    def __init__(self, row: dict[str, Any]) -> None:
        self._row = ExperimentConfig.from_row(row)

    def config(self, experiment_key: str) -> ExperimentConfig | None:
        """The config row given at construction (for its own key only)."""
        return self._row if experiment_key == self._row.experiment_key else None


def assignment(row: dict[str, Any], unit_id: str) -> dict[str, Any]:
    """What `GET /api/assign/{key}/{unit}` returns for one config row and unit."""
    client = CachedClient(row)
    key = row["experiment_key"]
    return {
        "experiment_key": key,
        "unit_id": unit_id,
        "variant": client.assign_variant(key, unit_id),
        "config": client.variant_config(key, unit_id),
        "promoted": row["promoted_variant_key"] is not None,
        "status": row["status"],
        "version": row["version"],
    }


def public_config(row: dict[str, Any]) -> dict[str, Any]:
    """What `GET /api/config/{key}` returns: the experiment_config row apps read."""
    return {
        "experiment_key": row["experiment_key"],
        "status": row["status"],
        "variants": row["variants"],
        "promoted_variant_key": row["promoted_variant_key"],
        "promoted_config": row["promoted_config"],
        "version": row["version"],
        "pinned": row.get("pinned", False),
        "pinned_by": row.get("pinned_by"),
        "pinned_reason": row.get("pinned_reason"),
        "pinned_at": row.get("pinned_at"),
        "updated_at": row.get("updated_at"),
    }
