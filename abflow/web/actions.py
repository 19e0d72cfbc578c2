"""Every write of the web app, shared by the JSON API and the browser forms.

Each action runs in one transaction and goes through the same functions as the CLI
(`experiments apply`, `promote`, `rollback`, `unpin`) with the token's name as the actor; a
successful action and its `web_audit` row commit together, a refused one is logged on its own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from sqlalchemy import Connection, Engine

from abflow.definitions import DefinitionError, Experiment, parse_experiment
from abflow.settings import Settings
from abflow.warehouse import dashboard, promotion
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.web_tokens import TokenInfo, audit
from abflow.web.runs import RunLauncher, RunUnavailable

MAX_DEFINITION_BYTES = 1_000_000


class ActionError(Exception):
    """A refused or invalid action: HTTP status, one-line message and the field at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class ActionResult:
    """What an action did."""

    experiment_key: str
    action: str
    changed: bool
    message: str
    version: int | None = None
    extra: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The API's answer."""
        return {
            "experiment_key": self.experiment_key,
            "action": self.action,
            "changed": self.changed,
            "message": self.message,
            "config_version": self.version,
            **(self.extra or {}),
        }


def definition_error(exc: DefinitionError, source: str = "body") -> ActionError:
    """422 naming the field of a definition error ('body: metrics[m].kind: …')."""
    text = str(exc).removeprefix(f"{source}: ")
    field, sep, _ = text.partition(": ")
    return ActionError(422, str(exc), field if sep else source)


