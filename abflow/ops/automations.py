"""abflow's Prefect automations, declared as code and installed idempotently by name.

Four automations, each notifying through one Prefect notification block:

* `abflow: promoted` — `abflow.experiment.promoted`
* `abflow: unhealthy or failed` — `abflow.run.unhealthy` / `abflow.run.failed` (not backfills)
* `abflow: recommendation changed` — `abflow.recommendation.changed`
* `abflow: daily run missing` — a proactive (absence) trigger: no `Completed` flow run of the
  scheduled analysis deployment (`analyze-experiments/analyze`) for 26 hours

The notification text comes from the event: subject `payload.subject`, body `payload.message`
(experiment, decision, first sentence of the rationale, link), rendered by the server.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from prefect.automations import AutomationCore, EventTrigger, Posture, SendNotification
from prefect.blocks.core import Block
from prefect.blocks.notifications import (
    CustomWebhookNotificationBlock,
    MicrosoftTeamsWebhook,
    SlackWebhook,
)
from prefect.client.orchestration import get_client

from abflow.alerting import events as ev

PREFIX = "abflow: "
PROMOTED = "abflow: promoted"
UNHEALTHY = "abflow: unhealthy or failed"
CHANGED = "abflow: recommendation changed"
MISSING = "abflow: daily run missing"
NAMES = (PROMOTED, UNHEALTHY, CHANGED, MISSING)
TAG = "abflow"
WEBHOOK_BLOCK = "abflow-alerts"  # the block `--webhook-url` creates (and `remove` deletes)
ANALYZE_FLOW = "analyze-experiments"
ANALYZE_DEPLOYMENT = "analyze"
MISSING_AFTER = timedelta(hours=26)

SUBJECT = "{{ event.payload.subject }}"
BODY = "{{ event.payload.message }}\n({{ automation.name }})"
MISSING_BODY = (
    "No run of the scheduled analysis (deployment {flow}/{deployment}) completed in the last"
    " {window}: is `abflow serve` or the work pool's worker running?"
    "\n({{{{ automation.name }}}})"
)


class AlertsError(RuntimeError):
    """Alerts cannot be installed or read; the message says why in one line."""


@dataclass(frozen=True)
class Installed:
    """One automation after `install`: its name, id and whether it was created or updated."""

    name: str
    id: UUID
    action: str


def human_duration(span: timedelta) -> str:
    """'26 h', '90 min', '10 s'."""
    seconds = span.total_seconds()
    for unit, size in (("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


def _experiment_events(*names: str, backfills: bool = True) -> EventTrigger:
    match: dict[str, Any] = {"prefect.resource.id": "abflow.experiment.*"}
    if not backfills:
        match["abflow.backfill"] = "false"
    return EventTrigger(
        expect=set(names), match=match, posture=Posture.Reactive, threshold=1, within=timedelta(0)
    )


def definitions(
    block_document_id: UUID,
    *,
    missing_after: timedelta = MISSING_AFTER,
    flow_name: str = ANALYZE_FLOW,
    deployment_name: str = ANALYZE_DEPLOYMENT,
) -> list[AutomationCore]:
    """The four automations, notifying through the given block."""

    def notify(body: str = BODY, subject: str = SUBJECT) -> list[Any]:
        return [SendNotification(block_document_id=block_document_id, subject=subject, body=body)]

    window = human_duration(missing_after)
    reactive = [
        (PROMOTED, ev.MEANINGS[ev.PROMOTED], _experiment_events(ev.PROMOTED)),
        (
            UNHEALTHY,
            f"{ev.MEANINGS[ev.RUN_UNHEALTHY]}; or {ev.MEANINGS[ev.RUN_FAILED]}"
            " (backfills excluded)",
            _experiment_events(ev.RUN_UNHEALTHY, ev.RUN_FAILED, backfills=False),
        ),
        (
            CHANGED,
            ev.MEANINGS[ev.RECOMMENDATION_CHANGED],
            _experiment_events(ev.RECOMMENDATION_CHANGED),
        ),
    ]
    return [
        *(
            AutomationCore(
                name=name, description=about, tags=[TAG], trigger=trigger, actions=notify()
            )
            for name, about, trigger in reactive
        ),
        AutomationCore(
            name=MISSING,
            description=f"no completed {flow_name}/{deployment_name} flow run for {window}",
            tags=[TAG],
            trigger=EventTrigger(
                expect={"prefect.flow-run.Completed"},
                match={"prefect.resource.id": "prefect.flow-run.*"},
                match_related=[
                    {"prefect.resource.role": "flow", "prefect.resource.name": flow_name},
                    {
                        "prefect.resource.role": "deployment",
                        "prefect.resource.name": deployment_name,
                    },
                ],
                posture=Posture.Proactive,
                threshold=1,
                within=missing_after,
            ),
            actions=notify(
                MISSING_BODY.format(flow=flow_name, deployment=deployment_name, window=window),
                subject=f"abflow: the daily analysis has not completed for {window}",
            ),
        ),
    ]


# --- blocks -----------------------------------------------------------------------------------


def webhook_block(url: str) -> Block:
    """A notification block for a webhook URL: Slack and Teams by host, else a JSON POST.

    The generic webhook keeps the URL among the block's secrets (it may carry a token) and posts
    `{"text", "subject", "body", "source"}`.
    """
    host = (urlsplit(url).hostname or "").lower()
    if urlsplit(url).scheme not in ("http", "https") or not host:
        raise AlertsError(f"--webhook-url: not an http(s) URL: {_masked(url)}")
    if host.endswith("slack.com") or host.endswith("slack-gov.com"):
        return SlackWebhook(url=url)  # type: ignore[arg-type]
    if host.endswith("webhook.office.com") or host.endswith("logic.azure.com"):
        return MicrosoftTeamsWebhook(url=url)  # type: ignore[arg-type]
    return CustomWebhookNotificationBlock(  # type: ignore[call-arg]
        name="abflow",
        url="{{webhook_url}}",
        secrets={"webhook_url": url},  # type: ignore[arg-type]
        json_data={
            "text": "{{subject}}\n{{body}}",
            "subject": "{{subject}}",
            "body": "{{body}}",
            "source": "abflow",
        },
    )


def _masked(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "(not a URL)"


def save_webhook_block(url: str, name: str = WEBHOOK_BLOCK) -> UUID:
    """Create or overwrite the block for `--webhook-url`; its block document id."""
    block = webhook_block(url)
    block_id = block.save(name, overwrite=True)
    assert isinstance(block_id, UUID)  # the sync call (no running event loop here)
    return block_id


def find_block(name: str) -> tuple[UUID, str]:
    """(block document id, 'type-slug/name') of a notification block named `name` or `slug/name`."""
    slug, _, bare = name.rpartition("/")
    with get_client(sync_client=True) as client:
        docs = client.read_block_documents(include_secrets=False)
    found = [
        d
        for d in docs
        if d.name == bare
        and not d.is_anonymous
        and (not slug or (d.block_type is not None and d.block_type.slug == slug))
    ]
    notifying = [
        d for d in found if d.block_schema is None or "notify" in d.block_schema.capabilities
    ]
    if not notifying:
        hint = " (it is not a notification block)" if found else ""
        raise AlertsError(f"--block: no notification block named '{name}'{hint}")
    if len(notifying) > 1:
        kinds = ", ".join(f"{d.block_type.slug}/{d.name}" for d in notifying if d.block_type)
        raise AlertsError(f"--block: '{name}' is ambiguous, name it as type/name: {kinds}")
    doc = notifying[0]
    slug = doc.block_type.slug if doc.block_type else "block"
    return doc.id, f"{slug}/{doc.name}"


# --- automations ------------------------------------------------------------------------------


def install(
    block_document_id: UUID, *, missing_after: timedelta = MISSING_AFTER
) -> list[Installed]:
    """Create or update each automation by name; duplicates of a name are deleted."""
    out = []
    with get_client(sync_client=True) as client:
        for automation in definitions(block_document_id, missing_after=missing_after):
            existing = client.read_automations_by_name(automation.name)
            if existing:
                keep, *extra = existing
                client.update_automation(keep.id, automation)
                for dup in extra:
                    client.delete_automation(dup.id)
                out.append(Installed(automation.name, keep.id, "updated"))
            else:
                new_id = client.create_automation(automation)
                out.append(Installed(automation.name, new_id, "created"))
    return out


def installed() -> list[Any]:
    """abflow's automations on the server (named `abflow: …`), sorted by name."""
    with get_client(sync_client=True) as client:
        autos = client.read_automations()
    return sorted((a for a in autos if a.name.startswith(PREFIX)), key=lambda a: a.name)


def block_names(block_ids: set[UUID]) -> dict[UUID, str]:
    """'type-slug/name' of block documents by id (for listing the actions' targets)."""
    names: dict[UUID, str] = {}
    with get_client(sync_client=True) as client:
        for block_id in block_ids:
            try:
                doc = client.read_block_document(block_id, include_secrets=False)
            except Exception:  # deleted since
                names[block_id] = "(missing block)"
                continue
            slug = doc.block_type.slug if doc.block_type else "block"
            names[block_id] = f"{slug}/{doc.name}"
    return names


def remove(*, keep_block: bool = False) -> list[str]:
    """Delete abflow's automations (and the `--webhook-url` block unless keep_block)."""
    removed = []
    autos = installed()
    with get_client(sync_client=True) as client:
        for a in autos:
            client.delete_automation(a.id)
            removed.append(a.name)
        if not keep_block:
            for doc in client.read_block_documents(include_secrets=False):
                if doc.name == WEBHOOK_BLOCK and not doc.is_anonymous:
                    client.delete_block_document(doc.id)
                    slug = doc.block_type.slug if doc.block_type else "block"
                    removed.append(f"block {slug}/{doc.name}")
    return removed
