"""Reads and lifecycle writes behind the web dashboard and API: result tables only, never raw data.

The overview is one statement over `experiments`, `experiment_config`, the newest run per
experiment, its recommendation and its failed checks, so the front page costs one round trip
however many experiments and runs there are.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from abflow.definitions import Experiment, parse_experiment
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.writer import lock_experiment

LIFECYCLE = ("running", "stopped")

_OVERVIEW = """
select e.experiment_key, e.name, e.status, e.start_at, e.end_at, e.archived_at,
    c.version, c.promoted_variant_key, c.pinned, c.pinned_by, c.pinned_reason, c.pinned_at,
    s.run_id, s.as_of, s.status as run_status, s.message as run_message, s.units,
    n.run_id as newest_run_id, n.as_of as newest_as_of, n.status as newest_status,
    n.message as newest_message, coalesce(n.finished_at, n.started_at) as last_run_at,
    r.decision, r.variant_key, r.rationale, r.days_remaining,
    h.critical_failures, h.warnings
from experiments e
left join experiment_config c on c.experiment_key = e.experiment_key
-- Each lateral is one probe of an index per experiment (analysis_runs_experiment_started_idx,
-- then the run_id keys), so the cost follows the number of experiments, not of runs.
-- The run shown: the newest that did not fail (as latest_runs); newest: failed ones included.
left join lateral (
    select run_id, as_of, status, message, units from analysis_runs
    where experiment_key = e.experiment_key and status <> 'failed'
    order by as_of desc, started_at desc limit 1
) s on true
left join lateral (
    select run_id, as_of, status, message, started_at, finished_at from analysis_runs
    where experiment_key = e.experiment_key
    order by as_of desc, started_at desc limit 1
) n on true
left join lateral (
    select decision, variant_key, rationale, days_remaining
    from recommendations where run_id = s.run_id
) r on true
left join lateral (
    select count(*) filter (where not passed and severity = 'critical') as critical_failures,
        count(*) filter (where not passed and severity <> 'critical') as warnings
    from health_checks where run_id = s.run_id
) h on true
where (cast(:archived as boolean) or e.archived_at is null)
    and (cast(:keys as text[]) is null or e.experiment_key = any(cast(:keys as text[])))
