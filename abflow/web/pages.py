"""The browser dashboard: server-rendered Jinja2 pages and plain HTML forms (no scripts).

Sign-in turns a token into a signed session cookie (HttpOnly, SameSite=Strict); every form
carries the session's CSRF token. Actions use the same WebActions as the API and redirect back
with a one-shot message (post/redirect/get).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from abflow.definitions import DefinitionError, Experiment
from abflow.report import DECISIONS, NEUTRAL, format_date, render_report_body
from abflow.summary import describe_pin
from abflow.warehouse import dashboard
from abflow.warehouse.experiments_repo import get_experiment
from abflow.warehouse.promotion import configs
from abflow.warehouse.readback import insight_history, latest_results
from abflow.warehouse.web_tokens import TokenInfo
from abflow.web.actions import ActionError, ActionResult
from abflow.web.app import browser_session, state
from abflow.web.security import FLASH_COOKIE, SESSION_COOKIE, Session

router = APIRouter(include_in_schema=False)

STATUSES = ("draft", "running", "stopped", "concluded")
SORTS = {
    "key": "experiment_key",
    "name": "name",
    "status": "status",
    "decision": "decision",
    "health": "health",
    "units": "units",
    "days_running": "days_running",
    "days_remaining": "days_remaining",
    "last_run": "last_run_at",
}
MAX_FORM_BYTES = 64_000
_LOCAL_PATH = re.compile(r"/[A-Za-z0-9_\-.~/?=&%+]*")


# --- rendering -----------------------------------------------------------------------------


def _set_session(request: Request, response: Response, session: Session) -> None:
    st = state(request)
    response.set_cookie(
        SESSION_COOKIE,
        st.signer.dumps("session", session.to_payload()),
        max_age=int(st.web.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=st.web.cookie_secure,
        path="/",
    )


def _flash(request: Request) -> dict[str, Any] | None:
    return state(request).signer.loads("flash", request.cookies.get(FLASH_COOKIE))


def _user(request: Request, session: Session) -> TokenInfo | None:
    return state(request).tokens.session(session)


def page(
    request: Request,
    template: str,
    *,
    status: int = 200,
    session: Session | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render a page with the common context; (re)sets the session cookie when new."""
    st = state(request)
    session = session or browser_session(request)
    user = context.pop("user", None) or _user(request, session)
    flash = _flash(request)
    html = st.templates.get_template(template).render(
        user=user,
        csrf=st.signer.csrf(session.nonce),
        flash=flash,
        public_read=st.web.public_read,
        path=request.url.path,
        decisions=DECISIONS,
        **context,
    )
    response = HTMLResponse(html, status_code=status)
    if session.is_new:
        _set_session(request, response, session)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    """An error as a page (never a stack trace)."""
    titles = {401: "Sign in needed", 403: "Not allowed", 404: "Not found", 500: "Server error"}
    back = request.url.path
    if request.method != "GET":  # a form's target: come back to the page that had the form
        back = back.rsplit("/", 1)[0] if back.startswith("/experiments/") else "/"
    return page(
        request, "error.html.j2", status=status, title=titles.get(status, "Error"),
        status_code=status, message=message, back=back,
    )  # fmt: skip


def _reader(request: Request) -> tuple[Session, TokenInfo | None, Response | None]:
    """Session and user of a page view; a redirect to sign in when reads need a token."""
    session = browser_session(request)
    user = _user(request, session)
    if user is None and not state(request).web.public_read:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        redirect = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        if session.is_new:
            _set_session(request, redirect, session)
        return session, None, redirect
    return session, user, None


# --- pages ---------------------------------------------------------------------------------


def _sort_key(field: str) -> Any:
    def key(row: dict[str, Any]) -> tuple[int, Any]:
        value = row.get(field)
        if value is None:
            return (1, 0)
        if isinstance(value, datetime):
            return (0, value.timestamp())
        return (0, value.lower() if isinstance(value, str) else value)

    return key


