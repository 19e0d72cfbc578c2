"""The FastAPI application: state, authentication, error shapes; routes in api.py and pages.py."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.security import HTTPBearer
from jinja2 import Environment
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from abflow.settings import Settings, get_settings
from abflow.warehouse.web_tokens import TokenInfo
from abflow.web.actions import ActionError, WebActions
from abflow.web.config import WebSettings
from abflow.web.configs import ConfigCache
from abflow.web.runs import RunLauncher
from abflow.web.security import SESSION_COOKIE, Session, Signer, TokenAuthority

log = logging.getLogger("abflow.web")
TEMPLATES = Path(__file__).with_name("templates")


class AuthError(Exception):
    """401 (no or bad credentials) or 403 (not allowed); one line."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class WebState:
    """Everything the routes share."""

    settings: Settings
    web: WebSettings
    engine: Engine
    tokens: TokenAuthority
    signer: Signer
    configs: ConfigCache
    launcher: RunLauncher
    actions: WebActions
    templates: Environment


def state(request: Request) -> WebState:
    """The app's shared state."""
    found: WebState = request.app.state.web
    return found


def jsonable(value: Any) -> Any:
    """JSON-safe: datetimes as ISO text, UUIDs as text, non-finite floats as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "item"):  # numpy scalars
        return jsonable(value.item())
    return value


def is_api(request: Request) -> bool:
    """JSON answers for the API and OpenAPI paths, HTML pages for the rest."""
    return request.url.path.startswith("/api/") or request.url.path == "/api"


# --- authentication ------------------------------------------------------------------------


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, if any."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise AuthError(401, "Authorization header must be 'Bearer <token>'")
    return value.strip()


async def api_token(request: Request) -> TokenInfo | None:
    """The bearer token's owner (None without a header); 401 for an unknown or revoked one."""
    token = bearer_token(request)
    if token is None:
        return None
    tokens = state(request).tokens
    hit, info = tokens.peek_bearer(token)
    if not hit:
        info = await run_in_threadpool(tokens.bearer, token)
    if info is None:
        raise AuthError(401, "invalid or revoked token")
    return info


class BearerAuth(HTTPBearer):
    """The API's authentication: `Authorization: Bearer <token>`, read or write scope.

    A SecurityBase subclass, so OpenAPI documents the scheme (the "Authorize" button of /docs)
    and each request solves one dependency for it.
    """

    def __init__(self, *, write: bool) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="bearer",
            description="A token from `abflow token create NAME --scope read|write`.",
        )
        self.write = write

    async def __call__(self, request: Request) -> TokenInfo | None:  # type: ignore[override]
        """The token's owner; 401/403 as AuthError. Reads may be anonymous with public read.

        Reads also accept the browser's session cookie (the dashboard links to the JSON and the
        report); writes never do: they need the Authorization header, which no other site can
        make a browser send.
        """
        info = await api_token(request)
        if info is None and not self.write and SESSION_COOKIE in request.cookies:
            st = state(request)
            session = Session.from_payload(
                st.signer.loads("session", request.cookies.get(SESSION_COOKIE))
            )
            if session is not None and session.name:
                info = await run_in_threadpool(st.tokens.session, session)
        if info is None:
            if not self.write and state(request).web.public_read:
                return None
            raise AuthError(401, "missing bearer token (Authorization: Bearer <token>)")
        if self.write and not info.can_write:
            raise AuthError(403, f"token '{info.name}' has read scope; this needs a write token")
        return info


api_reader = BearerAuth(write=False)
api_writer = BearerAuth(write=True)


def browser_session(request: Request) -> Session:
    """The signed session cookie's session, or a new anonymous one."""
    st = state(request)
    found = Session.from_payload(st.signer.loads("session", request.cookies.get(SESSION_COOKIE)))
    return found or Session.fresh(st.web.session_hours)


# --- the application -----------------------------------------------------------------------


def _api_error(status: int, detail: str, field: str | None = None, **headers: str) -> Response:
    body: dict[str, Any] = {"detail": detail}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status, headers=headers or None)


