"""The `abflow` command line: migrate, experiments, run, backfill, promote, report, plan, serve."""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.console import Console
from rich.text import Text

from abflow.definitions import DefinitionError, load_experiment_files
from abflow.redact import install_log_redaction, redact
from abflow.settings import Settings, get_settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Warehouse-native A/B test analysis on Prefect.",
)
experiments_app = typer.Typer(no_args_is_help=True, help="Manage experiment definitions.")


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    from abflow import __version__

    try:
        prefect = version("prefect")  # the metadata only: importing Prefect takes a second
    except PackageNotFoundError:
        prefect = "not installed"
    py = ".".join(str(n) for n in sys.version_info[:3])
    sys.stdout.write(f"abflow {__version__} (prefect {prefect}, python {py})\n")
    raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print abflow's version (and Prefect's and Python's) and exit.",
    ),
) -> None:
    """Warehouse-native A/B test analysis on Prefect."""


app.add_typer(experiments_app, name="experiments")
# Pipes and `make` get no terminal width; results tables need room, so never go below 150.
# markup=False: experiment names, keys, variants and messages come from users and the warehouse;
# "[/bold]" in a name must print as itself (styles are applied with Text, never with markup).
console = Console(width=None if Console().is_terminal else 150, markup=False)
err_console = Console(
    stderr=True, width=None if Console(stderr=True).is_terminal else 150, markup=False
)

DEMO_AS_OF = datetime(2026, 11, 21, tzinfo=UTC)

# Great Expectations imports pyspark when it is installed (the spark extra), and pyspark warns
# about pandas 3 on import; abflow never hands pandas frames to Spark, so the CLI stays quiet.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


_ACTOR_HELP = (
    "who asked, recorded as promotions.actor (default: the database login; the login itself is "
    "always recorded in promotions.db_user)"
)
_SEVERITY_STYLE = {"critical": "red", "warning": "yellow"}


class CliError(Exception):
    """An expected failure: printed as one line, exit code 1."""


def _prefect_defaults() -> None:
    # The CLI is the process edge: set Prefect knobs before Prefect is imported.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


@contextmanager
def _flow_process() -> Iterator[Any]:
    """Prefect defaults, and Prefect's temporary server booting while the flow modules import.

    Yields `ready()`: call it after the imports, before the first flow call; it also checks that
    the warehouse answers.
    """
    _prefect_defaults()
    from abflow.prefect_server import early_server, wanted

    temporary = wanted()
    raw_timeout = os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"]
    try:
        timeout = float(raw_timeout)
    except ValueError:
        _fail(f"PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: not a number: {raw_timeout!r}")
    keep = _preflight(get_settings).prefect_server_idle_minutes * 60
    with early_server(timeout, keep) as wait, ExitStack() as stack:

        def ready() -> None:
            settings = get_settings()
            if settings.gx_data_docs_dir is not None:
                # Only GX's Data Docs need GX (3 s to import; the suites otherwise run as SQL):
                # import it here, while the Prefect server boots, not inside the task.
                import great_expectations  # noqa: F401

            # A dead warehouse or a schema behind this abflow is one line here, not a failed
            # flow run with a traceback per task.
            _check_schema(settings)
            try:
                wait()
            except RuntimeError as exc:
                raise CliError(str(exc).splitlines()[0]) from None
            if temporary:
                # Heartbeats tell a server that a run crashed; this server is abflow's own local
                # one (per run or kept), and joining the heartbeat thread added ~1 s to every run.
                from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

                stack.enter_context(temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}))

        yield ready


def _engine(settings: Settings):
    from abflow.warehouse.engine import make_engine

    return make_engine(settings)


def _check_schema(settings: Settings) -> Any:
    """An engine on a schema that has every migration; SchemaOutdated (one line) otherwise."""
    from abflow.warehouse.migrate import check_schema

    engine = _engine(settings)
    check_schema(engine, settings.schema_name)
    return engine


def _url(settings: Settings) -> str:
    from abflow.warehouse.engine import embedded_url

    return settings.database_url or embedded_url(settings.pgdata)


def _fail(message: str) -> None:
    # Text, not markup: messages quote user input such as "metrics[m].kind".
    line = Text("error: ", style="red")
    line.append(redact(message))
    err_console.print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _preflight(fn: Any) -> Any:
    """Checks of the arguments before Prefect starts: one line on bad input, nothing imported.

    `_run_guarded` imports what its handlers name (SQLAlchemy, the promotion module and with it
    SciPy: ~1 s), which would delay the start of Prefect's server behind them.
    """
    try:
        return fn()
    except (CliError, ValueError) as exc:
        _fail(_first_line(exc))