def _list_cells(r: dict[str, Any]) -> dict[str, Any]:
    """One row of `/` as display text: formatted here once, so the template only places it
    (a 200-row page renders in about half the time of formatting in Jinja)."""
    label, colour = DECISIONS.get(r["decision"], (r["decision"], NEUTRAL))
    remaining = r["days_remaining"]
    return {
        "key": r["experiment_key"],
        "href": "/experiments/" + quote(r["experiment_key"]),
        "name": r["name"],
        "archived": None if r["archived_at"] is None else f"{r['archived_at']:%Y-%m-%d}",
        "status": r["status"],
        "decision": r["decision"] or "",
        "badge": None if not r["decision"] else (
            f"{label}: {r['variant_key']}" if r["variant_key"] else label
        ),
        "colour": colour,
        "why": r["rationale_first"],
        "config": f"v{'—' if r['version'] is None else r['version']} · "
        + (r["promoted_variant_key"] or "weighted split"),
        "pin": describe_pin(r),
        "health": r["health"],
        "health_class": "h-" + r["health"].replace(" ", "-"),
        "warnings": f"{r['warnings']} warning(s)"
        if r["warnings"] and r["health"] != "failing" else None,
        "units": "—" if r["units"] is None else f"{r['units']:,}",
        "days_running": "—" if r["days_running"] is None else f"{r['days_running']:.1f}",
        "days_remaining": "—" if remaining is None else (
            "none" if remaining <= 0 else f"{remaining:.0f}"
        ),
        "last_run": "—" if r["last_run_at"] is None else format_date(r["last_run_at"]),
        "failed": r["newest_status"] == "failed",
    }  # fmt: skip


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    status: str | None = None,
    sort: str = "key",
    order: str = "asc",
    archived: bool = False,
) -> Response:
    """Every experiment, filterable by status and sortable by any column."""
    session, user, redirect = _reader(request)
    if redirect is not None:
        return redirect
    chosen = status if status in STATUSES else None
    sort = sort if sort in SORTS else "key"
    order = "desc" if order == "desc" else "asc"
    with state(request).engine.connect() as conn:
        rows = dashboard.overview(conn, include_archived=archived)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in STATUSES}
    shown = [r for r in rows if chosen is None or r["status"] == chosen]
    field = SORTS[sort]
    present = [r for r in shown if r.get(field) is not None]
    missing = [r for r in shown if r.get(field) is None]
    present.sort(key=_sort_key(field), reverse=order == "desc")
    return page(
        request, "index.html.j2", session=session, user=user, title="abflow experiments",
        rows=[_list_cells(r) for r in present + missing], total=len(rows), counts=counts,
        statuses=STATUSES, status_filter=chosen, sort=sort, order=order, archived=archived,
    )  # fmt: skip


def report_inputs(
    conn: Connection, key: str
) -> tuple[Experiment, dict[str, Any], list[dict[str, Any]]] | None:
    """(definition, latest results, insight history) for the report, as `abflow report` reads
    them; an experiment without runs gets an empty latest. None when it is not defined."""
    experiment = get_experiment(conn, key)
    if experiment is None:
        return None
    latest = latest_results(conn, [key])
    found = latest[0] if latest else {
        "run": None, "insights": [], "checks": [], "units": {},
        "config": configs(conn, [key]).get(key),
    }  # fmt: skip
    return experiment, found, insight_history(conn, key)


@router.get("/experiments/{key}", response_class=HTMLResponse)
def experiment_page(request: Request, key: str) -> Response:
    """The live report, run history, promotions audit, web actions and action forms."""
    session, user, redirect = _reader(request)
    if redirect is not None:
        return redirect
    with state(request).engine.connect() as conn:
        detail = dashboard.experiment_detail(conn, key)
        if detail is None:
            return error_page(request, 404, f"experiment '{key}' is not defined")
        definition_error = None
        report_body = None
        try:
            inputs = report_inputs(conn, key)
        except DefinitionError as exc:
            inputs, definition_error = None, str(exc)
    if inputs is not None:
        report_body = render_report_body(*inputs)
    config = detail["config"] or {}
    variants = [v.get("key") for v in config.get("variants") or []]
    return page(
        request, "experiment.html.j2", session=session, user=user,
        title=f"{detail['record']['name']} — abflow", key=key, detail=detail,
        record=detail["record"], summary=detail["summary"] or {}, config=config,
        pin=describe_pin(config), variants=variants, report_body=report_body,
        definition_error=definition_error,
    )  # fmt: skip


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    """The sign-in form (a token, once; the browser then holds a session cookie)."""
    return page(request, "login.html.j2", title="Sign in — abflow", next=_safe_next(next),
                error=None)  # fmt: skip


def _safe_next(target: str | None) -> str:
    """A local path to go back to (never another site)."""
    # Browsers drop tabs and newlines from URLs ("/\t/evil" becomes "//evil"): plain characters
    # of a path and query only, and never a second leading slash.
    if not target or not _LOCAL_PATH.fullmatch(target) or target.startswith("//"):
        return "/"
    return target


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form body (first value per field)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ActionError(415, "forms must be application/x-www-form-urlencoded")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ActionError(413, "form too large")
    parsed = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items()}


