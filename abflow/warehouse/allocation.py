"""A bandit's allocation periods, read from the promotions audit trail of experiment_config.

Every change of experiment_config appends a `promotions` row holding the config it replaced
(`previous_config`), so the weights in force after row i are the previous_config of row i+1,
and after the newest row the current config. A period starts at each row that changed the
weights served (a `reweight`; also a person's promote or rollback, which serve one variant or
the weighted split again); pins and unpins do not start one. A promoted variant is served to
everyone: its weight is 1 and the others' 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from abflow.bandit_periods import Period, periods_from_history
from abflow.definitions import Experiment


def served_weights(config: Mapping[str, Any] | None) -> dict[str, float] | None:
    """The weights a config serves ({variant: weight}); None for an empty snapshot."""
    if not config or not config.get("variants"):
        return None
    keys = [str(v["key"]) for v in config["variants"]]
    promoted = config.get("promoted_variant_key")
    if promoted:
        return {k: 1.0 if k == promoted else 0.0 for k in keys}
    return {str(v["key"]): float(v["weight"]) for v in config["variants"]}


def allocation_periods(
    conn: Connection, experiment: Experiment, as_of: datetime | None = None
) -> list[Period]:
    """The experiment's allocation periods up to `as_of` (one period for fixed allocation)."""
    defined = {v.key: v.weight for v in experiment.variants}
    if experiment.allocation != "bandit":
        return [Period(experiment.start_at, defined)]
    rows = (
        conn.execute(
            text(
                "select at, previous_config from promotions where experiment_key = :k"
                " order by id"
            ),
            {"k": experiment.key},
        )
        .mappings()
        .all()
    )
    current = (
        conn.execute(
            text(
                "select variants, promoted_variant_key from experiment_config"
                " where experiment_key = :k"
            ),
            {"k": experiment.key},
        )
        .mappings()
        .first()
    )
    return periods_from_rows(
        experiment, [dict(r) for r in rows], dict(current) if current else None, as_of
    )


def periods_from_rows(
    experiment: Experiment,
    rows: Sequence[Mapping[str, Any]],
    current: Mapping[str, Any] | None,
    as_of: datetime | None = None,
) -> list[Period]:
    """Periods from promotions rows (at, previous_config) in id order and the current config."""
    defined = {v.key: v.weight for v in experiment.variants}
    after = [served_weights(r["previous_config"]) for r in rows[1:]]
    if rows:
        after.append(served_weights(current))
    # Before the first change: what it replaced; with no change at all: what is served now.
    initial = served_weights(rows[0]["previous_config"] if rows else current) or defined
    changes: list[tuple[datetime, Mapping[str, float]]] = []
    before = initial
    for row, weights in zip(rows, after, strict=True):
        if weights is None or weights == before:
            continue
        if as_of is None or row["at"] <= as_of:
            changes.append((row["at"], weights))
        before = weights
    return periods_from_history(initial, changes, experiment.start_at)
