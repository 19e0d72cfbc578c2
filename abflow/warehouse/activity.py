"""What changed, read back from the result tables: for events and for the daily digest.

Read-only queries over analysis_runs, recommendations, promotions and experiment_config (the
reader role can run every one of them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, text

from abflow.alerting.digest import overdue, render_digest
from abflow.alerting.events import Previous, link_for
from abflow.warehouse.experiments_repo import list_experiments_checked


def _dicts(conn: Connection, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(sql), params).mappings()]


def previous_recommendation(
    conn: Connection, key: str, as_of: datetime, run_id: UUID
) -> Previous | None:
    """The recommendation of the newest non-failed run before as_of (other than run_id)."""
    row = conn.execute(
        text(
            "select rec.decision, rec.variant_key, r.as_of from analysis_runs r"
            " join recommendations rec on rec.run_id = r.run_id"
            " where r.experiment_key = :k and r.status <> 'failed' and r.as_of < :a"
            " and r.run_id <> :r order by r.as_of desc, r.started_at desc limit 1"
        ),
        {"k": key, "a": as_of, "r": run_id},
    ).first()
    return None if row is None else Previous(row.decision, row.variant_key, row.as_of)


def is_newest(conn: Connection, key: str, as_of: datetime, run_id: UUID) -> bool:
    """No other run of the experiment (failed ones included) has a later as_of."""
    newer = conn.execute(
        text(
            "select 1 from analysis_runs where experiment_key = :k and run_id <> :r"
            " and as_of > :a limit 1"
        ),
        {"k": key, "a": as_of, "r": run_id},
    ).first()
    return newer is None


def failed_runs(
    conn: Connection, keys: list[str], as_of: datetime, flow_run_id: str | None
) -> list[dict[str, Any]]:
    """The failed runs of these experiments at as_of (of this flow run, when it has an id)."""
    return _dicts(
        conn,
        "select run_id, experiment_key, as_of, flow_run_id, started_at, finished_at, message"
        " from analysis_runs where status = 'failed' and experiment_key = any(:keys)"
        " and as_of = :a and (cast(:fr as text) is null or flow_run_id = cast(:fr as text))"
        " order by experiment_key, started_at",
        {"keys": keys, "a": as_of, "fr": flow_run_id},
    )


def last_promotion_id(conn: Connection, key: str) -> int:
    """The id of the experiment's newest promotions row (0 when there is none)."""
    value = conn.execute(
        text("select coalesce(max(id), 0) from promotions where experiment_key = :k"), {"k": key}
    ).scalar()
    return int(value or 0)


def promotion_rows(
    conn: Connection, key: str, *, run_id: UUID | None = None, after_id: int | None = None
) -> list[dict[str, Any]]:
    """promotions rows of an experiment written by one run, or after a given row id."""
    return _dicts(
        conn,
        "select id, experiment_key, variant_key, action, actor, run_id, reason, version, at"
        " from promotions where experiment_key = :k"
        " and (cast(:r as uuid) is null or run_id = cast(:r as uuid))"
        " and (cast(:after as bigint) is null or id > cast(:after as bigint)) order by id",
        {"k": key, "r": run_id, "after": after_id},
    )


def latest_recommendation(conn: Connection, key: str) -> dict[str, Any] | None:
    """The recommendation of the newest non-failed run (the latest_recommendations view)."""
    row = (
        conn.execute(
            text(
                "select run_id, decision, variant_key, rationale, as_of, run_status"
                " from latest_recommendations where experiment_key = :k"
            ),
            {"k": key},
        )
        .mappings()
        .first()
    )
    return None if row is None else dict(row)


# --- the digest -------------------------------------------------------------------------------

# Non-failed runs with the run before each (by as_of) of the same experiment.
_RUNS_WITH_PREVIOUS = """
with runs as (
    select r.experiment_key, r.run_id, r.as_of, r.status, r.message, rec.decision,
           rec.variant_key, rec.rationale,
           lag(rec.decision) over w as prev_decision,
           lag(rec.variant_key) over w as prev_variant,
           lag(r.status) over w as prev_status,
           lag(r.as_of) over w as prev_as_of
    from analysis_runs r
    join recommendations rec on rec.run_id = r.run_id
    where r.status <> 'failed'
    window w as (partition by r.experiment_key order by r.as_of, r.started_at)
)
select * from runs where as_of > :since and as_of <= :until
"""


def digest_rows(
    conn: Connection, since: datetime, until: datetime
) -> dict[str, list[dict[str, Any]]]:
    """Everything the digest lists for runs with as_of in (since, until] and config changes then.

    changes: decision or variant differs from the previous non-failed run; unhealthy: a run
    turned unhealthy (the previous one was not); failed: failed runs; ready: the newest
    non-failed recommendation is `ship` (with what the config serves); promotions: every
    promotions row written in the window.
    """
    params = {"since": since, "until": until}
    runs = _dicts(conn, _RUNS_WITH_PREVIOUS, params)
    changes = [
        r
        for r in runs
        if r["prev_decision"] is not None
        and (r["prev_decision"], r["prev_variant"]) != (r["decision"], r["variant_key"])
    ]
    unhealthy = [r for r in runs if r["status"] == "unhealthy" and r["prev_status"] != "unhealthy"]
    failed = _dicts(
        conn,
        "select experiment_key, run_id, as_of, message from analysis_runs"
        " where status = 'failed' and as_of > :since and as_of <= :until"
        " order by experiment_key, as_of",
        params,
    )
    ready = _dicts(
        conn,
        "select rec.experiment_key, rec.run_id, rec.as_of, rec.variant_key, rec.rationale,"
        " c.promoted_variant_key, c.pinned, c.pinned_by, c.version"
        " from latest_recommendations rec"
        " left join experiment_config c on c.experiment_key = rec.experiment_key"
        " where rec.decision = 'ship' and rec.as_of <= :until order by rec.experiment_key",
        params,
    )
    promotions = _dicts(
        conn,
        "select id, experiment_key, variant_key, action, actor, run_id, reason, version, at"
        " from promotions where at > :since and at <= :until order by at, id",
        params,
    )
    return {
        "changes": changes,
        "unhealthy": unhealthy,
        "failed": failed,
        "ready": ready,
        "promotions": promotions,
    }


def digest_markdown(
    conn: Connection, since: datetime, until: datetime, *, report_url: str | None = None
) -> str:
    """The digest of (since, until] as markdown, linking to ABFLOW_REPORT_URL when set."""
    rows = digest_rows(conn, since, until)
    running, _ = list_experiments_checked(conn, status="running")
    return render_digest(
        rows,
        overdue(running, until),
        since=since,
        until=until,
        link=lambda key: link_for(report_url, key),
    )
