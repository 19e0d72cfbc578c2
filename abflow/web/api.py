"""The JSON API under /api (documented at /docs and, offline, at /reference)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from abflow.warehouse import dashboard
from abflow.warehouse.web_tokens import TokenInfo
from abflow.web.actions import ActionError, parse_definition
from abflow.web.app import api_reader, api_writer, jsonable, state
from abflow.web.configs import assignment, public_config

router = APIRouter(prefix="/api")

Key = Annotated[
    str,
    PathParam(pattern=r"^[a-z0-9_]+$", max_length=63, description="experiment key"),
]
Reader = Annotated[TokenInfo | None, Depends(api_reader)]
Writer = Annotated[TokenInfo, Depends(api_writer)]  # never None: api_writer raises instead

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": 'missing, invalid or revoked token: `{"detail": …}`'},
    403: {"description": "the token's scope does not allow this"},
    404: {"description": "unknown experiment"},
    422: {"description": 'invalid request: `{"detail": …, "field": …}`'},
}
WRITE_ERRORS = {**ERRORS, 409: {"description": "refused (promote gate, nothing to roll back, …)"}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PromoteIn(_Body):
    """Promote a variant and pin the config (as `abflow promote`)."""

    variant: str = Field(pattern=r"^[a-z0-9_]+$", max_length=63)
    reason: str | None = Field(default=None, max_length=1000)
    force: bool = Field(
        default=False,
        description="promote although the latest run failed, is unhealthy or missing; "
        "needs a reason",
    )


class ReasonIn(_Body):
    """An optional reason, recorded in the audit."""

    reason: str | None = Field(default=None, max_length=1000)


class StatusIn(_Body):
    """The lifecycle: start (`running`) or stop (`stopped`) an experiment."""

    status: Literal["running", "stopped"]


class ActionOut(BaseModel):
    """What a write did."""

    model_config = ConfigDict(extra="allow")

    experiment_key: str
    action: str
    changed: bool
    message: str
    config_version: int | None = None


class ConfigOut(BaseModel):
    """experiment_config as apps read it."""

    experiment_key: str
    status: str
    variants: list[dict[str, Any]]
    promoted_variant_key: str | None
    promoted_config: dict[str, Any] | None
    version: int
    pinned: bool
    pinned_by: str | None
    pinned_reason: str | None
    pinned_at: str | None
    updated_at: str | None


class AssignOut(BaseModel):
    """The variant one unit sees, as `abflow.assign_variant()` and the Python client say."""

    experiment_key: str
    unit_id: str
    variant: str | None
    config: dict[str, Any]
    promoted: bool
    status: str
    version: int


def _act(request: Request, result: Any, status: int = 200) -> JSONResponse:
    state(request).configs.forget(result.experiment_key)
    return JSONResponse(jsonable(result.as_json()), status_code=status)


def _cached_json(request: Request, payload: dict[str, Any]) -> Response:
    """JSON with an ETag and Cache-Control; 304 when the client already has this version."""
    body = json.dumps(jsonable(payload), separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'
    web = state(request).web
    scope = "public" if web.public_read else "private"
    headers = {"ETag": etag, "Cache-Control": f"{scope}, max-age={web.cache_seconds}"}
    given = request.headers.get("if-none-match")
    if given and (given.strip() == "*" or etag in {t.strip() for t in given.split(",")}):
        return Response(status_code=304, headers=headers)
    return Response(body, media_type="application/json", headers=headers)


async def _config_row(request: Request, key: str) -> dict[str, Any]:
    """The experiment_config row (cached briefly; the hot path never leaves the event loop)."""
    configs = state(request).configs
    fresh, row = configs.peek(key)
    if not fresh:
        row = await run_in_threadpool(configs.load, key)
    if row is None:
        raise ActionError(404, f"experiment '{key}' has no config")
    return row


# --- apps (first: the hottest routes are matched first) ---------------------------------


@router.get(
    "/config/{key}",
    tags=["apps"],
    response_model=ConfigOut,
    responses={**ERRORS, 304: {"description": "not modified (If-None-Match)"}},
)
async def get_config(request: Request, key: Key, _: Reader) -> Response:
    """The config apps read (variants, promoted override, version), with ETag/Cache-Control."""
    row = await _config_row(request, key)
    return _cached_json(request, public_config(row))


@router.get(
    "/assign/{key}/{unit_id:path}",
    tags=["apps"],
    response_model=AssignOut,
    responses={**ERRORS, 304: {"description": "not modified (If-None-Match)"}},
)
async def assign(
    request: Request,
    key: Key,
    unit_id: Annotated[str, PathParam(min_length=1, max_length=512)],
    _: Reader,
) -> Response:
    """The variant and config one unit sees: identical to `assign_variant()` in SQL and the
    Python client (a promoted variant wins; a stopped or draft experiment serves the control)."""
    row = await _config_row(request, key)
    return _cached_json(request, assignment(row, unit_id))


# --- reads ---------------------------------------------------------------------------------


@router.get("/experiments", tags=["read"], responses=ERRORS)
def list_experiments(
    request: Request,
    _: Reader,
    status: Annotated[Literal["draft", "running", "stopped", "concluded"] | None, Query()] = None,
    include_archived: bool = False,
) -> list[dict[str, Any]]:
    """Every experiment: status, pin, latest recommendation, health, units and timing."""
    with state(request).engine.connect() as conn:
        rows = dashboard.overview(conn, include_archived=include_archived)
    return [jsonable(r) for r in rows if status is None or r["status"] == status]


@router.get("/experiments/{key}", tags=["read"], responses=ERRORS)
def get_experiment(
    request: Request,
    key: Key,
    _: Reader,
    history: Annotated[int, Query(ge=0, le=10_000, description="runs of history")] = 100,
) -> dict[str, Any]:
    """Latest results, recommendation, health, definition, config, pin and run history."""
    with state(request).engine.connect() as conn:
        detail = dashboard.experiment_detail(conn, key, history_limit=history)
    if detail is None:
        raise ActionError(404, f"experiment '{key}' is not defined")
    record, summary = detail["record"], detail["summary"] or {}
    config = detail["config"]
    return jsonable(
        {
            "experiment_key": key,
            "name": record["name"],
            "status": record["status"],
            "archived_at": record["archived_at"],
            "archived_by": record["archived_by"],
            "health": summary.get("health"),
            "days_running": summary.get("days_running"),
            "latest": detail["latest"],
            "config": None if config is None else public_config(config),
            "pin": None
            if config is None or not config.get("pinned")
            else {
                "by": config.get("pinned_by"),
                "reason": config.get("pinned_reason"),
                "at": config.get("pinned_at"),
            },
            "definition": record["definition"],
            "history": detail["history"],
            "promotions": detail["promotions"],
        }
    )


@router.get(
    "/experiments/{key}/report",
    tags=["read"],
    responses={**ERRORS, 200: {"content": {"text/html": {}}}},
    response_class=HTMLResponse,
)
def get_report(request: Request, key: Key, _: Reader) -> HTMLResponse:
    """The experiment's HTML report, exactly as `abflow report KEY` writes it."""
    from abflow.report import render_report
    from abflow.web.pages import report_inputs

    with state(request).engine.connect() as conn:
        found = report_inputs(conn, key)
    if found is None:
        raise ActionError(404, f"experiment '{key}' is not defined")
    experiment, latest, history = found
    return HTMLResponse(render_report(experiment, latest, history))


