"""Prefect tasks: thin wrappers that do I/O and call the abflow core."""
