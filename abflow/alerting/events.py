"""The abflow events: names, resources with labels, payloads and the text notifications show.

Every event is about one experiment: resource id `abflow.experiment.<key>`, with labels for the
experiment, decision, variant and analysis run id. Payloads carry decisions, the first sentence of
a rationale, counts and audit reasons, never rows of raw data or secrets: free text is redacted
(credentials in URLs, password/token assignments) and cut to one line.

The builders are pure; `abflow.ops.events` sends what they return.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from abflow.redact import redact as mask_secrets
from abflow.results import ExperimentResult
from abflow.summary import utc_minute

RUN_SUCCEEDED = "abflow.run.succeeded"
RUN_UNHEALTHY = "abflow.run.unhealthy"
RUN_FAILED = "abflow.run.failed"
RECOMMENDATION_CHANGED = "abflow.recommendation.changed"
PROMOTED = "abflow.experiment.promoted"
ROLLED_BACK = "abflow.experiment.rolled_back"
PINNED = "abflow.experiment.pinned"
UNPINNED = "abflow.experiment.unpinned"
REWEIGHTED = "abflow.bandit.reweighted"

# What each event means (README "Alerts" and `abflow alerts list` show this).
MEANINGS: dict[str, str] = {
    RUN_SUCCEEDED: "an analysis run of the experiment succeeded (any decision)",
    RUN_UNHEALTHY: "a critical data-quality or health check failed: decision `investigate`",
    RUN_FAILED: "the analysis of the experiment failed (error recorded in analysis_runs)",
    RECOMMENDATION_CHANGED: (
        "the newest run's decision or variant differs from the previous non-failed run's"
        " (never from a backfill)"
    ),
    PROMOTED: "a variant was promoted into experiment_config (by the rules or a person)",
    ROLLED_BACK: "a person rolled a promotion back (the config is pinned)",
    PINNED: "a person pinned the config: runs leave it alone until `abflow unpin`",
    UNPINNED: "the config was handed back to the decision rules",
    REWEIGHTED: "a bandit's Thompson-sampling weights were written to experiment_config",
}

RUN_EVENTS = {"succeeded": RUN_SUCCEEDED, "unhealthy": RUN_UNHEALTHY, "failed": RUN_FAILED}
ACTION_EVENTS = {
    "promote": PROMOTED,
    "rollback": ROLLED_BACK,
    "pin": PINNED,
    "unpin": UNPINNED,
    "reweight": REWEIGHTED,
}
AUTO_ACTOR = "auto"
MAX_TEXT = 500
_NAMESPACE = uuid.UUID("6f1d3a52-8c1e-4f0b-9d35-2b7c0a6f4e11")


@dataclass(frozen=True)
class EventSpec:
    """One event to send: name, primary resource (id and labels), payload and a stable id."""

    event: str
    resource: dict[str, str]
    payload: dict[str, Any]
    id: UUID

    @property
    def experiment_key(self) -> str:
        """The experiment the event is about."""
        return self.resource["abflow.experiment"]


@dataclass(frozen=True)
class Previous:
    """The recommendation of an experiment's previous non-failed run (by as_of)."""

    decision: str
    variant_key: str | None
    as_of: datetime


# --- text -----------------------------------------------------------------------------------

_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@]+@")
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key)(\s*[=:]\s*)"
    r"(\"[^\"]*\"|'[^']*'|[^\s,;&)]+)"
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(\"'`])")


def redact(text: str | None) -> str:
    """One line of free text, without credentials in URLs or `password=…`-style secrets.

    abflow.redact masks the configured URLs' secrets and URL passwords; this also masks a bare
    user token in a URL and `token=`/`api_key=`/`secret=` values.
    """
    if not text:
        return ""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    line = mask_secrets(line)
    line = _URL_CREDENTIALS.sub(r"\1***@", line)
    line = _ASSIGNED_SECRET.sub(r"\1\2***", line)
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1] + "…"


