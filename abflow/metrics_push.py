"""Push the latest run's results to a Prometheus Pushgateway (best effort, never fails a run)."""

from __future__ import annotations

import http.client
import logging
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway
from prometheus_client.exposition import basic_auth_handler, default_handler

from abflow.definitions import Experiment
from abflow.redact import one_line, redact, register_url

log = logging.getLogger(__name__)

DECISIONS = ("ship", "keep_running", "stop_inconclusive", "rollback", "investigate")
UNHEALTHY_STATUSES = {"unhealthy", "failed"}


def validate_gateway_url(url: str) -> str:
    """The URL with an http:// default scheme; ValueError when it is not a usable http(s) URL.

    The error quotes the URL with its credentials masked.
    """
    register_url(url if isinstance(url, str) else None)
    candidate = url.strip() if isinstance(url, str) else ""
    shown = redact(repr(url))
    if not candidate or any(ch.isspace() for ch in candidate):
        raise ValueError(f"malformed Pushgateway URL: {shown}")
    if "://" not in candidate:
        candidate = "http://" + candidate  # prometheus_client accepts bare host:port too
    try:
        parts = urlsplit(candidate)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"malformed Pushgateway URL: {shown} ({redact(exc)})") from None
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"malformed Pushgateway URL: {shown} (need http(s)://host[:port])")
    return candidate.rstrip("/")


def _auth(url: str) -> tuple[str, Any]:
    """The URL without its user:password, and the handler that sends them as Basic auth.

    urllib would otherwise read `user:password@host` as a host name (and quote the password in
    its error).
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, default_handler
    netloc = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=netloc))
    username, password = unquote(parts.username or ""), unquote(parts.password or "")

    def handler(url: str, method: str, timeout: float | None, headers: Any, data: bytes) -> Any:
        return basic_auth_handler(url, method, timeout, headers, data, username, password)

    return bare, handler


def _finite(value: Any) -> float | None:
    """A finite float or None, so NaN never reaches a gauge."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _gauges(registry: CollectorRegistry) -> dict[str, Gauge]:
    """The gauge families of one push, registered on a fresh registry."""
    specs = {
        "assigned": ("experiment_variant_assigned_total",
                     "Units assigned to each variant in the latest run (a gauge: it is reset "
                     "by each run's snapshot)", ["experiment", "variant"]),
        "sample": ("experiment_sample_size", "Units analysed in the latest run",
                   ["experiment"]),
        "mean": ("experiment_metric_mean", "Metric mean per variant in the latest run",
                 ["experiment", "metric", "variant"]),
        "conversion": ("experiment_conversion_rate",
                       "Primary metric mean per variant when it is a proportion",
                       ["experiment", "variant"]),
        "lift": ("experiment_relative_lift", "Relative lift of a treatment over control",
                 ["experiment", "metric", "variant"]),
        "p": ("experiment_p_value", "P-value (after any correction) of treatment vs control",
              ["experiment", "metric", "variant"]),
        "health": ("experiment_health_ok",
                   "1 when the latest run passed every critical health check, else 0",
                   ["experiment"]),
        "last_run": ("experiment_last_run_timestamp_seconds",
                     "Unix time the latest analysis run finished", ["experiment"]),
        "decision": ("experiment_decision",
                     "1 for the latest recommendation's decision, 0 for the others",
                     ["experiment", "decision"]),
    }
    return {k: Gauge(name, doc, labels, registry=registry) for k, (name, doc, labels)
            in specs.items()}


def _set_variant_metrics(
    g: dict[str, Gauge], key: str, insights: list[dict[str, Any]], proportion_primary: bool
) -> None:
    """Means, lifts and p-values from the overall-segment insights (error rows are skipped)."""
    for row in insights:
        if row.get("segment", "all") != "all" or row.get("error"):
            continue
        metric, variant, control = row["metric_key"], row["variant_key"], row["control_key"]
        means = {control: _finite(row.get("control_mean")),
                 variant: _finite(row.get("variant_mean"))}
        for v, mean in means.items():
            if mean is None:
                continue
            g["mean"].labels(key, metric, v).set(mean)
            if proportion_primary and row.get("metric_role") == "primary":
                g["conversion"].labels(key, v).set(mean)
        for gauge, column in (("lift", "rel_lift"), ("p", "p_value_adjusted")):
            value = _finite(row.get(column))
            if value is not None:
                g[gauge].labels(key, metric, variant).set(value)


def _health_ok(result: Mapping[str, Any]) -> bool:
    """No failed critical check and a run status that is not unhealthy or failed."""
    run = result.get("run") or {}
    failed = any(
        not c.get("passed") and c.get("severity") == "critical" for c in result.get("checks") or []
    )
    return not failed and run.get("status") not in UNHEALTHY_STATUSES


def _run_timestamp(run: Mapping[str, Any]) -> float | None:
    """When the run finished (started_at as a fallback), as Unix seconds."""
    when = run.get("finished_at") or run.get("started_at")
    return when.timestamp() if isinstance(when, datetime) else None


def build_registry(
    result: Mapping[str, Any], experiment: Experiment | None = None
) -> tuple[CollectorRegistry, int]:
    """A fresh registry holding one experiment's series, and how many series it holds."""
    registry = CollectorRegistry()
    g = _gauges(registry)
    run = result.get("run") or {}
    key = str(run.get("experiment_key"))
    units: Mapping[str, Any] = result.get("units") or {}
    for variant, n in units.items():
        g["assigned"].labels(key, variant).set(int(n or 0))
    total = run.get("units")
    g["sample"].labels(key).set(int(total) if total is not None else sum(int(n or 0) for n in
                                                                          units.values()))
    proportion = experiment is not None and experiment.primary_metric.kind == "proportion"
    _set_variant_metrics(g, key, list(result.get("insights") or []), proportion)
    g["health"].labels(key).set(1 if _health_ok(result) else 0)
    stamp = _run_timestamp(run)
    if stamp is not None:
        g["last_run"].labels(key).set(stamp)
    decision = (result.get("recommendation") or {}).get("decision")
    for d in DECISIONS:
        g["decision"].labels(key, d).set(1 if d == decision else 0)
    count = sum(len(family.samples) for family in registry.collect())
    return registry, count


def push_run_metrics(
    gateway_url: str,
    results: list[dict[str, Any]],
    *,
    job: str = "abflow",
    timeout: float = 5.0,
    experiments: Mapping[str, Experiment] | None = None,
) -> int:
    """Push each experiment's latest results (grouping key experiment=KEY); return series pushed.

    `results` is the list from `readback.latest_results()`. `experiments` (key -> definition)
    enables `experiment_conversion_rate`, which needs the primary metric's kind. A network or
    gateway error logs a warning and stops; the count of series pushed so far is returned
    (0 when the gateway is down). A malformed URL raises ValueError.
    """
    url, handler = _auth(validate_gateway_url(gateway_url))
    pushed = 0
    for result in results:
        key = str((result.get("run") or {}).get("experiment_key"))
        registry, count = build_registry(result, (experiments or {}).get(key))
        try:
            # PUT replaces the experiment's whole group, so series of removed variants vanish.
            push_to_gateway(url, job=job, registry=registry, grouping_key={"experiment": key},
                            timeout=timeout, handler=handler)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # Metrics are best effort: a down gateway must never fail the analysis run.
            log.warning("pushing metrics for %s to %s failed: %s", key, redact(url), one_line(exc))
            return pushed
        pushed += count
    return pushed
