"""Warehouses: where assignments and events live and where the aggregation SQL runs.

`ABFLOW_WAREHOUSE_URL` picks one:

* `postgresql+psycopg://...` (or unset: the results database itself) — PostgreSQL;
* `duckdb:///path/to/file.duckdb` (`duckdb:///:memory:` for an empty in-memory one) — DuckDB,
  through its own Python API (duckdb-engine does not work with SQLAlchemy 2.1);
* `spark://local` or `spark://local[4]` — a local SparkSession; `sc://host:15002` — a Spark
  Connect server (Spark 3.5+/4.x clusters, Databricks, EMR, Dataproc).

Each warehouse opens a `session()`: one snapshot in which a plan's statements run in order,
rendered for its dialect (abflow.warehouse.dialects); only the rows of the final statements
(sufficient statistics, a few summary rows) come back. Results are always written to the
PostgreSQL results database (`ABFLOW_DATABASE_URL`), never to the warehouse.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast
from urllib.parse import unquote, urlsplit

from abflow.warehouse.dialects import Rendered, Source, Statement, render_plan
from abflow.warehouse.engine import WarehouseUnavailable

_PLACEHOLDER_PG = re.compile(r"%\(\w+\)s")
_SECRET_PARAM = re.compile(
    r"(?i)[?&;](token|password|pwd|secret|key|access_token|private_key\w*|credentials\w*)=([^&;]+)"
)


class UnsupportedWarehouse(ValueError):
    """The warehouse URL names an engine abflow renders SQL for but does not execute."""


@dataclass(frozen=True)
class WarehouseKind:
    """What a warehouse URL points at (the URL itself is a secret and is not kept here)."""

    dialect: str  # postgres | duckdb | spark | snowflake | bigquery | databricks | trino | redshift
    executed: bool


_SCHEMES = {
    "postgresql": "postgres",
    "postgres": "postgres",
    "duckdb": "duckdb",
    "spark": "spark",
    "sc": "spark",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
    "trino": "trino",
    "redshift": "redshift",
}


def warehouse_kind(url: str) -> WarehouseKind:
    """The dialect of a warehouse URL, from its scheme only (the rest may hold credentials)."""
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"warehouse URL scheme {scheme!r}: expected one of "
            "postgresql, duckdb, spark, sc, snowflake, bigquery, databricks, trino, redshift"
        )
    d = _SCHEMES[scheme]
    return WarehouseKind(d, d in ("postgres", "duckdb", "spark"))


class Executor(Protocol):
    """Runs rendered statements in one snapshot; returns each query statement's rows."""

    dialect: str

    def run(self, statements: Sequence[Rendered]) -> dict[str, list[dict[str, Any]]]: ...


def execute_plan(
    executor: Executor, plan: Sequence[Statement], sources: Mapping[str, Source]
) -> dict[str, list[dict[str, Any]]]:
    """Render `plan` for the executor's dialect and run it."""
    suffix = getattr(executor, "stage_suffix", "")
    return executor.run(render_plan(plan, executor.dialect, sources, stage_suffix=suffix))


# --- PostgreSQL ---------------------------------------------------------------------------------


class PostgresExecutor:
    """Statements on a SQLAlchemy connection inside the caller's transaction (psycopg cursor)."""

    dialect = "postgres"

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    def run(self, statements: Sequence[Rendered]) -> dict[str, list[dict[str, Any]]]:
        import psycopg

        raw = cast(psycopg.Connection, self.conn.connection.dbapi_connection)
        out: dict[str, list[dict[str, Any]]] = {}
        with raw.cursor() as cur:
            for st in statements:
                if "%" in _PLACEHOLDER_PG.sub("", st.sql):
                    raise ValueError(f"{st.name}: a literal '%' would be read as a placeholder")
                if st.kind == "materialize" and st.relation:
                    # a second extraction in the same transaction (a test comparing two paths)
                    cur.execute(f'drop table if exists pg_temp."{st.relation}"', prepare=False)
                # never a server-side prepared statement: a generic plan would not see the bounds
                cur.execute(st.sql.encode(), st.params, prepare=False)
                if st.kind == "query":
                    cols = [d.name for d in cur.description or ()]
                    out[st.name] = [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]
        return out


# --- DuckDB -------------------------------------------------------------------------------------