def _run_guarded(fn: Any) -> Any:
    """Turn expected failures into one-line messages and exit code 1."""
    from sqlalchemy.exc import DBAPIError, OperationalError

    from abflow.warehouse.engine import WarehouseUnavailable
    from abflow.warehouse.migrate import SchemaOutdated
    from abflow.warehouse.promotion import PromotionRefused

    try:
        return fn()
    except (DefinitionError, CliError, PromotionRefused, ValueError) as exc:
        _fail(_first_line(exc))
    except (WarehouseUnavailable, SchemaOutdated) as exc:
        _fail(_first_line(exc))
    except OperationalError as exc:
        _fail(f"warehouse unreachable: {_first_line(exc.orig or exc)}")
    except DBAPIError as exc:
        # e.g. "permission denied for table promotions" for a login without the right role
        _fail(f"warehouse refused: {_first_line(exc.orig or exc)}")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


@app.command()
def migrate() -> None:
    """Create or upgrade the abflow schema (idempotent)."""
    from abflow.warehouse.migrate import migrate as do_migrate

    def go() -> None:
        import psycopg
        from sqlalchemy.exc import ProgrammingError

        s = get_settings()
        eng = _engine(s)
        try:
            applied = do_migrate(eng, s.schema_name)
        except ProgrammingError as exc:
            if not isinstance(exc.orig, psycopg.errors.InsufficientPrivilege):
                raise
            with eng.connect() as conn:
                login = conn.exec_driver_sql("select session_user").scalar()
            raise CliError(
                f"`abflow migrate` needs the schema owner, not {login}: {_first_line(exc.orig)}"
            ) from None
        console.print(
            f"schema {s.schema_name}: "
            + (f"applied {', '.join(applied)}" if applied else "up to date")
        )

    _run_guarded(go)


@experiments_app.command("apply")
def experiments_apply(
    paths: Annotated[list[Path], typer.Argument(help="YAML files or dirs")],
) -> None:
    """Validate and upsert experiment definitions (all files or none)."""
    from abflow.warehouse.experiments_repo import upsert_experiments

    def go() -> None:
        exps = load_experiment_files(paths)
        eng = _check_schema(get_settings())
        with eng.begin() as conn:
            upsert_experiments(conn, exps)
        for e in exps:
            console.print(
                f"applied {e.key} ({e.status}, {len(e.variants)} variants, "
                f"{len(e.metrics)} metrics)",
                highlight=False,
            )

    _run_guarded(go)


@experiments_app.command("list")
def experiments_list() -> None:
    """List stored experiment definitions."""
    from rich.table import Table

    from abflow.warehouse.experiments_repo import list_experiments_checked
    from abflow.warehouse.promotion import configs

    def go() -> None:
        eng = _check_schema(get_settings())
        with eng.connect() as conn:
            exps, broken = list_experiments_checked(conn)
            cfgs = configs(conn)
        t = Table(
            "key", "name", "status", "start", "variants", "primary metric", "allocation", "config"
        )
        for e in exps:
            # Text cells: a name like "Checkout [/bold] test" is shown, never parsed as markup.
            t.add_row(
                *map(
                    Text,
                    (
                        e.key,
                        e.name,
                        e.status,
                        f"{e.start_at:%Y-%m-%d}",
                        ", ".join(v.key + ("*" if v.control else "") for v in e.variants),
                        e.primary_metric.key,
                        e.allocation,
                    ),
                ),
                _config_cell(cfgs.get(e.key)),
            )
        for key, msg in broken.items():
            t.add_row(
                Text(key),
                Text(f"invalid stored definition: {msg}", style="red"),
                *(Text("") for _ in range(5)),
                _config_cell(cfgs.get(key)),
            )
        console.print(t)

    _run_guarded(go)


def _config_cell(cfg: dict[str, Any] | None) -> Text:
    """What apps get (version, promoted variant or weighted split) and any pin on it."""
    from abflow.summary import describe_pin

    if cfg is None:
        return Text("—")
    cell = Text(f"v{cfg['version']} " + (cfg["promoted_variant_key"] or "weighted split"))
    pin = describe_pin(cfg)
    if pin:
        cell.append(f"\n{pin}", style="yellow")
    return cell


