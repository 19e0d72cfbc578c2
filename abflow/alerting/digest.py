"""The daily digest: what changed since a point in time, as markdown with links.

Sections: decisions that changed, experiments that became unhealthy (and failed runs), winners
ready to ship or promoted (and other config changes), running experiments past their
max runtime. Input: `abflow.warehouse.activity.digest_rows` and the running definitions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from abflow.alerting.events import decision_text, first_sentence, redact
from abflow.definitions import Experiment
from abflow.summary import md, utc_minute

Link = Callable[[str], str]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(value: str, now: datetime) -> datetime:
    """'24h', '90m', '7d', '2w' before now, or an ISO date/timestamp (UTC when naive)."""
    m = _DURATION.match(value)
    if m:
        return now - timedelta(**{_UNITS[m.group(2).lower()]: float(m.group(1))})
    try:
        ts = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--since: expected a duration such as 24h, 7d or an ISO timestamp, not {value!r}"
        ) from None
    return ts if ts.tzinfo else ts.replace(tzinfo=now.tzinfo)


def overdue(experiments: Iterable[Experiment], now: datetime) -> list[dict[str, Any]]:
    """Running experiments whose runtime passed decision.max_runtime_days."""
    out = []
    for e in experiments:
        limit = e.decision.max_runtime_days
        if e.status != "running" or limit is None:
            continue
        end = min(now, e.end_at) if e.end_at else now
        days = (end - e.start_at).total_seconds() / 86400
        if days > limit:
            out.append({"experiment_key": e.key, "days": days, "max_runtime_days": limit})
    return out


def _linked(key: str, link: Link) -> str:
    target = link(key)
    return f"[{md(key)}]({target})" if "://" in target else f"{md(key)} (`{target}`)"


def _text(value: Any) -> str:
    """Warehouse or user text as inert markdown, one line, secrets masked."""
    return md(redact(value))


def render_digest(
    rows: Mapping[str, list[dict[str, Any]]],
    overdue_rows: list[dict[str, Any]],
    *,
    since: datetime,
    until: datetime,
    link: Link,
) -> str:
    """The digest as markdown; every section says 'none' rather than disappearing."""
    out = [
        f"# abflow digest — {utc_minute(since)} to {utc_minute(until)}",
        "",
        "Runs are counted by their as-of; config changes by when they were made.",
    ]

    def section(title: str, lines: list[str]) -> None:
        out.extend(["", f"## {title} ({len(lines)})", ""])
        out.extend(lines or ["None."])

    section(
        "Decisions that changed",
        [
            f"- {_linked(r['experiment_key'], link)}: "
            f"{md(decision_text(r['prev_decision'], r['prev_variant']))} → "
            f"**{md(decision_text(r['decision'], r['variant_key']))}** "
            f"(as of {utc_minute(r['as_of'])}) — {md(first_sentence(r['rationale']))}"
            for r in rows.get("changes", [])
        ],
    )
    section(
        "Became unhealthy or failed",
        [
            f"- {_linked(r['experiment_key'], link)}: unhealthy as of {utc_minute(r['as_of'])}"
            f" — {_text(r['message'])}"
            for r in rows.get("unhealthy", [])
        ]
        + [
            f"- {_linked(r['experiment_key'], link)}: the analysis as of {utc_minute(r['as_of'])}"
            f" failed — {_text(r['message'])}"
            for r in rows.get("failed", [])
        ],
    )
    section("Winners ready to ship or promoted", _winners(rows, link))
    section(
        "Other config changes",
        [
            f"- {_linked(p['experiment_key'], link)}: {md(p['action'])}"
            + (f" '{md(p['variant_key'])}'" if p.get("variant_key") else "")
            + f" by {_text(p['actor'])} (config v{p['version']}, {utc_minute(p['at'])})"
            + (f" — {_text(p['reason'])}" if p.get("reason") else "")
            for p in rows.get("promotions", [])
            if p["action"] != "promote"
        ],
    )
    section(
        "Past their max runtime",
        [
            f"- {_linked(r['experiment_key'], link)}: running {r['days']:.1f} days"
            f" (`decision.max_runtime_days`: {r['max_runtime_days']:g})"
            for r in overdue_rows
        ],
    )
    return "\n".join(out) + "\n"


def _winners(rows: Mapping[str, list[dict[str, Any]]], link: Link) -> list[str]:
    lines = []
    for p in rows.get("promotions", []):
        if p["action"] == "promote":
            by = "automatically" if p["actor"] == "auto" else f"by {_text(p['actor'])}"
            variant = md(p["variant_key"])
            lines.append(
                f"- {_linked(p['experiment_key'], link)}: **promoted '{variant}'** {by}"
                f" (config v{p['version']}, {utc_minute(p['at'])})"
            )
    for r in rows.get("ready", []):
        if r.get("promoted_variant_key") == r["variant_key"]:
            continue  # already served
        held = (
            f"config pinned by {_text(r['pinned_by'])}"
            if r.get("pinned")
            else "not promoted (auto_promote is off or the run was not the newest)"
        )
        lines.append(
            f"- {_linked(r['experiment_key'], link)}: **ready to ship '{md(r['variant_key'])}'**"
            f" (as of {utc_minute(r['as_of'])}; {held}) — {md(first_sentence(r['rationale']))}"
        )
    return lines
