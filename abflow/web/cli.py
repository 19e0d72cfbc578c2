"""`abflow web` and `abflow token create|list|revoke` (registered by abflow.cli)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.console import Console
from rich.text import Text

if TYPE_CHECKING:
    from sqlalchemy import Engine

token_app = typer.Typer(no_args_is_help=True, help="Bearer tokens of the web app and HTTP API.")


def _console(stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    return Console(stderr=stderr, width=None if probe.is_terminal else 150)


def _fail(message: str) -> None:
    line = Text("error: ", style="red")
    line.append(message)
    _console(stderr=True).print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(1)


def _engine() -> Engine:
    """The results database, checked to be fully migrated (this never migrates: a writer login
    has no DDL; `abflow migrate` is the schema owner's)."""
    from sqlalchemy.exc import OperationalError

    from abflow.settings import get_settings
    from abflow.warehouse.engine import WarehouseUnavailable, make_engine
    from abflow.warehouse.migrate import SchemaOutdated, check_schema

    settings = get_settings()
    try:
        engine = make_engine(settings)
        check_schema(engine, settings.schema_name)
    except (WarehouseUnavailable, SchemaOutdated) as exc:
        _fail(str(exc).splitlines()[0])
    except OperationalError as exc:
        _fail(f"warehouse unreachable: {str(exc.orig or exc).splitlines()[0]}")
    return engine


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="who holds it; recorded as the actor of actions")],
    scope: Annotated[
        Literal["read", "write"], typer.Option("--scope", help="read, or write (includes read)")
    ] = "read",
) -> None:
    """Create a token and print it once (only its hash is stored)."""
    from abflow.warehouse.web_tokens import TokenError, create_token

    engine = _engine()
    try:
        with engine.begin() as conn:
            token = create_token(conn, name, scope)
    except TokenError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    note = Text(f"token '{name}' ({scope}) created; it is shown only now:", style="green")
    _console(stderr=True).print(note, highlight=False)
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(
    all_: Annotated[bool, typer.Option("--all", help="include revoked tokens")] = False,
) -> None:
    """Tokens: name, scope, prefix, created, last used (never the tokens themselves)."""
    from rich.table import Table

    from abflow.warehouse.web_tokens import list_tokens

    engine = _engine()
    try:
        with engine.connect() as conn:
            rows = list_tokens(conn, include_revoked=all_)
    finally:
        engine.dispose()
    table = Table("name", "scope", "token", "created", "by", "last used", "revoked")

    def when(value: object) -> str:
        return "—" if value is None else f"{value:%Y-%m-%d %H:%M}"

    for r in rows:
        table.add_row(
            Text(r["name"]), r["scope"], Text(f"{r['token_prefix']}…"), when(r["created_at"]),
            Text(str(r["created_by"])), when(r["last_used_at"]), when(r["revoked_at"]),
        )  # fmt: skip
    _console().print(table)


@token_app.command("revoke")
def token_revoke(name: str) -> None:
    """Revoke the live token of NAME (refused from then on; other web processes within seconds)."""
    from abflow.warehouse.web_tokens import TokenError, revoke_token

    engine = _engine()
    try:
        with engine.begin() as conn:
            revoke_token(conn, name, by=os.environ.get("USER"))
    except TokenError as exc:
        _fail(str(exc))
    finally:
        engine.dispose()
    _console().print(Text(f"revoked token '{name}'"), highlight=False)


def web_command(
    host: Annotated[str, typer.Option("--host", help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8765,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="processes (need ABFLOW_WEB_SECRET_KEY)")
    ] = 1,
) -> None:
    """Serve the dashboard and HTTP API (results tables only; never migrates)."""
    import uvicorn

    from abflow.web.config import WebSettings

    web = WebSettings()
    if workers > 1 and not web.secret_key:
        _fail("--workers > 1 needs ABFLOW_WEB_SECRET_KEY (sessions must verify in every worker)")
    _engine().dispose()  # one line instead of a traceback when the database is not ready
    who = "public reads" if web.public_read else "reads need a token"
    _console(stderr=True).print(
        Text(f"abflow web on http://{host}:{port}/ ({who}; API docs at /docs and /reference)"),
        highlight=False,
    )
    if workers == 1:
        from abflow.web.app import create_app

        uvicorn.run(create_app(), host=host, port=port, log_level="info", proxy_headers=True)
    else:
        uvicorn.run(
            "abflow.web.app:create_app", factory=True, host=host, port=port, workers=workers,
            log_level="info", proxy_headers=True,
        )  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add `web` and `token` to the abflow CLI."""
    app.command("web")(web_command)
    app.add_typer(token_app, name="token")