def _parse_ts(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise CliError(f"--as-of: not an ISO timestamp: {value!r}") from None
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _show(
    summaries: list[dict[str, Any]], keys: list[str] | None, quiet: bool, as_json: bool
) -> None:
    from abflow.console import print_results
    from abflow.warehouse.readback import latest_results

    if as_json:
        sys.stdout.write(json.dumps(summaries, default=str, indent=2) + "\n")
        return
    if quiet:
        for s in summaries:
            console.print(
                Text(
                    f"{s['experiment_key']}: {s['status']} {s.get('decision') or ''} "
                    f"{s.get('variant_key') or ''}".rstrip()
                )
            )
        return
    settings = get_settings()
    with _engine(settings).connect() as conn:
        print_results(
            console, latest_results(conn, keys or [x["experiment_key"] for x in summaries])
        )
    for x in summaries:
        if x["status"] == "failed":
            line = Text(f"{x['experiment_key']} failed: ", style="red")
            line.append(redact(x.get("message")))
            err_console.print(line)
        if x.get("promotion"):
            changed = not str(x["promotion"]).startswith("not ")
            console.print(
                Text(
                    f"{x['experiment_key']}: {x['promotion']}",
                    style="green" if changed else "yellow",
                )
            )


@contextmanager
def _progress(silent: bool, label: str, total: int | None = None) -> Iterator[Any]:
    """Rich progress on stderr fed by abflow.progress events (days, then experiments)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from abflow import progress as events

    if silent:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=False,
    )
    task_id = bar.add_task(label, total=total)

    days_started = 0

    def on_event(event: str, data: dict[str, Any]) -> None:
        nonlocal days_started
        if event == "day_started":
            # The previous day is complete once the next one starts.
            bar.update(
                task_id,
                completed=days_started,
                description=f"{label} as of {data['as_of']:%Y-%m-%d}",
            )
            days_started += 1
        elif event == "experiment_done":
            line = f"{data['experiment_key']}: {data['status']} {data.get('decision') or ''}"
            bar.console.print(Text(line.rstrip(), style="dim"))
            if total is None:
                bar.advance(task_id)

    with bar, events.listening(on_event):
        yield on_event
        bar.update(task_id, completed=total if total is not None else bar.tasks[0].completed)


@app.command()
def run(
    experiment: Annotated[list[str] | None, typer.Option("--experiment", "-e")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="ISO timestamp")] = None,
    full_refresh: bool = typer.Option(
        False, "--full-refresh", help="recompute from all events, not only the new ones"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Run the analysis flow once (all running experiments, or the given keys)."""
    from abflow.as_of import check_not_future

    def check() -> datetime | None:
        ts = _parse_ts(as_of)
        if ts is not None:
            check_not_future(ts, "--as-of")
        return ts

    ts = _preflight(check)  # a future --as-of is refused before Prefect starts
    with _flow_process() as ready:

        def go() -> list[dict[str, Any]]:
            from abflow.flows.analyze import analyze_experiments

            ready()
            with _progress(quiet or as_json, "analysing"):
                return analyze_experiments(
                    experiment_keys=experiment or None, as_of=ts, full_refresh=full_refresh
                )

        summaries = _run_guarded(go)
    _show(summaries, experiment, quiet, as_json)
    if any(s["status"] == "failed" for s in summaries):
        raise typer.Exit(2)


@app.command()
def backfill(
    start: Annotated[str, typer.Option("--start", help="first day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option("--end", help="last day, YYYY-MM-DD")],
    experiment: Annotated[list[str] | None, typer.Option("--experiment", "-e")] = None,
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Recompute the daily analysis as of the end of each day in [start, end] (complete days)."""
    from abflow.as_of import check_backfill_end, day_ends

    def check() -> tuple[date, date]:
        try:
            d0, d1 = date.fromisoformat(start), date.fromisoformat(end)
        except ValueError as exc:
            raise CliError(f"--start/--end: {exc}") from None
        day_ends(d0, d1)
        check_backfill_end(d1, "--end")
        return d0, d1

    d0, d1 = _preflight(check)  # refused before Prefect starts; nothing is written
    with _flow_process() as ready:

        def go() -> list[dict[str, Any]]:
            from abflow.flows.backfill import backfill_experiments

            ready()
            with _progress(quiet or as_json, "backfilling", total=(d1 - d0).days + 1):
                return backfill_experiments(start=d0, end=d1, experiments=experiment or None)

        out = _run_guarded(go)
    if as_json:
        sys.stdout.write(json.dumps(out, default=str, indent=2) + "\n")
    else:
        for s in out:
            console.print(
                f"{s['as_of'][:10]} {s['experiment_key']}: {s['status']} "
                f"{s.get('decision') or ''} {s.get('variant_key') or ''}".rstrip()
            )
    if any(s["status"] == "failed" for s in out):
        raise typer.Exit(2)


def _config_change(key: str, change: Any) -> None:
    """One transaction under the experiment's lock (no DDL: the schema must be migrated)."""
    from abflow.alerts_cli import notify_config_change
    from abflow.warehouse.activity import last_promotion_id

    def go() -> None:
        settings = get_settings()
        eng = _check_schema(settings)
        with eng.begin() as conn:
            mark = last_promotion_id(conn, key)
            out = change(conn, settings.lock_timeout_seconds)
        console.print(Text(f"{key}: {out.message}"), soft_wrap=True)
        if out.changed:  # abflow.experiment.* events, when a Prefect server is configured
            notify_config_change(settings, eng, key, mark)

    _run_guarded(go)


@app.command()
def promote(
    key: str,
    variant: str,
    reason: Annotated[str | None, typer.Option("--reason", help="recorded in promotions")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help=_ACTOR_HELP)] = None,
    force: bool = typer.Option(
        False,
        "--force",
        help="promote although the latest run failed, is unhealthy or missing (needs --reason)",
    ),
) -> None:
    """Promote a variant into experiment_config and pin it (audited).

    Refused unless the latest run succeeded; runs never change a pinned config (`abflow unpin`).
    """
    from abflow.warehouse.promotion import promote as do_promote

    _config_change(
        key,
        lambda conn, timeout: do_promote(
            conn, key, variant, actor=actor or "", reason=reason, force=force,
            lock_timeout_seconds=timeout,
        ),
    )  # fmt: skip


@app.command()
def rollback(
    key: str,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help=_ACTOR_HELP)] = None,
) -> None:
    """Undo the newest promotion still in force and pin the result (audited).

    Repeat to walk back to the weighted split; there it says "nothing to roll back" (exit 1).
    """
    from abflow.warehouse.promotion import rollback as do_rollback

    _config_change(
        key,
        lambda conn, timeout: do_rollback(
            conn, key, actor=actor or "", reason=reason, lock_timeout_seconds=timeout
        ),
    )


@app.command()
def unpin(
    key: str,
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    actor: Annotated[str | None, typer.Option("--actor", help=_ACTOR_HELP)] = None,
) -> None:
    """Hand a pinned config back to the decision rules (audited)."""
    from abflow.warehouse.promotion import unpin as do_unpin

    _config_change(
        key,
        lambda conn, timeout: do_unpin(
            conn, key, actor=actor or "", reason=reason, lock_timeout_seconds=timeout
        ),
    )


@app.command()
def plan(
    baseline: Annotated[float, typer.Option("--baseline", help="control rate or mean")],
    mde: Annotated[float, typer.Option("--mde", help="minimum detectable effect")],
    relative: bool = typer.Option(False, "--relative", help="MDE is relative to baseline"),
    power: float = typer.Option(0.8, "--power"),
    alpha: float = typer.Option(0.05, "--alpha"),
    variants: int = typer.Option(2, "--variants"),
    std: Annotated[float | None, typer.Option("--std", help="std dev for a mean metric")] = None,
    fixed_horizon: bool = typer.Option(
        False,
        "--fixed-horizon",
        help="plan a one-look test (analysis.sequential: false) instead of the always-valid rule",
    ),
) -> None:
    """Sample size per variant for a baseline and MDE (proportion, or mean with --std)."""
    from abflow.stats import sample_size_per_variant

    def go() -> None:
        if not 0 < alpha < 1 or not 0 < power < 1:
            raise CliError("--alpha and --power must be between 0 and 1")
        if mde <= 0:
            raise CliError("--mde must be positive")
        if variants < 2:
            raise CliError("--variants must be at least 2")
        kind: Literal["proportion", "mean"] = "mean" if std is not None else "proportion"
        if kind == "proportion" and not 0 < baseline < 1:
            raise CliError("--baseline must be a rate in (0, 1) (or give --std for a mean)")
        n = sample_size_per_variant(
            baseline,
            mde,
            relative=relative,
            alpha=alpha,
            power=power,
            variants=variants,
            kind=kind,
            std=std,
            sequential=not fixed_horizon,
        )
        effect = f"{mde * 100:g}% relative" if relative else f"{mde:g} absolute"
        rule = "a fixed-horizon test" if fixed_horizon else "the always-valid (daily-look) rule"
        console.print(
            f"{n:,} units per variant ({n * variants:,} total) to detect a {effect} "
            f"change from {baseline:g} with power {power:g} at alpha {alpha:g}"
            f" over {variants} variants under {rule}"
        )

    _run_guarded(go)


@app.command()
def report(
    key: str,
    out: Annotated[Path | None, typer.Option("--out", help="HTML file")] = None,
) -> None:
    """Write a self-contained HTML report of an experiment's results over time."""
    from abflow.report import render_report
    from abflow.warehouse.experiments_repo import get_experiment
    from abflow.warehouse.readback import insight_history, latest_results

    def go() -> None:
        with _check_schema(get_settings()).connect() as conn:
            exp = get_experiment(conn, key)
            if exp is None:
                raise CliError(f"experiment '{key}' is not defined")
            latest = latest_results(conn, [key])
            history = insight_history(conn, key)
        if not latest:
            raise CliError(f"experiment '{key}' has no analysis runs yet (run `abflow run`)")
        target = out or Path(f"{key}.html")
        target.write_text(render_report(exp, latest[0], history), encoding="utf-8")
        console.print(Text(f"wrote {target}"))

    _run_guarded(go)


@app.command()
def validate(
    experiment: Annotated[list[str] | None, typer.Option("--experiment", "-e")] = None,
) -> None:
    """Run only the data-quality and health checks and print failures."""
    from datetime import UTC as _UTC

    from abflow import health
    from abflow.summary import sample_text
    from abflow.warehouse import extract
    from abflow.warehouse.experiments_repo import list_experiments_checked
    from abflow.warehouse.quality import run_expectations

    def go() -> int:
        s = get_settings()
        eng = _check_schema(s)
        url = _url(s)
        now = datetime.now(_UTC)
        failures = 0
        with eng.connect() as conn:
            # One broken stored definition is reported, never stops the others.
            exps, broken = list_experiments_checked(
                conn, status=None if experiment else "running", keys=experiment or None
            )
            for key, msg in sorted(broken.items()):
                failures += 1
                console.print(Text(f"{key}: invalid stored definition: {msg}", style="red"))
            from abflow.tasks import engines as elsewhere

            warehouse = elsewhere.is_elsewhere(s, url)
            for e in exps:
                if warehouse and not warehouse.startswith("postgres"):  # DuckDB, Spark
                    checks = elsewhere.checks_elsewhere(s, warehouse, e, now, None)
                    exposure = elsewhere.exposure_elsewhere(s, warehouse, e, now)
                else:
                    checks = run_expectations(
                        warehouse or url,
                        s.schema_name,
                        e,
                        now,
                        assignments_source=s.assignments_source,
                        events_source=s.events_source,
                    )
                    exposure = extract.fetch_exposure_summary(
                        conn, e, now, assignments=s.assignments_source
                    )
                checks += health.exposure_checks(e, exposure)
                bad = [c for c in checks if not c.passed]
                failures += len(health.critical_failures(checks))
                head = Text(e.key, style="bold")
                head.append(f": {len(checks)} checks, {len(bad)} failed")
                console.print(head)
                for c in bad:
                    obs = "" if c.observed is None else f" observed={c.observed:.4g}"
                    line = Text(f"  [{c.severity}]", style=_SEVERITY_STYLE[c.severity])
                    line.append(f" {c.check_name}{obs}{sample_text(c.details)}")
                    console.print(line)
        return failures

    if _run_guarded(go):
        raise typer.Exit(2)


@app.command("sql")
def sql_(
    experiment: Annotated[
        str, typer.Option("--experiment", "-e", help="experiment key, or a YAML definition file")
    ],
    dialect: Annotated[
        str | None,
        typer.Option(
            "--dialect",
            "-d",
            help="postgres|duckdb|spark|snowflake|bigquery|databricks|trino|redshift "
            "(default: the configured warehouse's)",
        ),
    ] = None,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="ISO timestamp (default: now)")
    ] = None,
) -> None:
    """Print every statement abflow runs (or would run) for an experiment, in one dialect."""
    from abflow.warehouse.dialects import DIALECTS
    from abflow.warehouse.engines import warehouse_kind
    from abflow.warehouse.extract import default_sources
    from abflow.warehouse.show import experiment_sql

    def go() -> str:
        s = get_settings()
        configured = warehouse_kind(s.warehouse_url).dialect if s.warehouse_url else "postgres"
        target = dialect or configured
        if target not in DIALECTS:
            raise CliError(f"--dialect {target!r}: expected one of {', '.join(DIALECTS)}")
        when = _parse_ts(as_of) or datetime.now(UTC)
        path = Path(experiment)
        if experiment.endswith((".yaml", ".yml")) or path.is_file():
            found = load_experiment_files([path])
            if len(found) != 1:
                raise CliError(f"{experiment}: expected one experiment definition")
            definition = found[0]
        else:
            from abflow.warehouse.experiments_repo import list_experiments

            engine = _engine(s)
            try:
                with engine.connect() as conn:
                    matches = [e for e in list_experiments(conn) if e.key == experiment]
            finally:
                engine.dispose()
            if not matches:
                raise CliError(f"unknown experiment key: {experiment}")
            definition = matches[0]
        sources = default_sources(s.assignments_source, s.events_source)
        return experiment_sql(definition, when, target, sources)

    sys.stdout.write(_run_guarded(go))


