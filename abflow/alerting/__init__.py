"""Alerting without Prefect: what each abflow event says, the daily digest, readable validation.

Pure functions over result records and warehouse rows. The Prefect layer (`abflow.ops`, `tasks/`)
sends what these build; nothing here imports Prefect.
"""