def first_sentence(text: str | None) -> str:
    """The first sentence of a rationale (the whole text when it has one sentence)."""
    if not text:
        return ""
    head = _SENTENCE_END.split(str(text).strip(), maxsplit=1)[0]
    return redact(head)


def decision_text(decision: str | None, variant: str | None) -> str:
    """'ship green', 'keep_running', or 'no decision'."""
    if not decision:
        return "no decision"
    return f"{decision} {variant}" if variant else decision


def link_for(
    template: str | None, key: str, run_id: Any = None, fallback: str | None = None
) -> str:
    """Where to read more: the configured report/web URL ({key}, {run_id}), else the fallback.

    Without either, the command that writes the report.
    """
    if template:
        return template.replace("{key}", key).replace(
            "{run_id}", "" if run_id is None else str(run_id)
        )
    return fallback or f"abflow report {key} --out {key}.html"


def event_id(*parts: Any) -> UUID:
    """A stable event id: sending the same fact twice gives the same id."""
    return uuid.uuid5(_NAMESPACE, ":".join(str(p) for p in parts))


def resource(
    key: str,
    *,
    decision: str | None = None,
    variant: str | None = None,
    run_id: Any = None,
    **labels: str | None,
) -> dict[str, str]:
    """`abflow.experiment.<key>` with its labels (unset ones left out; label values are text)."""
    out = {
        "prefect.resource.id": f"abflow.experiment.{key}",
        "prefect.resource.name": key,
        "abflow.experiment": key,
    }
    extra = {"decision": decision, "variant": variant, "run-id": run_id, **labels}
    out.update({f"abflow.{k.replace('_', '-')}": str(v) for k, v in extra.items() if v is not None})
    return out


def _spec(
    event: str, res: dict[str, str], subject: str, lines: Iterable[str], ident: Any, **payload: Any
) -> EventSpec:
    """An event whose id is stable for (experiment, event, ident)."""
    message = "\n".join(line for line in lines if line)
    body = {"experiment": res["abflow.experiment"], "subject": subject, "message": message}
    return EventSpec(
        event=event,
        resource=res,
        payload={**body, **payload},
        id=event_id(res["prefect.resource.id"], event, ident),
    )


# --- runs -------------------------------------------------------------------------------------


def run_events(
    result: ExperimentResult,
    *,
    previous: Previous | None,
    newest: bool,
    backfill: bool,
    link: str,
    promotion: str | None = None,
) -> list[EventSpec]:
    """The run event (succeeded, unhealthy or failed) and, when it applies, recommendation.changed.

    recommendation.changed needs a previous non-failed run to compare with, and is never sent for
    a backfill or for a run older than another run of the experiment (a past day).
    """
    run, rec = result.run, result.recommendation
    name = RUN_EVENTS.get(run.status)
    if name is None:  # skipped
        return []
    key = run.experiment_key
    decision = rec.decision if rec else None
    variant = rec.variant_key if rec else None
    when = utc_minute(run.as_of)
    common: dict[str, Any] = {
        "run_id": str(run.run_id),
        "as_of": run.as_of.isoformat(),
        "status": run.status,
        "decision": decision,
        "variant": variant,
        "rationale": first_sentence(rec.rationale if rec else None),
        "link": link,
        "backfill": backfill,
    }
    res = resource(
        key,
        decision=decision,
        variant=variant,
        run_id=run.run_id,
        status=run.status,
        backfill=str(backfill).lower(),
    )
    report = f"Report: {link}"
    if run.status == "failed":
        error = redact(run.message)
        out = [
            _spec(
                name,
                res,
                f"{key}: the analysis as of {when} failed",
                [f"{key}: the analysis as of {when} failed — {error}", report],
                run.run_id,
                error=error,
                **common,
            )
        ]
        return out
    headline = f"{key}: {decision_text(decision, variant)} — {common['rationale']}"
    if run.status == "unhealthy":
        failed = [
            c.check_name for c in result.health_checks if not c.passed and c.severity == "critical"
        ]
        subject = (
            f"{key} is unhealthy as of {when}: {', '.join(failed) or 'critical checks failed'}"
        )
        lines = [headline, f"Critical checks failed: {', '.join(failed)}", report]
        out = [_spec(name, res, subject, lines, run.run_id, failed_checks=failed, **common)]
    else:
        subject = f"{key}: {decision_text(decision, variant)} (as of {when})"
        lines = [headline, promotion or "", report]
        out = [_spec(name, res, subject, lines, run.run_id, promotion=promotion, **common)]
    if previous is None or rec is None or backfill or not newest:
        return out
    if (previous.decision, previous.variant_key) != (decision, variant):
        before = decision_text(previous.decision, previous.variant_key)
        after = decision_text(decision, variant)
        out.append(
            _spec(
                RECOMMENDATION_CHANGED,
                res,
                f"{key}: recommendation changed from {before} to {after}",
                [f"{key}: {before} → {after} — {common['rationale']}", report],
                run.run_id,
                previous_decision=previous.decision,
                previous_variant=previous.variant_key,
                previous_as_of=previous.as_of.isoformat(),
                **common,
            )
        )
    return out


