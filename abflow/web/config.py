"""Settings of the web app (environment variables ABFLOW_WEB_*), beside abflow's own Settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseSettings):
    """What `abflow web` reads from the environment (prefix ABFLOW_WEB_)."""

    model_config = SettingsConfigDict(env_prefix="ABFLOW_WEB_", frozen=True, extra="ignore")

    public_read: bool = Field(
        default=False, description="reads without a token (pages and GET endpoints)"
    )
    secret_key: str | None = Field(
        default=None,
        description="HMAC key of session cookies and CSRF tokens; random per process when unset "
        "(sessions then end when the process restarts; set it when running several workers)",
    )
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    cookie_secure: bool = Field(default=False, description="mark cookies Secure (behind HTTPS)")
    cache_seconds: int = Field(
        default=5, ge=0, le=3600, description="Cache-Control max-age of /api/config and /api/assign"
    )
    config_ttl_seconds: float = Field(
        default=1.0, ge=0, le=300, description="in-process cache of experiment_config rows"
    )
    auth_cache_seconds: float = Field(
        default=5.0, ge=0, le=300, description="how long a token check is reused (revocation lag)"
    )
    pool_size: int = Field(default=8, ge=1, le=64, description="database connections")
    deployment: str = Field(
        default="analyze-experiments/analyze",
        description="deployment that POST …/run starts when a Prefect server is configured",
    )