class DuckDBExecutor:
    """Statements on one DuckDB connection (a cursor of the process's database instance)."""

    dialect = "duckdb"

    def __init__(self, con: Any) -> None:
        self.con = con

    def run(self, statements: Sequence[Rendered]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for st in statements:
            result = self.con.execute(st.sql, st.params or None)
            if st.kind == "query":
                cols = [d[0] for d in result.description]
                out[st.name] = [dict(zip(cols, r, strict=True)) for r in result.fetchall()]
        return out


def import_extra(module: str, extra: str) -> Any:
    """Import an optional engine's module, or fail in one line naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WarehouseUnavailable(
            f"the {extra} warehouse needs abflow's {extra} extra: "
            f"pip install 'abflow[{extra}]' ({exc})"
        ) from None


class DuckDBWarehouse:
    """A DuckDB database file (or :memory:), opened once per process."""

    dialect = "duckdb"

    def __init__(self, path: str, *, read_only: bool = False) -> None:
        duckdb = import_extra("duckdb", "duckdb")
        self.path = path
        self._base = duckdb.connect(path, read_only=read_only)
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str) -> DuckDBWarehouse:
        """`duckdb:///relative.duckdb`, `duckdb:////absolute.duckdb` (SQLAlchemy's convention),
        `duckdb:///:memory:`; `?read_only=true` opens the file read-only."""
        if not url.startswith("duckdb:///"):
            raise ValueError("a DuckDB URL starts with duckdb:/// (duckdb:////abs/path.duckdb)")
        rest, _, query = url.removeprefix("duckdb:///").partition("?")
        path = unquote(rest) or ":memory:"
        read_only = "read_only=true" in query.lower()
        return cls(path, read_only=read_only)

    def connection(self) -> Any:
        """A new connection to the same database (one per thread)."""
        with self._lock:
            con = self._base.cursor()
        con.execute("SET TimeZone = 'UTC'")
        return con

    @contextmanager
    def session(self) -> Iterator[DuckDBExecutor]:
        con = self.connection()
        try:
            con.execute("BEGIN TRANSACTION")
            yield DuckDBExecutor(con)
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            finally:
                raise
        finally:
            con.close()

    def close(self) -> None:
        self._base.close()


# --- Spark --------------------------------------------------------------------------------------


class SparkExecutor:
    """Statements through `spark.sql(text, args=...)`; stages become cached temporary views."""

    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.stage_suffix = "_" + uuid.uuid4().hex[:12]
        self._views: list[tuple[str, Any]] = []

    def run(self, statements: Sequence[Rendered]) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for st in statements:
            df = self.spark.sql(st.sql, args=st.params or None)
            if st.kind == "view":
                assert st.relation
                df = df.cache()
                df.createOrReplaceTempView(st.relation)
                self._views.append((st.relation, df))
            elif st.kind == "query":
                out[st.name] = [_spark_row(r.asDict()) for r in df.collect()]
        return out

    def close(self) -> None:
        # Unpersist before dropping: Spark Connect re-analyses a DataFrame's plan to unpersist
        # it, and the later stages read the earlier views.
        for _, df in reversed(self._views):
            df.unpersist()
        for name, _ in reversed(self._views):
            self.spark.catalog.dropTempView(name)
        self._views.clear()


def _spark_row(row: dict[str, Any]) -> dict[str, Any]:
    """Spark hands timestamps back as naive local times: make them aware (UTC)."""
    return {
        k: (v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is None else v)
        for k, v in row.items()
    }


class SparkWarehouse:
    """A SparkSession: local (`spark://local[N]`) or Spark Connect (`sc://host:port`)."""

    dialect = "spark"

    def __init__(self, spark: Any) -> None:
        self.spark = spark

    @classmethod
    def from_url(cls, url: str) -> SparkWarehouse:
        return cls(spark_session(url))

    @contextmanager
    def session(self) -> Iterator[SparkExecutor]:
        executor = SparkExecutor(self.spark)
        try:
            yield executor
        finally:
            executor.close()

    def close(self) -> None:
        """The session is shared by the process; it is stopped at exit by pyspark."""


_spark_lock = threading.Lock()


def spark_session(url: str) -> Any:
    """The process's SparkSession for `url` (created once; session time zone UTC)."""
    SparkSession = import_extra("pyspark.sql", "spark").SparkSession

    with _spark_lock:
        if url.startswith("sc://"):
            builder = SparkSession.builder.remote(url)
            spark = builder.getOrCreate()
        else:
            rest = url.removeprefix("spark://") or "local[*]"
            master = rest if rest.startswith("local") else f"spark://{rest}"
            if master.startswith("local"):
                os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
            builder = cast(Any, SparkSession.builder).master(master).appName("abflow")
            for key, value in SPARK_LOCAL_CONF.items():
                builder = builder.config(key, value)
            spark = builder.getOrCreate()
            # Spark logs a FileNotFoundException at WARN for every parquet.`glob` it resolves
            spark.sparkContext.setLogLevel("ERROR")
        spark.conf.set("spark.sql.session.timeZone", "UTC")
        return spark


SPARK_LOCAL_CONF = {
    "spark.sql.session.timeZone": "UTC",
    # a local session talks to itself on the loopback interface only
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    # small data on few cores: 200 shuffle partitions cost more than they split
    "spark.sql.shuffle.partitions": "8",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "2g",
    "spark.sql.ansi.enabled": "true",
}


# --- secrets ------------------------------------------------------------------------------------


def redact(text: str, url: str | None) -> str:
    """`text` with the URL, its password and its user:password part replaced by '***'."""
    if not url:
        return text
    secrets = {url}
    parts = urlsplit(url)
    if parts.password:
        secrets.add(parts.password)
        secrets.add(unquote(parts.password))
    if parts.username and parts.password:
        secrets.add(f"{parts.username}:{parts.password}")
    # credentials passed as parameters: ?password=..., ;token=... (Spark Connect), key=...
    for match in _SECRET_PARAM.finditer(url):
        secrets.add(match.group(2))
        secrets.add(unquote(match.group(2)))
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 3:
            text = text.replace(secret, "***")
    return text


# --- opening a warehouse ------------------------------------------------------------------------


_open: dict[str, Any] = {}
_open_lock = threading.Lock()


def open_warehouse(url: str) -> Any:
    """The process-wide warehouse object for a DuckDB or Spark URL (created on first use)."""
    kind = warehouse_kind(url)
    if kind.dialect == "postgres":
        raise ValueError("PostgreSQL warehouses are opened through SQLAlchemy (make_engine)")
    if not kind.executed:
        raise UnsupportedWarehouse(
            f"abflow renders SQL for {kind.dialect} (abflow sql --dialect {kind.dialect}) but "
            "does not execute it yet: executed engines are postgres, duckdb and spark"
        )
    with _open_lock:
        if url not in _open:
            _open[url] = (
                DuckDBWarehouse.from_url(url)
                if kind.dialect == "duckdb"
                else SparkWarehouse.from_url(url)
            )
        return _open[url]


def close_all() -> None:
    """Close every DuckDB/Spark warehouse this process opened (tests, CLI exit)."""
    with _open_lock:
        for wh in _open.values():
            wh.close()
        _open.clear()