def _same_origin(request: Request) -> bool:
    """The browser says the form came from this site (Fetch metadata, else Origin)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host")


async def _checked_form(request: Request, session: Session) -> dict[str, str]:
    """The form, after the CSRF checks (403 page otherwise)."""
    form = await _form(request)
    if not _same_origin(request) or not state(request).signer.check_csrf(
        session.nonce, form.get("csrf")
    ):
        raise ActionError(403, "the form has expired or came from another site; reload the page")
    return form


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    """Check the token and start a signed-in session."""
    st = state(request)
    session = browser_session(request)
    form = await _checked_form(request, session)
    target = _safe_next(form.get("next"))
    token = (form.get("token") or "").strip()
    info = await _run(st.tokens.bearer, token) if token else None
    if info is None:
        return page(request, "login.html.j2", status=401, session=session,
                    title="Sign in — abflow", next=target,
                    error="That token is not valid (unknown, revoked or mistyped).")  # fmt: skip
    response = RedirectResponse(target, status_code=303)
    _set_session(request, response, session.signed_in(info, st.web.session_hours))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (a new anonymous one replaces it)."""
    session = browser_session(request)
    await _checked_form(request, session)
    response = RedirectResponse("/login?next=/" if not state(request).web.public_read else "/",
                                status_code=303)  # fmt: skip
    _set_session(request, response, Session.fresh(state(request).web.session_hours))
    return response


async def _run(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


ACTIONS = ("promote", "rollback", "unpin", "status", "run", "archive")


@router.post("/experiments/{key}/{action}")
async def act(request: Request, key: str, action: str) -> Response:
    """A form action: sign-in and CSRF checked, then the same code path as the API."""
    if action not in ACTIONS:
        return error_page(request, 404, f"no action '{action}'")
    st = state(request)
    session = browser_session(request)
    form = await _checked_form(request, session)
    user = await _run(st.tokens.session, session)
    if user is None:
        raise ActionError(401, "Sign in with a write token to change experiments.")
    if not user.can_write:
        raise ActionError(403, f"Token '{user.name}' has read scope; actions need a write token.")
    reason = (form.get("reason") or "").strip() or None
    try:
        result: ActionResult
        if action == "promote":
            result = await _run(st.actions.promote, user, key, form.get("variant", ""), reason,
                                form.get("force") == "on")  # fmt: skip
        elif action == "rollback":
            result = await _run(st.actions.rollback, user, key, reason)
        elif action == "unpin":
            result = await _run(st.actions.unpin, user, key, reason)
        elif action == "status":
            result = await _run(st.actions.set_status, user, key, form.get("status", ""))
        elif action == "run":
            result = await _run(st.actions.run, user, key)
        else:
            result = await _run(st.actions.archive, user, key)
        st.configs.forget(key)
        kind, message = "ok", result.message
    except ActionError as exc:
        if exc.status in (404, 413, 415):
            raise
        kind, message = "error", exc.message
    response = RedirectResponse(f"/experiments/{quote(key)}", status_code=303)
    response.set_cookie(
        FLASH_COOKIE, st.signer.dumps("flash", {"k": kind, "m": message, "a": action}),
        max_age=60, httponly=True, samesite="strict", secure=st.web.cookie_secure, path="/",
    )  # fmt: skip
    return response


@router.get("/reference", response_class=HTMLResponse)
def reference(request: Request) -> Response:
    """The API reference from the OpenAPI schema, rendered here (works without network)."""
    schema = request.app.openapi()
    endpoints = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tags": op.get("tags", []),
                    "parameters": op.get("parameters", []),
                    "body": _body_schema(schema, op),
                    "responses": op.get("responses", {}),
                }
            )
    return page(request, "reference.html.j2", title="abflow API reference",
                endpoints=endpoints, info=schema.get("info", {}))  # fmt: skip


def _body_schema(schema: dict[str, Any], op: dict[str, Any]) -> list[dict[str, Any]]:
    """Fields of a JSON request body (resolved $ref), or its content types."""
    content = (op.get("requestBody") or {}).get("content") or {}
    out: list[dict[str, Any]] = []
    for kind, spec in content.items():
        ref = (spec.get("schema") or {}).get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            model = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
            required = set(model.get("required", []))
            for name, field in (model.get("properties") or {}).items():
                out.append(
                    {
                        "name": name,
                        "kind": kind,
                        "required": name in required,
                        "type": _type(field),
                        "description": field.get("description", ""),
                    }
                )
        else:
            out.append(
                {
                    "name": "(body)",
                    "kind": kind,
                    "required": True,
                    "type": (spec.get("schema") or {}).get("type", ""),
                    "description": "",
                }
            )
    return out


def _type(field: dict[str, Any]) -> str:
    if "enum" in field:
        return " | ".join(map(str, field["enum"]))
    if "anyOf" in field:
        return " | ".join(_type(f) for f in field["anyOf"])
    return str(field.get("type", ""))
