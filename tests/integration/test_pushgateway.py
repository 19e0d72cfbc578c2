"""push_run_metrics against a real Prometheus Pushgateway on loopback (skipped without it)."""

from __future__ import annotations

import copy
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, text

from abflow.definitions import Experiment
from abflow.metrics_push import push_run_metrics
from tests.integration.conftest import DEMO_AS_OF

# Asks --dist loadgroup to run the module on one worker so its fixtures are built once.
pytestmark = pytest.mark.xdist_group("pushgateway")

BINARY = "/usr/bin/prometheus-pushgateway"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
# The two cheapest demo experiments: a proportion and a mean primary metric, 2 and 3 variants.
KEYS = ("enrichment_strategy", "followup_timing")


def _free_port() -> int:
    """A currently free loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(url: str) -> str:
    """The gateway's /metrics text."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=2) as resp:
        return str(resp.read().decode())


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it does not exit within five seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A Pushgateway on a free loopback port; yields its base URL."""
    binary = shutil.which(BINARY) or shutil.which("prometheus-pushgateway") \
        or shutil.which("pushgateway")
    if binary is None:
        pytest.skip("prometheus-pushgateway is not installed "
                    "(apt-get install -y prometheus-pushgateway)")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        # Debian's build persists to /var/lib/prometheus by default: keep this one in memory.
        [binary, f"--web.listen-address=127.0.0.1:{port}", "--persistence.file="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                _scrape(url)
                break
            except (urllib.error.URLError, OSError):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"pushgateway did not come up on {url} (exit {proc.poll()})")
                time.sleep(0.1)
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def latest(engine: Engine, demo_loaded: dict[str, Any]) -> dict[str, Any]:
    """One run per experiment in KEYS at DEMO_AS_OF (replaces, so idempotent), read back."""
    from abflow.pipeline import assemble_result
    from abflow.warehouse import extract
    from abflow.warehouse.readback import latest_results
    from abflow.warehouse.writer import write_result

    experiments: dict[str, Experiment] = {k: demo_loaded["experiments"][k] for k in KEYS}
    for e in experiments.values():
        with engine.begin() as conn:
            stats = extract.fetch_sufficient_stats(
                conn, e, DEMO_AS_OF, assignments="assignments", events="events"
            )
            expo = extract.fetch_exposure_summary(conn, e, DEMO_AS_OF, assignments="assignments")
            write_result(conn, assemble_result(
                run_id=uuid.uuid4(), experiment=e, as_of=DEMO_AS_OF, flow_run_id=None,
                started_at=DEMO_AS_OF, finished_at=DEMO_AS_OF, stats=stats, exposure=expo,
                quality_checks=[],
            ))
    with engine.connect() as conn:
        results = latest_results(conn, sorted(experiments))
    return {"results": results, "experiments": experiments}


def _samples(body: str) -> Samples:
    """Scraped experiment_* samples keyed by (name, labels without job/instance)."""
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name.startswith("experiment_"):
                labels = {k: v for k, v in s.labels.items() if k not in {"job", "instance"}}
                out[(s.name, frozenset(labels.items()))] = s.value
    return out


def _get(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value."""
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture(scope="module")
def pushed(gateway: str, latest: dict[str, Any]) -> dict[str, Any]:
    """The demo results pushed once, and the gateway scraped back."""
    count = push_run_metrics(gateway, latest["results"], experiments=latest["experiments"])
    return {"count": count, "samples": _samples(_scrape(gateway))}


