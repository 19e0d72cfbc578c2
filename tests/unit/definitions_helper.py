"""Minimal experiment definitions for decision tests: n equal arms, given metrics, defaults else."""

from __future__ import annotations

from typing import Any

CONV = {"key": "conv", "kind": "proportion", "event": "buy", "role": "primary"}


def arms(n: int) -> list[dict[str, Any]]:
    """`control`, `t1`, … with equal weights summing to 1 (the last arm takes the rounding)."""
    w = round(1 / n, 6)
    return [
        {
            "key": "control" if i == 0 else f"t{i}",
            "weight": w if i < n - 1 else round(1 - w * (n - 1), 6),
            "control": i == 0,
        }
        for i in range(n)
    ]


def definition(
    metrics: list[dict[str, Any]] | None = None, n_arms: int = 2, **extra: Any
) -> dict[str, Any]:
    """A running experiment as the YAML dict a new user would write (defaults everywhere else)."""
    return {
        "key": "repro",
        "name": "reproduction",
        "status": "running",
        "start_at": "2026-11-01T00:00:00Z",
        "variants": arms(n_arms),
        "metrics": metrics or [CONV],
        **extra,
    }


def guardrails(n: int) -> list[dict[str, Any]]:
    """n proportion guardrails g0…g{n-1} where lower is better (e.g. error or refund rates)."""
    return [
        {
            "key": f"g{i}",
            "kind": "proportion",
            "event": f"g{i}",
            "role": "guardrail",
            "direction": "decrease",
        }
        for i in range(n)
    ]
