"""Prefect flows: wiring only (no SQL, no maths)."""