def _field(error: dict[str, Any]) -> str:
    """The request field an error is about: 'variant', 'status', 'key' or 'body'."""
    loc: Sequence[Any] = error.get("loc") or ("body",)
    if error.get("type") == "json_invalid":
        return "body"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0])


def _install_error_handlers(app: FastAPI) -> None:
    from abflow.web.pages import error_page

    @app.exception_handler(AuthError)
    async def _auth(request: Request, exc: AuthError) -> Response:
        if is_api(request):
            headers = {"WWW-Authenticate": 'Bearer realm="abflow"'} if exc.status == 401 else {}
            return _api_error(exc.status, exc.message, **headers)
        return error_page(request, exc.status, exc.message)

    @app.exception_handler(ActionError)
    async def _action(request: Request, exc: ActionError) -> Response:
        if is_api(request):
            return _api_error(exc.status, exc.message, exc.field)
        return error_page(request, exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field(dict(first))
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        body = {
            "detail": f"{field}: {msg}{more}",
            "field": field,
            "errors": [{"field": _field(dict(e)), "message": str(e.get("msg"))} for e in errors],
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        if is_api(request) or request.url.path in ("/openapi.json", "/healthz"):
            return _api_error(exc.status_code, detail, **(exc.headers or {}))
        return error_page(request, exc.status_code, detail)

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> Response:
        # Never a stack trace to the client; the log has it.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        message = "internal error (see the server log)"
        if is_api(request):
            return _api_error(500, message)
        return error_page(request, 500, message)


def create_app(
    settings: Settings | None = None,
    web: WebSettings | None = None,
    *,
    engine: Engine | None = None,
    launcher: RunLauncher | None = None,
) -> FastAPI:
    """The dashboard and API over the configured results database.

    The app never migrates: run `abflow migrate` as the schema owner first; it runs as a member
    of abflow_writer (DML only).
    """
    from abflow import reporting
    from abflow.redact import install_log_redaction
    from abflow.warehouse.engine import make_engine
    from abflow.web import api, pages

    # Also in uvicorn's worker processes (--workers) and `uvicorn --factory`, which do not pass
    # through the CLI's main(): no credential in a logged error or traceback.
    install_log_redaction()

    settings = settings or get_settings()
    web = web or WebSettings()
    own_engine = engine is None
    if engine is None:
        engine = make_engine(settings.model_copy(update={"max_concurrency": web.pool_size}))
    launcher = launcher or RunLauncher(web.deployment)
    st = WebState(
        settings=settings,
        web=web,
        engine=engine,
        tokens=TokenAuthority(engine, web.auth_cache_seconds),
        signer=Signer(web.secret_key),
        configs=ConfigCache(engine, web.config_ttl_seconds),
        launcher=launcher,
        actions=WebActions(engine, settings, launcher),
        templates=reporting.environment(str(TEMPLATES)),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Everything imported so far lives as long as the process: keep it out of the garbage
        # collector's full passes, which otherwise show up as multi-millisecond request stalls.
        gc.collect()
        gc.freeze()
        yield
        launcher.shutdown()
        if own_engine:
            engine.dispose()

    app = FastAPI(
        title="abflow",
        version="1",
        summary="A/B test results, decisions and configs from the abflow warehouse.",
        description=(
            "Read endpoints need a bearer token with `read` or `write` scope (unless the server "
            "runs with `ABFLOW_WEB_PUBLIC_READ=true`); every write needs a `write` token and is "
            "audited with the token's name. Create tokens with `abflow token create NAME "
            '--scope read|write`. Errors are JSON: `{"detail": …}`, plus `field` on 422. '
            "An offline copy of this reference is served at `/reference`."
        ),
        lifespan=lifespan,
    )
    app.state.web = st
    _install_error_handlers(app)
    app.include_router(api.router)
    app.include_router(pages.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> PlainTextResponse:
        return PlainTextResponse("ok")

    return app
