"""`abflow server start|status|stop`: the local Prefect server the CLI keeps between runs."""

from __future__ import annotations

import time

import typer

from abflow.prefect_server import (
    LEASE_FILE,
    LOG_FILE,
    healthy,
    prefect_home,
    read_state,
    stop_kept_server,
)

server_app = typer.Typer(
    no_args_is_help=True,
    help="The local Prefect server `abflow run` keeps between runs (no PREFECT_API_URL set).",
)


@server_app.command("start")
def start() -> None:
    """Start the kept Prefect server now (or find it running) and wait until it answers."""
    from abflow.prefect_server import early_server, wanted
    from abflow.settings import get_settings

    if not wanted():
        typer.echo("PREFECT_API_URL is set (or temporary servers are off): nothing to start")
        raise typer.Exit(1)
    minutes = get_settings().prefect_server_idle_minutes
    if minutes <= 0:
        typer.echo("ABFLOW_PREFECT_SERVER_IDLE_MINUTES is 0: servers are not kept")
        raise typer.Exit(1)
    started = time.monotonic()
    with early_server(keep_seconds=minutes * 60) as wait:
        wait()
    state = read_state(prefect_home())
    url = state["api_url"] if state else "?"
    typer.echo(f"kept Prefect server at {url} answering after {time.monotonic() - started:.1f} s")


@server_app.command("status")
def status() -> None:
    """Show the kept Prefect server of this PREFECT_HOME: URL, process, idle time."""
    home = prefect_home()
    state = read_state(home)
    if state is None:
        typer.echo(f"no kept Prefect server in {home}")
        return
    try:
        idle = time.time() - (home / LEASE_FILE).stat().st_mtime
    except OSError:
        idle = 0.0
    answering = "answering" if healthy(str(state["api_url"]), timeout=1.0) else "not answering"
    typer.echo(
        f"{state['api_url']} ({answering}); watchdog pid {state.get('pid')}, "
        f"idle {idle:.0f} s of {float(state.get('idle_seconds', 0)):.0f} s; "
        f"log {home / LOG_FILE}"
    )


@server_app.command("stop")
def stop() -> None:
    """Stop the kept Prefect server now (the next run starts a new one)."""
    state = stop_kept_server()
    if state is None:
        typer.echo(f"no kept Prefect server in {prefect_home()}")
    else:
        typer.echo(f"stopped the kept Prefect server at {state['api_url']}")


def register(app: typer.Typer) -> None:
    """Add `server start|status|stop` to the CLI."""
    app.add_typer(server_app, name="server")
