"""Settings: one pydantic-settings object, loaded once at the edge and passed down."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything abflow reads from the environment (prefix ABFLOW_)."""

    model_config = SettingsConfigDict(env_prefix="ABFLOW_", frozen=True, extra="ignore")

    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means the embedded PostgreSQL"
    )
    schema_name: str = Field(default="abflow", alias="ABFLOW_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    assignments_source: str = "assignments"
    events_source: str = "events"
    # Where assignments and events live and the aggregation SQL runs (abflow.warehouse.engines):
    # postgresql+psycopg://..., duckdb:///file.duckdb, spark://local[N], sc://host:15002.
    # Unset: the results database is also the warehouse. ABFLOW_WAREHOUSE_BLOCK names a Prefect
    # Secret or SqlAlchemyConnector block holding the URL instead (never logged).
    warehouse_url: str | None = Field(default=None, repr=False)
    warehouse_block: str | None = None
    # Incremental refresh (abflow.warehouse.incremental): read only events since the last run
    # plus this lookback for late arrivals; `abflow run --full-refresh` recomputes everything.
    incremental: bool = False
    late_lookback_hours: float = Field(default=48.0, ge=0)
    home: Path = Field(default=Path(".abflow"), description="local state (embedded pgdata)")
    max_concurrency: int = Field(default=4, ge=1, le=64)
    lock_timeout_seconds: float = Field(default=300.0, gt=0)
    pushgateway_url: str | None = None
    report_dir: Path = Path(".abflow/reports")

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.home / "pgdata"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load settings from the environment once per process."""
    return Settings()
