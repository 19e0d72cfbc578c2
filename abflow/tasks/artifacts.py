"""Prefect artifacts: results table, markdown summary and validation table per experiment."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from abflow.alerting.validation import validation_records, validation_summary
from abflow.results import ExperimentResult
from abflow.summary import artifact_key, markdown_summary, table_records


@task(
    name="publish-artifacts",
    cache_policy=NO_CACHE,
    task_run_name="artifacts-{result.run.experiment_key}",
)
def publish_artifacts(result: ExperimentResult, promotion_message: str | None) -> None:
    """Publish the insights, the recommendation summary and the validation result (stable keys)."""
    key = result.run.experiment_key
    create_table_artifact(
        table=table_records(result),
        key=artifact_key(key, "results"),
        description=f"abflow insights for {key} as of {result.run.as_of.isoformat()}",
    )
    create_markdown_artifact(
        markdown=markdown_summary(result, promotion_message),
        key=artifact_key(key, "summary"),
        description=f"abflow recommendation for {key}",
    )
    # The validation result, per check (GX expectations and health checks), readable in the UI.
    create_table_artifact(
        table=validation_records(result.health_checks),
        key=artifact_key(key, "validation"),
        description=validation_summary(key, result.health_checks),
    )