def parse_definition(body: bytes, content_type: str | None) -> Experiment:
    """A definition posted as JSON or YAML, validated exactly as `experiments apply` does."""
    if len(body) > MAX_DEFINITION_BYTES:
        raise ActionError(413, f"body: larger than {MAX_DEFINITION_BYTES:,} bytes")
    if not body.strip():
        raise ActionError(422, "body: empty; send a definition as YAML or JSON", "body")
    kind = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ActionError(422, "body: not UTF-8 text", "body") from None
    try:
        data = json.loads(text) if kind.endswith("json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ActionError(
            422, f"body: line {exc.lineno}: malformed JSON: {exc.msg}", "body"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ActionError(422, f"body:{where} malformed YAML: {problem}", "body") from None
    try:
        return parse_experiment(data, "body")
    except DefinitionError as exc:
        raise definition_error(exc) from None


class WebActions:
    """The web app's writes, each audited with the token's name."""

    def __init__(self, engine: Engine, settings: Settings, launcher: RunLauncher) -> None:
        self._engine = engine
        self._settings = settings
        self._launcher = launcher

    # --- plumbing ------------------------------------------------------------------------

    def _audited(
        self,
        token: TokenInfo,
        action: str,
        key: str | None,
        change: Callable[[Connection], ActionResult],
    ) -> ActionResult:
        """Run `change` in a transaction with its audit row; log refusals separately."""
        try:
            with self._engine.begin() as conn:
                if key is not None and action != "create":
                    self._require(conn, key)
                result = change(conn)
                audit(conn, token.name, action, key, "ok", result.message)
            return result
        except ActionError as exc:
            self._refused(token, action, key, exc.message)
            raise
        except DefinitionError as exc:  # a stored definition that no longer validates
            self._refused(token, action, key, str(exc))
            raise ActionError(409, f"stored definition is invalid: {exc}") from None
        except (promotion.PromotionRefused, dashboard.LifecycleRefused) as exc:
            message = str(exc).splitlines()[0]
            self._refused(token, action, key, message)
            raise ActionError(409, message) from None

    def _refused(self, token: TokenInfo, action: str, key: str | None, message: str) -> None:
        with self._engine.begin() as conn:
            audit(conn, token.name, action, key, "refused", message)

    @staticmethod
    def _require(conn: Connection, key: str) -> dict[str, Any]:
        record = dashboard.experiment_record(conn, key)
        if record is None:
            raise ActionError(404, f"experiment '{key}' is not defined")
        return record

    def _version(self, conn: Connection, key: str) -> int | None:
        cfg = promotion.configs(conn, [key]).get(key)
        return None if cfg is None else int(cfg["version"])

    # --- actions -------------------------------------------------------------------------

    def create(self, token: TokenInfo, experiment: Experiment) -> ActionResult:
        """Upsert a definition (as `experiments apply`); changed=False when it was identical."""

        def change(conn: Connection) -> ActionResult:
            before = dashboard.experiment_record(conn, experiment.key)
            upsert_experiments(conn, [experiment])
            created = before is None
            same = (
                before is not None
                and before["definition"] == experiment.model_dump(mode="json")
                and before["archived_at"] is None
            )
            verb = "created" if created else ("unchanged" if same else "updated")
            return ActionResult(
                experiment.key,
                "create",
                not same,
                f"{verb} {experiment.key} ({experiment.status}, {len(experiment.variants)}"
                f" variants, {len(experiment.metrics)} metrics)",
                self._version(conn, experiment.key),
                {"created": created},
            )

        return self._audited(token, "create", experiment.key, change)

    def set_status(self, token: TokenInfo, key: str, status: str) -> ActionResult:
        """Start (`running`) or stop (`stopped`) an experiment."""

        def change(conn: Connection) -> ActionResult:
            changed, _ = dashboard.set_status(
                conn, key, status, lock_timeout_seconds=self._settings.lock_timeout_seconds
            )
            version = self._version(conn, key)
            message = (
                f"'{key}' is now {status} (config v{version})"
                if changed
                else f"'{key}' is already {status}"
            )
            return ActionResult(key, "status", changed, message, version, {"status": status})

        return self._audited(token, "status", key, change)

    def _config_change(
        self,
        token: TokenInfo,
        action: str,
        key: str,
        call: Callable[[Connection], promotion.PromotionOutcome],
    ) -> ActionResult:
        def change(conn: Connection) -> ActionResult:
            out = call(conn)
            return ActionResult(key, action, out.changed, out.message, out.version)

        return self._audited(token, action, key, change)

    def promote(
        self, token: TokenInfo, key: str, variant: str, reason: str | None, force: bool
    ) -> ActionResult:
        """abflow.warehouse.promotion.promote with the token's name as the actor."""
        return self._config_change(token, "promote", key, lambda conn: promotion.promote(
            conn, key, variant, actor=token.name, reason=reason or None, force=force,
            lock_timeout_seconds=self._settings.lock_timeout_seconds,
        ))  # fmt: skip

    def rollback(self, token: TokenInfo, key: str, reason: str | None) -> ActionResult:
        """abflow.warehouse.promotion.rollback with the token's name as the actor."""
        return self._config_change(token, "rollback", key, lambda conn: promotion.rollback(
            conn, key, actor=token.name, reason=reason or None,
            lock_timeout_seconds=self._settings.lock_timeout_seconds,
        ))  # fmt: skip

    def unpin(self, token: TokenInfo, key: str, reason: str | None) -> ActionResult:
        """abflow.warehouse.promotion.unpin with the token's name as the actor."""
        return self._config_change(token, "unpin", key, lambda conn: promotion.unpin(
            conn, key, actor=token.name, reason=reason or None,
            lock_timeout_seconds=self._settings.lock_timeout_seconds,
        ))  # fmt: skip

    def archive(self, token: TokenInfo, key: str) -> ActionResult:
        """Archive (a running experiment is stopped first); nothing is deleted."""

        def change(conn: Connection) -> ActionResult:
            changed, message = dashboard.archive(
                conn, key, actor=token.name,
                lock_timeout_seconds=self._settings.lock_timeout_seconds,
            )  # fmt: skip
            return ActionResult(key, "archive", changed, message, self._version(conn, key))

        return self._audited(token, "archive", key, change)

    def run(self, token: TokenInfo, key: str) -> ActionResult:
        """Start the analysis of one experiment (Prefect deployment, or in this process)."""

        def change(conn: Connection) -> ActionResult:
            record = self._require(conn, key)
            if record["archived_at"] is not None:
                raise ActionError(409, f"experiment '{key}' is archived")
            try:
                started = self._launcher.launch(key, token.name)
            except RunUnavailable as exc:
                raise ActionError(503, str(exc)) from None
            where = (
                f"flow run {started['flow_run_id']} of deployment {started['deployment']}"
                if started["mode"] == "deployment"
                else f"in-process job {started['id']}"
            )
            return ActionResult(key, "run", True, f"analysis of '{key}' started: {where}",
                                extra={"run": started})  # fmt: skip

        return self._audited(token, "run", key, change)