# --- config changes ---------------------------------------------------------------------------


def promotion_events(
    rows: Iterable[Mapping[str, Any]],
    *,
    recommendation: Mapping[str, Any] | None,
    link: str,
) -> list[EventSpec]:
    """Events for `promotions` rows (each one version step of experiment_config).

    A manual promote or rollback also pins the config, so it sends `pinned` too; the rules'
    own steps (actor `auto`) never pin.
    """
    out: list[EventSpec] = []
    for row in rows:
        action = str(row["action"])
        name = ACTION_EVENTS.get(action)
        if name is None:
            continue
        out.append(_config_event(name, row, recommendation, link))
        if action in ("promote", "rollback") and row.get("actor") != AUTO_ACTOR:
            out.append(_config_event(PINNED, row, recommendation, link))
    return out


def _config_event(
    name: str, row: Mapping[str, Any], rec: Mapping[str, Any] | None, link: str
) -> EventSpec:
    key = str(row["experiment_key"])
    variant = row.get("variant_key")
    version = row.get("version")
    actor = str(row.get("actor") or "unknown")
    by = "automatically" if actor == AUTO_ACTOR else f"by {actor}"
    reason = redact(row.get("reason"))
    decision = rec.get("decision") if rec else None
    rec_variant = rec.get("variant_key") if rec else None
    rationale = first_sentence(rec.get("rationale") if rec else None)
    res = resource(
        key,
        decision=decision,
        variant=variant,
        run_id=row.get("run_id") or (rec or {}).get("run_id"),
        action=str(row["action"]),
        actor=actor,
    )
    v = f"config v{version}"
    what = {
        PROMOTED: f"'{variant}' promoted {by} ({v})",
        ROLLED_BACK: f"'{variant}' rolled back {by} ({v})",
        PINNED: f"config pinned {by} ({v}): runs leave it alone until `abflow unpin {key}`",
        UNPINNED: f"config unpinned {by} ({v}): the decision rules own it again",
        REWEIGHTED: f"bandit weights updated {by} ({v})",
    }[name]
    why = rationale if actor == AUTO_ACTOR and rationale else reason
    lines = [
        f"{key}: {what}" + (f" — {why}" if why else ""),
        f"Latest recommendation: {decision_text(decision, rec_variant)}"
        + (f" — {rationale}" if rationale and why != rationale else ""),
        f"Report: {link}",
    ]
    return _spec(
        name,
        res,
        f"{key}: {what.split(':')[0]}",
        lines,
        row.get("id", version),
        action=str(row["action"]),
        variant=variant,
        version=version,
        actor=actor,
        reason=reason,
        decision=decision,
        rationale=rationale,
        link=link,
        run_id=None if row.get("run_id") is None else str(row["run_id"]),
        promotion_id=row.get("id"),
    )