@router.get("/runs/{job_id}", tags=["write"], responses=ERRORS)
def get_run(
    request: Request,
    job_id: Annotated[str, PathParam(pattern=r"^[0-9a-f]{32}$")],
    _: Reader,
) -> dict[str, Any]:
    """Progress of an analysis started in this process by POST …/run."""
    job = state(request).launcher.job(job_id)
    if job is None:
        raise ActionError(404, f"no run job {job_id} in this process")
    return jsonable(job)


# --- writes --------------------------------------------------------------------------------

_DEFINITION_BODY = {
    "requestBody": {
        "required": True,
        "description": "One experiment definition (SPEC §3.2), validated as `experiments apply`.",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


@router.post(
    "/experiments",
    tags=["write"],
    response_model=ActionOut,
    status_code=201,
    responses={**WRITE_ERRORS, 200: {"description": "updated (or unchanged)"}},
    openapi_extra=_DEFINITION_BODY,
)
async def create_experiment(request: Request, token: Writer) -> JSONResponse:
    """Create or update an experiment from a YAML or JSON definition (201 when new)."""
    experiment = parse_definition(await request.body(), request.headers.get("content-type"))
    result = await run_in_threadpool(state(request).actions.create, token, experiment)
    return _act(request, result, 201 if (result.extra or {}).get("created") else 200)


@router.post(
    "/experiments/{key}/status", tags=["write"], response_model=ActionOut, responses=WRITE_ERRORS
)
def set_status(request: Request, key: Key, body: StatusIn, token: Writer) -> JSONResponse:
    """Start (`running`) or stop (`stopped`) an experiment."""
    return _act(request, state(request).actions.set_status(token, key, body.status))


@router.post(
    "/experiments/{key}/promote", tags=["write"], response_model=ActionOut, responses=WRITE_ERRORS
)
def promote(request: Request, key: Key, body: PromoteIn, token: Writer) -> JSONResponse:
    """Promote a variant and pin the config; refused (409) unless the latest run succeeded,
    unless `force` with a `reason`. The audit's actor is the token's name."""
    return _act(
        request, state(request).actions.promote(token, key, body.variant, body.reason, body.force)
    )


@router.post(
    "/experiments/{key}/rollback", tags=["write"], response_model=ActionOut, responses=WRITE_ERRORS
)
def rollback(
    request: Request, key: Key, token: Writer, body: ReasonIn | None = None
) -> JSONResponse:
    """Undo the newest promotion still in force and pin the result (409 at the weighted split)."""
    return _act(request, state(request).actions.rollback(token, key, body.reason if body else None))


@router.post(
    "/experiments/{key}/unpin", tags=["write"], response_model=ActionOut, responses=WRITE_ERRORS
)
def unpin(request: Request, key: Key, token: Writer, body: ReasonIn | None = None) -> JSONResponse:
    """Hand a pinned config back to the decision rules."""
    return _act(request, state(request).actions.unpin(token, key, body.reason if body else None))


@router.post(
    "/experiments/{key}/run",
    tags=["write"],
    response_model=ActionOut,
    status_code=202,
    responses={**WRITE_ERRORS, 503: {"description": "the Prefect deployment cannot be started"}},
)
def run(request: Request, key: Key, token: Writer) -> JSONResponse:
    """Analyse this experiment now: through the Prefect deployment when a server is configured,
    otherwise in this process (follow it at GET /api/runs/{id})."""
    return _act(request, state(request).actions.run(token, key), 202)


@router.delete(
    "/experiments/{key}", tags=["write"], response_model=ActionOut, responses=WRITE_ERRORS
)
def archive(request: Request, key: Key, token: Writer) -> JSONResponse:
    """Archive an experiment (a running one is stopped); its history is never deleted."""
    return _act(request, state(request).actions.archive(token, key))
