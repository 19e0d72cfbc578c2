"""One source of truth for the warehouse SQL, rendered for each engine with sqlglot.

The query files in `sql/queries/` are written once, in a *canonical* dialect: PostgreSQL syntax
restricted to what sqlglot (pinned to one minor version) renders correctly for every supported
engine. Rules the files follow, because sqlglot 30.30 was measured to get them wrong otherwise:

* no integer division (PostgreSQL's `int / int` changes meaning when transpiled): every division
  is by a double, and numeric types are explicit casts;
* no `date - date`, no array types or `unnest` (raises on Spark, loses its alias on BigQuery):
  lists are expanded into one placeholder each (`x in (:variants)`), small tables of values
  (the metric definitions) are CTEs of bound values;
* no exact percentiles (silently approximate on Spark/Databricks/Trino);
* no jsonb operators with a dynamic key: JSON keys are validated definition keys rendered as
  literal paths;
* `:name` placeholders for every value, rendered as each driver binds them (`%(name)s` for
  psycopg, `$name` for DuckDB, `:name` for Spark, `@name` for BigQuery);
* `source_assignments` / `source_events` stand for the configured source relations and are
  replaced by quoted identifiers (or a Parquet reader) when rendered.

What the files share (column lists, a unit's value by aggregation, the exposure-age cohorts) is
written once as Jinja macros in `sql/macros.sql`; `sqlfiles.query_sql` expands them before the
text is parsed, so everything below sees plain canonical SQL.

Rendering uses `unsupported_level=ErrorLevel.RAISE`: a construct an engine cannot express fails
loudly instead of being dropped. Per-dialect hooks exist only where semantics differ: how a
stage is materialised (temporary table, ANALYZE, or an inlined CTE) and how Parquet is read.
This module is pure: no connection, no driver import.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal, cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from abflow.warehouse.sqlfiles import query_sql

CANONICAL = "postgres"
Materialize = Literal["temp_table", "cte", "view"]


@dataclass(frozen=True)
class Dialect:
    """How abflow renders and runs its SQL on one engine."""

    name: str
    sqlglot: str
    # How a stage (abflow_units, ...) is materialised: a temporary table, a cached temporary view
    # registered by the executor (Spark), or a CTE inlined into every statement that reads it.
    materialize: Materialize
    analyze: bool = False
    executed: bool = False
    temp_table_prefix: str = "CREATE TEMPORARY TABLE"
    temp_table_suffix: str = ""


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        Dialect(
            "postgres",
            "postgres",
            "temp_table",
            analyze=True,
            executed=True,
            temp_table_suffix=" ON COMMIT DROP",
        ),
        Dialect(
            "duckdb",
            "duckdb",
            "temp_table",
            executed=True,
            temp_table_prefix="CREATE OR REPLACE TEMPORARY TABLE",
        ),
        Dialect("spark", "spark", "view", executed=True),
        Dialect("databricks", "databricks", "cte"),
        Dialect(
            "snowflake",
            "snowflake",
            "temp_table",
            temp_table_prefix="CREATE OR REPLACE TEMPORARY TABLE",
        ),
        Dialect("bigquery", "bigquery", "temp_table", temp_table_prefix="CREATE TEMP TABLE"),
        Dialect("trino", "trino", "cte"),
        Dialect("redshift", "redshift", "temp_table", temp_table_prefix="CREATE TEMP TABLE"),
    )
}

SOURCE_TABLES = ("source_assignments", "source_events")


class RenderError(ValueError):
    """The canonical SQL cannot be expressed in the requested dialect."""


def dialect(name: str) -> Dialect:
    """The dialect called `name` (postgres, duckdb, spark, databricks, snowflake, ...)."""
    try:
        return DIALECTS[name]
    except KeyError:
        raise ValueError(
            f"unknown dialect {name!r}: expected one of {', '.join(DIALECTS)}"
        ) from None


# --- canonical statements -----------------------------------------------------------------------


@cache
def _parsed(relative: str) -> exp.Expr:
    parsed = sqlglot.parse_one(query_sql(relative), read=CANONICAL, error_level=ErrorLevel.RAISE)
    if not isinstance(parsed, exp.Query):
        raise ValueError(f"sql/{relative}: expected one SELECT statement")
    return parsed


@cache
def _blocks(relative: str) -> dict[str, exp.Expr]:
    """The '-- name: x' blocks of a file of several statements, parsed, by name."""
    import re

    parts = re.split(r"^-- name: (\w+)\s*$", query_sql(relative), flags=re.MULTILINE)
    return {
        name: sqlglot.parse_one(body, read=CANONICAL, error_level=ErrorLevel.RAISE)
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


def canonical_block(relative: str, name: str) -> exp.Expr:
    """A fresh copy of the canonical AST of block `name` of sql/<relative>."""
    return _blocks(relative)[name].copy()


def canonical(relative: str) -> exp.Query:
    """A fresh copy of the canonical AST of sql/<relative> (one SELECT)."""
    query = _parsed(relative).copy()
    assert isinstance(query, exp.Query)
    return query


@dataclass(frozen=True)
class ParamTable:
    """A small relation of bound values, supplied to a statement as a CTE.

    Rendered as `select cast(:t_1_col as type) as col, ... union all select ...`: each cell is a
    placeholder, so definitions never become SQL text, and no engine needs an array type.
    """

    name: str
    columns: tuple[tuple[str, str], ...]  # (column, canonical type)
    rows: tuple[tuple[Any, ...], ...]

    def query(self) -> tuple[exp.Query, dict[str, Any]]:
        params: dict[str, Any] = {}
        selects: list[exp.Select] = []
        rows = self.rows or (tuple(None for _ in self.columns),)
        for i, row in enumerate(rows, start=1):
            cols = []
            for (column, type_), value in zip(self.columns, row, strict=True):
                key = f"{self.name}_{i}_{column}"
                params[key] = value
                cols.append(
                    exp.alias_(
                        exp.cast(exp.Placeholder(this=key), exp.DataType.build(type_)), column
                    )
                )
            select = exp.select(*cols)
            if not self.rows:
                select = select.where(exp.false())
            selects.append(select)
        query: exp.Query = selects[0]
        for s in selects[1:]:
            query = exp.union(query, s, distinct=False)
        return query, params


@dataclass
class Statement:
    """One statement of a plan, canonical and with its parameter values.

    `relation` names the stage a statement materialises (abflow_units, ...); None for a
    statement whose rows come back to Python.
    """

    name: str
    query: exp.Expr
    params: dict[str, Any] = field(default_factory=dict)
    relation: str | None = None
    # "query": rows come back; "execute": a statement run for its effect (DML, DDL)
    kind: Literal["query", "execute"] = "query"

    def bind(self, values: Mapping[str, Any]) -> Statement:
        """Expand list parameters and record the values of the placeholders used."""
        self.query = _expand_lists(self.query, values, self.params, copy=False)
        used = {p.name for p in self.query.find_all(exp.Placeholder)}
        missing = used - set(self.params) - set(values)
        if missing:
            raise ValueError(f"{self.name}: no value for {', '.join(sorted(missing))}")
        for name in used:
            if name not in self.params:
                self.params[name] = values[name]
        return self

    def with_tables(self, *tables: ParamTable) -> Statement:
        """Prepend parameter tables as CTEs."""
        for table in reversed(tables):
            query, params = table.query()
            assert isinstance(self.query, exp.Query)
            self.query = _prepend_cte(self.query, table.name, query)
            self.params.update(params)
        return self


def _expand_lists(
    query: exp.Expr, values: Mapping[str, Any], params: dict[str, Any], *, copy: bool = True
) -> exp.Expr:
    """`x in (:name)` with a list value -> `x in (:name_1, :name_2, ...)`; empty -> FALSE.

    copy=False rewrites `query` in place (a tree the caller owns): copying sqlglot trees was
    most of the CPU of building and rendering a plan (~0.5 s per experiment).
    """

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.In) and len(node.expressions) == 1:
            only = node.expressions[0]
            if isinstance(only, exp.Placeholder):
                value = values.get(only.name)
                if isinstance(value, list | tuple):
                    if not value:
                        return exp.false()
                    names = [f"{only.name}_{i}" for i in range(1, len(value) + 1)]
                    params.update(zip(names, value, strict=True))
                    return exp.In(
                        this=node.this.copy(),
                        expressions=[exp.Placeholder(this=n) for n in names],
                    )
        return node

    return query.transform(transform, copy=copy)


def _prepend_cte(query: exp.Query, name: str, body: exp.Query) -> exp.Query:
    cte = exp.CTE(this=body, alias=exp.TableAlias(this=exp.to_identifier(name)))
    with_ = query.args.get("with_") or query.args.get("with")
    if with_ is None:
        query.set("with_" if "with_" in query.arg_types else "with", exp.With(expressions=[cte]))
    else:
        with_.set("expressions", [cte, *with_.expressions])
    return query


def with_ctes(query: exp.Query, ctes: Sequence[tuple[str, exp.Query]]) -> exp.Query:
    """`query` with the given (name, body) CTEs in front of its own.

    A body's own CTEs are hoisted under prefixed names (`abflow_units_final`): some generators
    hoist nested WITHs themselves, and two files' `final` CTEs would then collide.
    """
    flat: list[tuple[str, exp.Query]] = []
    for name, body in ctes:
        flat.extend(_flatten(name, body.copy()))
    for name, body in reversed(flat):
        query = _prepend_cte(query, name, body)
    return query


def _flatten(name: str, body: exp.Query) -> list[tuple[str, exp.Query]]:
    """`name as (with a as (...), b as (...) select ...)` -> name_a, name_b, name."""
    with_ = body.args.get("with_") or body.args.get("with")
    if with_ is None:
        return [(name, body)]
    inner = {cte.alias: f"{name}_{cte.alias}" for cte in with_.expressions}
    out = [(inner[cte.alias], _rename_tables(cte.this, inner)) for cte in with_.expressions]
    body.set("with_" if "with_" in body.arg_types else "with", None)
    out.append((name, _rename_tables(body, inner)))
    return cast(list[tuple[str, exp.Query]], out)


# --- sources ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """A source relation: a (possibly schema-qualified) table or view, or Parquet files."""

    kind: Literal["table", "parquet"]
    parts: tuple[str, ...] = ()
    path: str = ""

    @classmethod
    def parse(cls, text: str, default_schema: str | None = None) -> Source:
        """'name', 'schema.name', 'catalog.schema.name' or 'parquet:/path/*.parquet'."""
        if text.startswith("parquet:"):
            path = text.removeprefix("parquet:")
            if not path:
                raise ValueError(f"source {text!r}: parquet: needs a path")
            return cls("parquet", path=path)
        parts = tuple(p for p in text.split(".") if p)
        if not 1 <= len(parts) <= 3 or len(parts) != len(text.split(".")):
            raise ValueError(
                f"source relation {text!r}: expected 'name', 'schema.name' or 'catalog.schema.name'"
            )
        if len(parts) == 1 and default_schema:
            parts = (default_schema, *parts)
        return cls("table", parts=parts)

    def table(self, dialect_name: str, alias: str | None) -> exp.Expr:
        """The FROM item reading this source in `dialect_name`."""
        if self.kind == "table":
            names = [exp.to_identifier(p, quoted=True) for p in self.parts]
            kwargs: dict[str, Any] = {"this": names[-1]}
            if len(names) >= 2:
                kwargs["db"] = names[-2]
            if len(names) == 3:
                kwargs["catalog"] = names[0]
            table = exp.Table(**kwargs)
        elif dialect_name == "duckdb":
            table = exp.Table(
                this=exp.Anonymous(this="read_parquet", expressions=[exp.Literal.string(self.path)])
            )
        elif dialect_name in ("spark", "databricks"):
            table = exp.Table(
                this=exp.to_identifier(self.path, quoted=True), db=exp.to_identifier("parquet")
            )
        else:
            raise RenderError(f"Parquet sources are read by DuckDB and Spark, not {dialect_name}")
        if alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        return table


def substitute_sources(
    query: exp.Expr, sources: Mapping[str, Source], dialect_name: str, *, copy: bool = True
) -> exp.Expr:
    """Replace source_assignments / source_events with the configured relations."""

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in SOURCE_TABLES:
            key = node.name.removeprefix("source_")
            return sources[key].table(dialect_name, node.alias or None)
        return node

    return query.transform(transform, copy=copy)


# --- rendering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendered:
    """One statement as text for one dialect, with the values of its placeholders."""

    name: str
    sql: str
    params: dict[str, Any]
    relation: str | None = None
    kind: Literal["query", "execute", "materialize", "analyze", "view"] = "query"
    select_sql: str = ""


def _timestamp_arithmetic(query: exp.Expr, *, copy: bool = True) -> exp.Expr:
    """`ts + n * interval '1 unit'` (or `-`) -> TIMESTAMPADD(unit, n, ts) for every engine.

    Multiplying an interval is PostgreSQL's way; Snowflake has no interval arithmetic, BigQuery
    multiplies intervals by integers only, and sqlglot's DATE_ADD for Spark truncates to a date.
    sqlglot renders a TimestampAdd node correctly everywhere (`ts + INTERVAL '1 SECOND' * n`,
    `TIMESTAMPADD`, `TIMESTAMP_ADD`, `DATE_ADD('SECOND', ...)`), so the canonical form is
    rewritten into it before rendering.
    """

    def scaled_interval(node: exp.Expr) -> tuple[exp.Expr, str] | None:
        if not isinstance(node, exp.Mul):
            return None
        for interval, factor in ((node.left, node.right), (node.right, node.left)):
            if (
                isinstance(interval, exp.Interval)
                and interval.this is not None
                and interval.this.name == "1"
                and interval.unit is not None
            ):
                return factor, interval.unit.name.upper()
        return None

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Add | exp.Sub):
            found = scaled_interval(node.right)
            if found:
                amount, unit = found
                if isinstance(node, exp.Sub):
                    amount = exp.Neg(this=exp.paren(amount.copy()))
                return exp.TimestampAdd(
                    this=node.left.copy(), expression=amount.copy(), unit=exp.var(unit)
                )
        return node

    return query.transform(transform, copy=copy)


def _filter_as_case(query: exp.Expr, *, copy: bool = True) -> exp.Expr:
    """`agg(x) FILTER (WHERE c)` -> `agg(CASE WHEN c THEN x END)`, for engines without FILTER.

    Redshift has no aggregate FILTER clause and sqlglot 30.30 keeps it there; for count, sum,
    avg, max and min the CASE form is the same aggregate (NULLs are ignored).
    """

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Filter) and isinstance(node.this, exp.AggFunc):
            agg = node.this.copy()
            condition = node.expression.this.copy()
            arg = agg.this
            value = exp.Literal.number(1) if isinstance(arg, exp.Star) else arg
            agg.set("this", exp.Case(ifs=[exp.If(this=condition, true=value)]))
            return agg
        return node

    return query.transform(transform, copy=copy)


NO_FILTER_CLAUSE = frozenset({"redshift"})

# Collations the canonical SQL names: "C" (byte order) on the sort keys of the big sorts, and
# "default" to hand a column back with the database's own collation.
BYTE_ORDER_COLLATIONS = frozenset({"C", "default"})


def _byte_order_collation(query: exp.Expr, *, copy: bool = True) -> exp.Expr:
    """`x COLLATE "C"` / `x COLLATE "default"` -> `x` on every engine but PostgreSQL.

    PostgreSQL compares text with the database's collation (strcoll, no abbreviated sort keys,
    unless it is "C"); the canonical SQL sorts its text keys (unit ids, event names) in byte
    order there, which changes no equality for deterministic collations and made the events
    sorts ~1.2-4x faster (benchmarks/README.md). DuckDB, Spark and the cloud warehouses compare
    strings in binary order by default and do not all know a collation called "C".
    """

    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Collate) and node.expression.name in BYTE_ORDER_COLLATIONS:
            return node.this
        return node

    return query.transform(transform, copy=copy)


def to_sql(query: exp.Expr, dialect_name: str, *, copy: bool = True) -> str:
    """Generate `query` in `dialect_name`; constructs the dialect cannot express raise.

    copy=False: `query` is the caller's own tree and may be rewritten in place.
    """
    d = dialect(dialect_name)
    if dialect_name == "postgres":
        # the canonical SQL is PostgreSQL's: its interval arithmetic and COLLATE stay as written
        # (sqlglot's TIMESTAMPADD for it would import and run its optimizer, ~0.2 s per process)
        query = query.copy() if copy else query
    else:
        query = _timestamp_arithmetic(query, copy=copy)
        query = _byte_order_collation(query, copy=False)
    if dialect_name in NO_FILTER_CLAUSE:
        query = _filter_as_case(query, copy=False)
    try:
        return query.sql(
            dialect=d.sqlglot,
            pretty=True,
            unsupported_level=ErrorLevel.RAISE,
            comments=False,
            copy=False,
        )
    except sqlglot.errors.UnsupportedError as exc:
        raise RenderError(f"{dialect_name}: {exc}") from exc


# ANALYZE of the stages samples 300 x this many rows (default 100: 30,000). The plans that read
# them need row counts and rough distributions only; the full sample cost 0.15-0.25 s of each run
# at 1M-5M benchmark events for the same plans. SET LOCAL: this transaction only.
_SMALL_SAMPLE = Rendered(
    "statistics_target", "SET LOCAL default_statistics_target = 10", {}, None, "execute"
)


def render_plan(
    statements: Sequence[Statement],
    dialect_name: str,
    sources: Mapping[str, Source],
    *,
    stage_suffix: str = "",
) -> list[Rendered]:
    """Every statement of a plan as it runs on `dialect_name`, stages materialised its way.

    `stage_suffix` renames the stage relations (abflow_units -> abflow_units_<suffix>) where
    they are shared by concurrent extractions (Spark's temporary views live in the session).
    """
    d = dialect(dialect_name)
    out: list[Rendered] = []
    stages: list[tuple[str, exp.Expr, dict[str, Any]]] = []
    renames = {st.relation: st.relation + stage_suffix for st in statements if st.relation}
    for st in statements:
        # one copy per statement (a plan can be rendered again); every rewrite below is in place
        query = substitute_sources(st.query.copy(), sources, dialect_name, copy=False)
        if stage_suffix:
            query = _rename_tables(query, renames, copy=False)
            st = Statement(st.name, query, st.params, renames.get(st.relation or "", None), st.kind)
        if st.relation is not None and d.materialize == "cte":
            stages.append((st.relation, query, st.params))
            continue
        params = dict(st.params)
        if d.materialize == "cte" and stages:
            used = _referenced_stages(query, stages)
            if used:
                if not isinstance(query, exp.Query):
                    raise RenderError(f"{dialect_name}: {st.name} reads a stage it cannot inline")
                query = with_ctes(query, [(n, q) for n, q, _ in used])  # type: ignore[misc]
                for _, _, p in used:
                    params.update(p)
        select_sql = to_sql(query, dialect_name, copy=False)
        if st.relation is None:
            out.append(Rendered(st.name, select_sql, params, kind=st.kind))
        elif d.materialize == "view":
            out.append(
                Rendered(st.name, select_sql, params, st.relation, "view", select_sql=select_sql)
            )
        else:
            name = exp.to_identifier(st.relation).sql(dialect=d.sqlglot)
            ddl = f"{d.temp_table_prefix} {name}{d.temp_table_suffix} AS\n{select_sql}"
            out.append(Rendered(st.name, ddl, params, st.relation, "materialize", select_sql))
            if d.analyze:
                if _SMALL_SAMPLE not in out:
                    out.append(_SMALL_SAMPLE)
                out.append(
                    Rendered(
                        f"analyze_{st.relation}", f"ANALYZE {name}", {}, st.relation, "analyze"
                    )
                )
    return out


def rename_tables(query: exp.Query, renames: Mapping[str, str]) -> exp.Query:
    """`query` reading other relations in place of the named ones (kept under their aliases)."""
    renamed = _rename_tables(query, renames)
    assert isinstance(renamed, exp.Query)
    return renamed


def _rename_tables(query: exp.Expr, renames: Mapping[str, str], *, copy: bool = True) -> exp.Expr:
    def transform(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Table) and not node.args.get("db") and node.name in renames:
            renamed = exp.Table(this=exp.to_identifier(renames[node.name]))
            renamed.set("alias", exp.TableAlias(this=exp.to_identifier(node.alias or node.name)))
            return renamed
        return node

    return query.transform(transform, copy=copy)


def _referenced_stages(
    query: exp.Expr, stages: Sequence[tuple[str, exp.Expr, dict[str, Any]]]
) -> list[tuple[str, exp.Expr, dict[str, Any]]]:
    """The stages `query` reads, directly or through other stages, in plan order."""
    by_name = {name: (name, q, p) for name, q, p in stages}
    needed: set[str] = set()
    todo = [query]
    while todo:
        q = todo.pop()
        for table in q.find_all(exp.Table):
            if not table.args.get("db") and table.name in by_name and table.name not in needed:
                needed.add(table.name)
                todo.append(by_name[table.name][1])
    return [by_name[name] for name, _, _ in stages if name in needed]


def parse_check(sql: str, dialect_name: str) -> None:
    """Parse `sql` back in `dialect_name`; raises on any error (golden tests, `abflow sql`)."""
    sqlglot.parse(sql, read=dialect(dialect_name).sqlglot, error_level=ErrorLevel.RAISE)
