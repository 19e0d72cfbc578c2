"""The Prefect side of abflow's operations: sending events, and automations declared as code.

Unlike the core (`abflow.stats`, `abflow.alerting`, …) these modules import Prefect; the flows,
tasks and the CLI's `alerts` verbs use them.
"""
