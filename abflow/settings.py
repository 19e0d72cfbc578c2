"""Settings: one pydantic-settings object, loaded once at the edge and passed down."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from abflow.redact import redact, register_url

# Schemes that mean PostgreSQL through psycopg 3 (the only driver abflow installs).
_POSTGRES_SCHEMES = ("postgresql+psycopg://", "postgresql://", "postgres://", "postgres+psycopg://")


class SettingsError(ValueError):
    """An environment variable holds an unusable value; the message names it, in one line."""


def normalize_database_url(url: str) -> str:
    """A PostgreSQL URL as SQLAlchemy and psycopg 3 want it (`postgres://` accepted, as libpq)."""
    stripped = url.strip()
    for scheme in _POSTGRES_SCHEMES:
        if stripped.lower().startswith(scheme):
            return "postgresql+psycopg://" + stripped[len(scheme) :]
    scheme = stripped.partition("://")[0] if "://" in stripped else ""
    raise ValueError(
        f"unsupported scheme {scheme + '://' if scheme else '(none)'}:"
        " expected postgresql://user:password@host:port/database"
    )


class Settings(BaseSettings):
    """Everything abflow reads from the environment (prefix ABFLOW_)."""

    model_config = SettingsConfigDict(env_prefix="ABFLOW_", frozen=True, extra="ignore")

    # repr=False: a settings object in a traceback or a log line never shows the URLs' secrets.
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means the embedded PostgreSQL", repr=False
    )
    schema_name: str = Field(default="abflow", alias="ABFLOW_SCHEMA", pattern=r"^[a-z_][a-z0-9_]*$")
    assignments_source: str = "assignments"
    events_source: str = "events"
    # Alerts and the digest link here: the web page or published report, `{key}` and `{run_id}`
    # filled in (e.g. https://abflow.example.com/experiments/{key}); unset: the Prefect run page.
    report_url: str | None = None
    # Optional Great Expectations Data Docs site per experiment (abflow/warehouse/data_docs.py).
    gx_data_docs_dir: Path | None = None
    # Where assignments and events live and the aggregation SQL runs (abflow.warehouse.engines):
    # postgresql+psycopg://..., duckdb:///file.duckdb, spark://local[N], sc://host:15002.
    # Unset: the results database is also the warehouse. ABFLOW_WAREHOUSE_BLOCK names a Prefect
    # Secret or SqlAlchemyConnector block holding the URL instead (never logged).
    warehouse_url: str | None = Field(default=None, repr=False)
    warehouse_block: str | None = None
    # Incremental refresh (abflow.warehouse.incremental): read only events since the last run
    # plus this lookback for late arrivals; `abflow run --full-refresh` recomputes everything.
    incremental: bool = False
    late_lookback_hours: float = Field(default=48.0, ge=0, allow_inf_nan=False)
    home: Path = Field(default=Path(".abflow"), description="local state (embedded pgdata)")
    max_concurrency: int = Field(default=4, ge=1, le=64)
    lock_timeout_seconds: float = Field(default=300.0, gt=0, allow_inf_nan=False)
    pushgateway_url: str | None = Field(default=None, repr=False)
    report_dir: Path = Path(".abflow/reports")
    # Without a Prefect API URL the CLI keeps a local Prefect server running between runs
    # (abflow/prefect_server.py) and stops it after this many idle minutes; 0: a temporary
    # server per run, as Prefect itself does.
    prefect_server_idle_minutes: float = Field(default=15.0, ge=0, allow_inf_nan=False)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        register_url(value)
        return normalize_database_url(value)

    @field_validator("pushgateway_url")
    @classmethod
    def _register_gateway(cls, value: str | None) -> str | None:
        # Checked when pushing (a bad gateway URL never stops a run); its secrets are masked now.
        register_url(value)
        return value or None

    @property
    def pgdata(self) -> Path:
        """Data directory of the embedded PostgreSQL."""
        return self.home / "pgdata"


# Values printed back in errors, except for these (they may hold credentials).
_SECRET_FIELDS = {"database_url", "pushgateway_url"}


def _env_name(field: str) -> str:
    """The environment variable a settings field is read from."""
    info = Settings.model_fields.get(field)
    if info is not None and info.alias:
        return info.alias
    return field if field.startswith("ABFLOW_") else f"ABFLOW_{field.upper()}"


def settings_error(exc: ValidationError) -> SettingsError:
    """One line naming the environment variable and what is wrong with its value."""
    err = exc.errors()[0]
    loc = str(err["loc"][0]) if err["loc"] else "?"
    field = next(
        (name for name, info in Settings.model_fields.items() if loc in {name, info.alias}), loc
    )
    msg = str(err["msg"]).removeprefix("Value error, ")
    shown = "" if field in _SECRET_FIELDS else f" (got {err.get('input')!r})"
    more = f" (+{len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return SettingsError(redact(f"{_env_name(field)}: {msg}{shown}{more}"))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Load settings from the environment once per process; SettingsError names the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise settings_error(exc) from None