@app.command()
def demo(
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Embedded PostgreSQL + demo experiments + generated data + one analysis run."""
    with _flow_process() as ready:
        summaries = _run_guarded(lambda: _demo(ready))
    _show(summaries, None, quiet, False)


def _demo(ready: Any) -> list[dict[str, Any]]:
    """Migrate, load the generated demo data and analyse it (the body of `abflow demo`)."""
    from abflow.demo_data import DEMO_EXPERIMENTS_DIR, generate_demo_data, load_frames
    from abflow.warehouse.experiments_repo import upsert_experiments
    from abflow.warehouse.migrate import migrate as do_migrate

    s = get_settings()
    eng = _engine(s)
    err_console.print(
        "warehouse: "
        + ("ABFLOW_DATABASE_URL" if s.database_url else f"embedded PostgreSQL in {s.pgdata}")
    )
    do_migrate(eng, s.schema_name)
    exps = load_experiment_files([DEMO_EXPERIMENTS_DIR])
    assignments, events = generate_demo_data(exps, as_of=DEMO_AS_OF)
    with eng.begin() as conn:
        upsert_experiments(conn, exps)
        raw = conn.connection.dbapi_connection
        n_a, n_e = load_frames(
            raw, s.schema_name, assignments, events, replace_experiments=[e.key for e in exps]
        )
    err_console.print(
        f"loaded {n_a:,} assignments and {n_e:,} events with COPY; "
        f"{len(exps)} experiments; analysing as of {DEMO_AS_OF:%Y-%m-%d} …"
    )
    from abflow.flows.analyze import analyze_experiments

    ready()
    return analyze_experiments(experiment_keys=[e.key for e in exps], as_of=DEMO_AS_OF)


@app.command()
def serve() -> None:
    """Serve the flows with their schedules in one process (needs a Prefect server)."""
    _prefect_defaults()
    from abflow.flows.serve import serve_all

    serve_all()


def _register_simulate() -> None:
    # Own module (abflow/simulate_cli.py): keeps this file to the warehouse-facing verbs.
    from abflow.simulate_cli import simulate_command

    app.command("simulate")(simulate_command)


_register_simulate()


def _register_alerts() -> None:
    # Own module (abflow/alerts_cli.py): `alerts install|list|remove` and `digest`.
    from abflow.alerts_cli import register

    register(app)


_register_alerts()


def _register_web() -> None:
    # Own module (abflow/web/cli.py): `web` and `token create|list|revoke`.
    from abflow.web.cli import register

    register(app)


_register_web()


def _register_server() -> None:
    # Own module (abflow/server_cli.py): `server status|stop` for the kept Prefect server.
    from abflow.server_cli import register

    register(app)


_register_server()


def main() -> None:
    """Console entry point: run the command, then exit without tearing the interpreter down."""
    install_log_redaction()
    try:
        app()
    except SystemExit as exc:
        _exit_now(exc.code)
    _exit_now(0)


def _exit_now(code: object) -> None:
    """Finish what exit would (threads, atexit handlers, flushes), skip the module teardown.

    Tearing down the modules Prefect, SciPy, pandas and SQLAlchemy load took ~0.6 s at the end
    of every command (measured on `abflow run`). What must happen at exit is registered with
    atexit (the embedded PostgreSQL's stop, Prefect's log and event workers, logging's flush)
    and runs here, after the non-daemon threads are joined, exactly as in a normal exit.
    """
    import atexit
    import threading

    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        sys.stderr.write(f"{code}\n")
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing left to say
            pass
    os._exit(status)


if __name__ == "__main__":
    main()