def test_units_per_variant_match_the_table(
    pushed: dict[str, Any], latest: dict[str, Any], engine: Engine
) -> None:
    """experiment_variant_assigned_total equals variant_stats units of the latest run."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "select vs.experiment_key, vs.variant_key, max(vs.units) from variant_stats vs"
            " join latest_runs r using (run_id) where vs.segment = 'all'"
            " and vs.experiment_key = any(:keys) group by 1, 2"
        ), {"keys": list(KEYS)}).all()
    assert len(rows) == 5  # 3 + 2 variants
    for key, variant, units in rows:
        got = _get(pushed["samples"], "experiment_variant_assigned_total",
                   experiment=str(key), variant=str(variant))
        assert got == units
    for res in latest["results"]:
        key = res["run"]["experiment_key"]
        assert _get(pushed["samples"], "experiment_sample_size", experiment=key) \
            == res["run"]["units"]


def test_lifts_p_values_means_and_conversion(
    pushed: dict[str, Any], latest: dict[str, Any]
) -> None:
    """Per metric and treatment: lift, p-value and both means; conversion for proportions."""
    s = pushed["samples"]
    for res in latest["results"]:
        key = res["run"]["experiment_key"]
        exp: Experiment = latest["experiments"][key]
        for i in res["insights"]:
            labels = {"experiment": key, "metric": i["metric_key"], "variant": i["variant_key"]}
            assert _get(s, "experiment_relative_lift", **labels) == pytest.approx(i["rel_lift"])
            assert _get(s, "experiment_p_value", **labels) == pytest.approx(i["p_value_adjusted"])
            assert _get(s, "experiment_metric_mean", **labels) == pytest.approx(i["variant_mean"])
            control = {**labels, "variant": i["control_key"]}
            assert _get(s, "experiment_metric_mean", **control) == pytest.approx(i["control_mean"])
            if i["metric_role"] == "primary" and exp.primary_metric.kind == "proportion":
                assert _get(s, "experiment_conversion_rate", experiment=key,
                            variant=i["variant_key"]) == pytest.approx(i["variant_mean"])
    conversion = {dict(labels)["experiment"] for (name, labels) in s
                  if name == "experiment_conversion_rate"}
    assert conversion == {"followup_timing"}  # enrichment's primary metric is a mean


def test_health_decision_and_timestamp(pushed: dict[str, Any], latest: dict[str, Any]) -> None:
    """Health flag, one-hot decision and the run's finish time per experiment."""
    s = pushed["samples"]
    for res in latest["results"]:
        key = res["run"]["experiment_key"]
        healthy = res["run"]["status"] == "succeeded" and not any(
            not c["passed"] and c["severity"] == "critical" for c in res["checks"])
        assert _get(s, "experiment_health_ok", experiment=key) == (1.0 if healthy else 0.0)
        decision = res["recommendation"]["decision"]
        assert _get(s, "experiment_decision", experiment=key, decision=decision) == 1.0
        ones = [dict(lb)["decision"] for (name, lb), v in s.items()
                if name == "experiment_decision" and dict(lb)["experiment"] == key and v == 1.0]
        assert ones == [decision]
        assert _get(s, "experiment_last_run_timestamp_seconds", experiment=key) \
            == res["run"]["finished_at"].timestamp()


def test_count_matches_scraped_series(pushed: dict[str, Any]) -> None:
    """The returned count is the number of experiment_* series on the gateway."""
    assert pushed["count"] == len(pushed["samples"]) > 0


def test_repush_replaces_the_experiment_group(
    gateway: str, pushed: dict[str, Any], latest: dict[str, Any]
) -> None:
    """A push replaces the experiment's group: a variant gone from the results disappears."""
    res = copy.deepcopy(next(r for r in latest["results"]
                             if r["run"]["experiment_key"] == "enrichment_strategy"))
    res["units"].pop("hybrid")
    push_run_metrics(gateway, [res])
    samples = _samples(_scrape(gateway))
    names = {(n, dict(lb).get("variant")) for (n, lb) in samples
             if dict(lb)["experiment"] == "enrichment_strategy"}
    assert ("experiment_variant_assigned_total", "hybrid") not in names
    assert ("experiment_variant_assigned_total", "free_only") in names
    # the other experiments' groups are untouched
    assert _get(samples, "experiment_health_ok", experiment="followup_timing") in (0.0, 1.0)
    push_run_metrics(gateway, latest["results"], experiments=latest["experiments"])


def test_gateway_down_returns_zero(
    latest: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """A refused connection logs a warning and returns 0 instead of raising."""
    url = f"http://127.0.0.1:{_free_port()}"
    assert push_run_metrics(url, latest["results"], timeout=1.0) == 0
    assert any("failed" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


@pytest.mark.parametrize("url", ["", "http://", "ftp://127.0.0.1:9091", "http://127.0.0.1:notaport",
                                 "http://127.0.0.1:99999", "http://exa mple:9091"])
def test_malformed_url_raises(url: str) -> None:
    """A malformed URL is a configuration error and raises before any network use."""
    with pytest.raises(ValueError, match="malformed Pushgateway URL"):
        push_run_metrics(url, [])


@pytest.mark.parametrize("url", ["http://pg:PUSHSECRET@127.0.0.1:notaport",
                                 "ftp://pg:PUSHSECRET@127.0.0.1:9091",
                                 "http://pg:PUSHSECRET@exa mple:9091"])
def test_malformed_url_error_masks_the_password(url: str) -> None:
    with pytest.raises(ValueError, match="malformed Pushgateway URL") as info:
        push_run_metrics(url, [])
    assert "PUSHSECRET" not in str(info.value) and "pg:***@" in str(info.value)


def test_credentials_in_the_url_are_sent_as_basic_auth(
    latest: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """user:password@ goes out as an Authorization header, never as part of the host."""
    import base64
    import http.server
    import threading

    seen: list[tuple[str, str | None]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # http.server's method naming
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append((self.path, self.headers.get("Authorization")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        count = push_run_metrics(f"http://ops:p%40ss%3Aword@127.0.0.1:{port}",
                                 latest["results"][:1])
    finally:
        server.shutdown()
        thread.join()
    assert count > 0
    expected = "Basic " + base64.b64encode(b"ops:p@ss:word").decode()
    assert seen and all(auth == expected for _, auth in seen)
    assert all(path.startswith("/metrics/job/abflow/") for path, _ in seen)
    # and when that gateway is gone, the warning names it without the password
    push_run_metrics(f"http://ops:p%40ss%3Aword@127.0.0.1:{port}", latest["results"][:1],
                     timeout=1.0)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings and not any("p%40ss" in w or "p@ss" in w for w in warnings)
