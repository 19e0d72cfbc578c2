"""Read results back for display: the newest run per experiment with its rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

# The newest run per experiment ({order} "status = 'failed'," puts runs that did not fail first).
_NEWEST_RUNS = (
    "select distinct on (experiment_key) * from analysis_runs"
    " where (cast(:keys as text[]) is null or experiment_key = any(cast(:keys as text[])))"
    " order by experiment_key, {order} as_of desc, started_at desc"
)


def latest_results(conn: Connection, keys: list[str] | None = None) -> list[dict[str, Any]]:
    """Per experiment: latest run, recommendation, overall insights, units, checks, config.

    The run shown is the newest that did not fail (as the latest_* views apps read), else the
    newest failed one; `failed_newer` is the newest run when it failed after the one shown.
    """
    params = {"keys": keys}
    order = "status = 'failed',"
    runs = conn.execute(text(_NEWEST_RUNS.format(order=order)), params).mappings().all()
    newest = conn.execute(text(_NEWEST_RUNS.format(order="")), params).mappings().all()
    failed_newer = {r["experiment_key"]: dict(r) for r in newest if r["status"] == "failed"}
    out = []
    for run in runs:
        rid = run["run_id"]
        rec = (
            conn.execute(text("select * from recommendations where run_id = :r"), {"r": rid})
            .mappings()
            .first()
        )
        insights = (
            conn.execute(
                text(
                    "select * from insights where run_id = :r and segment = 'all'"
                    " order by metric_role = 'primary' desc, metric_key, variant_key"
                ),
                {"r": rid},
            )
            .mappings()
            .all()
        )
        units = (
            conn.execute(
                text(
                    "select variant_key, max(units) as units from variant_stats where run_id = :r"
                    " and segment = 'all' group by variant_key order by variant_key"
                ),
                {"r": rid},
            )
            .mappings()
            .all()
        )
        caps = (
            conn.execute(
                text(
                    "select metric_key, max(cap_lower) as cap_lower, max(cap_upper) as cap_upper,"
                    " max(denominator_cap_lower) as denominator_cap_lower,"
                    " max(denominator_cap_upper) as denominator_cap_upper"
                    " from variant_stats where run_id = :r and segment = 'all' and capped"
                    " group by metric_key"
                ),
                {"r": rid},
            )
            .mappings()
            .all()
        )
        checks = (
            conn.execute(
                text("select * from health_checks where run_id = :r order by check_name"),
                {"r": rid},
            )
            .mappings()
            .all()
        )
        exposure_age = (
            conn.execute(
                text(
                    "select * from lift_by_exposure_age where run_id = :r"
                    " order by metric_key, variant_key, first_day"
                ),
                {"r": rid},
            )
            .mappings()
            .all()
        )
        config = (
            conn.execute(
                text("select * from experiment_config where experiment_key = :k"),
                {"k": run["experiment_key"]},
            )
            .mappings()
            .first()
        )
        out.append(
            {
                "run": dict(run),
                "recommendation": dict(rec) if rec else None,
                "insights": [dict(i) for i in insights],
                "units": {u["variant_key"]: u["units"] for u in units},
                "checks": [dict(c) for c in checks],
                "exposure_age": [dict(a) for a in exposure_age],
                "metric_notes": _metric_notes(conn, run["experiment_key"], caps),
                "config": dict(config) if config else None,
                "failed_newer": (
                    None
                    if failed_newer.get(run["experiment_key"], {}).get("run_id") in (None, rid)
                    else failed_newer[run["experiment_key"]]
                ),
            }
        )
    return out


def _metric_notes(conn: Connection, key: str, caps: Any) -> dict[str, dict[str, str]]:
    """Per metric: how it is capped (with the caps of this run) and filtered, as text."""
    from abflow.definitions import DefinitionError
    from abflow.metric_options import capping_text, metric_filter_text
    from abflow.warehouse.experiments_repo import get_experiment

    try:
        experiment = get_experiment(conn, key)
    except DefinitionError:  # a stored definition this version cannot read: no notes
        return {}
    if experiment is None:
        return {}
    used = {c["metric_key"]: c for c in caps}
    notes = {}
    for m in experiment.metrics:
        note = {"capping": capping_text(m, used.get(m.key)), "filter": metric_filter_text(m)}
        if any(note.values()):
            notes[m.key] = note
    return notes


def insight_history(conn: Connection, key: str) -> list[dict[str, Any]]:
    """All insights of an experiment over as_of (the time series for reports)."""
    rows = (
        conn.execute(
            text(
                "select i.*, r.status as run_status from insights i join analysis_runs r"
                " using (run_id) where i.experiment_key = :k order by i.as_of, i.metric_key,"
                " i.variant_key, i.segment"
            ),
            {"k": key},
        )
        .mappings()
        .all()
    )
    return [dict(r) for r in rows]


def previous_units(conn: Connection, key: str, as_of: datetime) -> int | None:
    """Units of the newest earlier healthy run of an experiment, if any."""
    return conn.execute(
        text(
            "select units from analysis_runs where experiment_key = :k and as_of < :a"
            " and status in ('succeeded', 'unhealthy') order by as_of desc limit 1"
        ),
        {"k": key, "a": as_of},
    ).scalar()
