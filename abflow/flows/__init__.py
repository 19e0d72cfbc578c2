"""Prefect flows: wiring only (no SQL, no maths)."""

from abflow.redact import install_log_redaction

# Every entrypoint (CLI, `prefect deploy`, workers, `abflow serve`) imports this package first:
# from here on no log record of the process carries a credential.
install_log_redaction()