order by e.experiment_key
"""

_SENTENCE = re.compile(r"^(.+?[.!?])(?=\s+[A-Z(\"'“]|\s*$)", re.DOTALL)


def first_sentence(text_: str | None) -> str:
    """The first sentence of a rationale ('' for none); decimals like 0.10 do not end it."""
    if not text_:
        return ""
    m = _SENTENCE.match(text_.strip())
    return (m.group(1) if m else text_.strip()).strip()


def health_label(row: dict[str, Any]) -> str:
    """'healthy', 'warnings', 'failing', 'last run failed' or 'no runs'."""
    if row.get("newest_status") == "failed":
        return "last run failed"
    if row.get("run_id") is None:
        return "no runs"
    if row.get("run_status") == "unhealthy" or row.get("critical_failures"):
        return "failing"
    if row.get("warnings"):
        return "warnings"
    return "healthy"


def days_running(row: dict[str, Any], now: datetime) -> float | None:
    """Days from start to now (or to end_at when that is earlier); None before the start."""
    start: datetime | None = row.get("start_at")
    if start is None or row.get("status") == "draft":
        return None
    end = row.get("end_at")
    stop = min(now, end) if end else now
    return max(0.0, (stop - start).total_seconds() / 86400)


def overview(
    conn: Connection,
    *,
    include_archived: bool = False,
    keys: list[str] | None = None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """One row per experiment: status, pin, latest recommendation, health, units and timing."""
    when = now or datetime.now(UTC)
    rows = (
        conn.execute(text(_OVERVIEW), {"archived": include_archived, "keys": keys}).mappings().all()
    )
    out = []
    for r in rows:
        row = dict(r)
        row["health"] = health_label(row)
        row["rationale_first"] = first_sentence(row.get("rationale"))
        row["days_running"] = days_running(row, when)
        out.append(row)
    return out


def run_history(conn: Connection, key: str, limit: int = 200) -> list[dict[str, Any]]:
    """Runs of an experiment, newest first, each with its recommendation (if any)."""
    rows = conn.execute(
        text(
            "select r.run_id, r.as_of, r.status, r.message, r.flow_run_id, r.started_at,"
            " r.finished_at, r.units, r.days_since_start, c.decision, c.variant_key,"
            " c.rationale, c.days_remaining from analysis_runs r"
            " left join recommendations c on c.run_id = r.run_id"
            " where r.experiment_key = :k order by r.as_of desc, r.started_at desc limit :n"
        ),
        {"k": key, "n": limit},
    ).mappings()
    return [dict(r) for r in rows]


def promotions_log(conn: Connection, key: str, limit: int = 200) -> list[dict[str, Any]]:
    """The promotions audit of an experiment, newest first (previous_config left out)."""
    rows = conn.execute(
        text("select * from promotions where experiment_key = :k order by id desc limit :n"),
        {"k": key, "n": limit},
    ).mappings()
    return [{k: v for k, v in r.items() if k != "previous_config"} for r in rows]


def web_audit_log(conn: Connection, key: str, limit: int = 100) -> list[dict[str, Any]]:
    """Web writes about an experiment, newest first."""
    rows = conn.execute(
        text(
            "select id, at, token_name, action, outcome, detail from web_audit"
            " where experiment_key = :k order by id desc limit :n"
        ),
        {"k": key, "n": limit},
    ).mappings()
    return [dict(r) for r in rows]


def experiment_record(conn: Connection, key: str) -> dict[str, Any] | None:
    """The stored experiments row (definition as stored, archive stamps), or None."""
    row = (
        conn.execute(
            text(
                "select experiment_key, name, status, start_at, end_at, definition, updated_at,"
                " archived_at, archived_by from experiments where experiment_key = :k"
            ),
            {"k": key},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


class LifecycleRefused(RuntimeError):
    """A status change or archive cannot be applied; the message says why in one line."""


def _locked_record(conn: Connection, key: str, lock_timeout_seconds: float) -> dict[str, Any]:
    lock_experiment(conn, key, lock_timeout_seconds)
    row = (
        conn.execute(
            text(
                "select experiment_key, status, definition, archived_at from experiments"
                " where experiment_key = :k for update"
            ),
            {"k": key},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise LookupError(f"experiment '{key}' is not defined")
    return dict(row)


def set_status(
    conn: Connection, key: str, status: str, *, lock_timeout_seconds: float = 300.0
) -> tuple[bool, Experiment]:
    """Start (`running`) or stop (`stopped`) an experiment: definition, table and config.

    Goes through upsert_experiments, as `experiments apply` with the status changed would, so
    experiment_config moves one version step. Returns (changed, experiment).
    """
    if status not in LIFECYCLE:
        raise LifecycleRefused(f"status must be one of {', '.join(LIFECYCLE)}, got {status!r}")
    row = _locked_record(conn, key, lock_timeout_seconds)
    if row["archived_at"] is not None:
        raise LifecycleRefused(
            f"experiment '{key}' is archived; apply its definition again to restore it"
        )
    experiment = parse_experiment({**row["definition"], "status": status}, f"experiments[{key}]")
    if row["status"] == status:
        return False, experiment
    upsert_experiments(conn, [experiment])
    return True, experiment


def archive(
    conn: Connection, key: str, *, actor: str, lock_timeout_seconds: float = 300.0
) -> tuple[bool, str]:
    """Archive an experiment: a running one is stopped first; nothing is ever deleted.

    Returns (changed, one-line message).
    """
    row = _locked_record(conn, key, lock_timeout_seconds)
    if row["archived_at"] is not None:
        return False, f"'{key}' is already archived"
    stopped = ""
    if row["status"] in ("running", "draft"):
        experiment = parse_experiment(
            {**row["definition"], "status": "stopped"}, f"experiments[{key}]"
        )
        upsert_experiments(conn, [experiment])
        stopped = " and stopped"
    conn.execute(
        text(
            "update experiments set archived_at = now(), archived_by = :a where experiment_key = :k"
        ),
        {"k": key, "a": actor},
    )
    return True, f"archived{stopped} '{key}': its results and audit are kept"


def experiment_detail(
    conn: Connection, key: str, *, history_limit: int = 200, audit_limit: int = 100
) -> dict[str, Any] | None:
    """Everything the experiment page and GET /api/experiments/{key} show, or None if unknown."""
    from abflow.warehouse.readback import latest_results

    record = experiment_record(conn, key)
    if record is None:
        return None
    rows = overview(conn, include_archived=True, keys=[key])
    latest = latest_results(conn, [key])
    config = (
        conn.execute(text("select * from experiment_config where experiment_key = :k"), {"k": key})
        .mappings()
        .first()
    )
    return {
        "record": record,
        "summary": rows[0] if rows else None,
        "latest": latest[0] if latest else None,
        "config": dict(config) if config else None,
        "history": run_history(conn, key, history_limit),
        "promotions": promotions_log(conn, key, audit_limit),
        "web_audit": web_audit_log(conn, key, audit_limit),
    }
