"""`abflow alerts install|list|remove` and `abflow digest` (registered by abflow.cli).

`alerts` talks to the Prefect API named by PREFECT_API_URL (a `prefect server start` server or
Prefect Cloud); Prefect is imported only when one of these verbs runs.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from abflow.settings import get_settings

alerts_app = typer.Typer(
    no_args_is_help=True,
    help="Prefect automations that notify on promotions, unhealthy runs, changed "
    "recommendations and a missing daily run.",
)
MIN_MISSING_AFTER = timedelta(seconds=10)  # Prefect's minimum for absence (proactive) triggers


class AlertsCliError(ValueError):
    """A bad alerts option or an unreachable Prefect API; one line."""


def _cli() -> Any:
    from abflow import cli

    return cli


def _guarded(fn: Any) -> Any:
    """abflow's one-line errors, plus the alerts' own and an unreachable Prefect API."""
    import httpx

    from abflow.ops.automations import AlertsError

    cli = _cli()

    def go() -> Any:
        try:
            return fn()
        except (AlertsError, AlertsCliError) as exc:
            raise cli.CliError(str(exc)) from None
        except httpx.HTTPError as exc:
            raise cli.CliError(
                f"Prefect API at {_api_url()}: {type(exc).__name__}: {exc}"
            ) from None

    return cli._run_guarded(go)


def _api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    value = PREFECT_API_URL.value()
    return str(value) if value else None


def _require_server() -> str:
    cli = _cli()
    cli._prefect_defaults()
    url = _api_url()
    if not url:
        raise AlertsCliError(
            "PREFECT_API_URL is not set: automations live on a Prefect server"
            " (`prefect server start`, then export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    return url


def parse_duration(value: str, option: str) -> timedelta:
    """'26h', '90m', '2d', '30s'."""
    from abflow.alerting.digest import parse_since

    now = datetime.now(UTC)
    try:
        when = parse_since(value, now)
    except ValueError:
        when = None
    if when is None or not any(value.strip().lower().endswith(u) for u in "smhdw"):
        raise AlertsCliError(f"{option}: expected a duration such as 26h, 90m or 2d, not {value!r}")
    return now - when


@alerts_app.command("install")
def install(
    webhook_url: Annotated[
        str | None,
        typer.Option("--webhook-url", help="create a notification block for this webhook URL"),
    ] = None,
    block: Annotated[
        str | None,
        typer.Option("--block", help="an existing notification block: NAME or TYPE-SLUG/NAME"),
    ] = None,
    missing_after: Annotated[
        str, typer.Option("--missing-after", help="no completed daily analysis for this long")
    ] = "26h",
) -> None:
    """Create or update abflow's automations (idempotent: one automation per name)."""
    from abflow.ops import automations

    def go() -> None:
        if (webhook_url is None) == (block is None):
            raise AlertsCliError("give exactly one of --webhook-url URL or --block NAME")
        window = parse_duration(missing_after, "--missing-after")
        if window < MIN_MISSING_AFTER:
            raise AlertsCliError("--missing-after: at least 10s (Prefect's minimum)")
        _require_server()
        if webhook_url is not None:
            block_id = automations.save_webhook_block(webhook_url)
            target = automations.block_names({block_id})[block_id]
        else:
            assert block is not None
            block_id, target = automations.find_block(block)
        for done in automations.install(block_id, missing_after=window):
            _cli().console.print(
                Text(f"{done.action} '{done.name}' ({done.id}) → notifies through {target}")
            )

    _guarded(go)


@alerts_app.command("list")
def list_alerts() -> None:
    """abflow's automations on the Prefect server: trigger, state and where they notify."""
    from abflow.ops import automations

    def go() -> None:
        _require_server()
        autos = automations.installed()
        if not autos:
            _cli().console.print("no abflow automations (run `abflow alerts install`)")
            return
        ids = {
            a.block_document_id for x in autos for a in x.actions if hasattr(a, "block_document_id")
        }
        names = automations.block_names(ids)
        t = Table("automation", "enabled", "trigger", "notifies", "id")
        for x in autos:
            targets = [
                names[a.block_document_id] for a in x.actions if hasattr(a, "block_document_id")
            ]
            t.add_row(
                x.name,
                "yes" if x.enabled else "no",
                x.trigger.describe_for_cli(),
                ", ".join(targets) or "—",
                str(x.id),
            )
        missing = [n for n in automations.NAMES if n not in {x.name for x in autos}]
        _cli().console.print(t)
        if missing:
            _cli().console.print(Text(f"not installed: {', '.join(missing)}", style="yellow"))

    _guarded(go)


@alerts_app.command("remove")
def remove(
    keep_block: bool = typer.Option(
        False, "--keep-block", help="keep the block created from --webhook-url"
    ),
) -> None:
    """Delete abflow's automations (and the block `--webhook-url` created)."""
    from abflow.ops import automations

    def go() -> None:
        _require_server()
        removed = automations.remove(keep_block=keep_block)
        for name in removed:
            _cli().console.print(Text(f"removed {name}"))
        if not removed:
            _cli().console.print("nothing to remove")

    _guarded(go)


def digest_command(
    since: Annotated[
        str, typer.Option("--since", help="a duration back from now (24h, 7d) or an ISO timestamp")
    ] = "24h",
    until: Annotated[str | None, typer.Option("--until", help="ISO timestamp, default now")] = None,
) -> None:
    """Markdown digest: decisions that changed, unhealthy runs, winners, overdue experiments."""
    from abflow.alerting.digest import parse_since

    def go() -> None:
        cli = _cli()
        end = cli._parse_ts(until) if until else datetime.now(UTC)
        start = parse_since(since, end)
        if start >= end:
            raise AlertsCliError(f"--since: {start.isoformat()} is not before {end.isoformat()}")
        from abflow.warehouse.activity import digest_markdown

        settings = get_settings()
        engine = cli._engine(settings)
        try:
            with engine.connect() as conn:
                text = digest_markdown(conn, start, end, report_url=settings.report_url)
        finally:
            engine.dispose()
        sys.stdout.write(text)

    _cli()._run_guarded(go)


def notify_config_change(settings: Any, engine: Any, key: str, after_id: int) -> None:
    """Send the events of a CLI promote/rollback/unpin when a Prefect server is configured.

    Without one (no PREFECT_API_URL in the environment or profile) nothing is sent: a temporary
    server would only start to receive and drop them.
    """
    from abflow.prefect_server import wanted

    if wanted():
        return
    from abflow.ops.events import config_change_events, flush, send

    try:
        with engine.connect() as conn:
            specs = config_change_events(conn, settings, key, after_id)
        if send(specs):
            flush()
    except Exception as exc:  # the change is committed; only its notification is lost
        line = f"warning: events for {key} not sent: {type(exc).__name__}: {exc}"
        _cli().err_console.print(Text(line.splitlines()[0], style="yellow"))


def register(app: typer.Typer) -> None:
    """Add `alerts …` and `digest` to the abflow CLI."""
    app.add_typer(alerts_app, name="alerts")
    app.command("digest")(digest_command)
