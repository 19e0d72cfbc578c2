"""Latency of `abflow web` with 200 experiments and 10,000 runs in the result tables (issue 16).

Seeds schema `bench_web` (experiments through `upsert_experiments`, runs, recommendations,
insights, variant stats and health checks generated inside PostgreSQL), starts `abflow web` as a
subprocess on loopback exactly as an operator would, signs in, and measures with `wrk` (Debian's
package; a Lua `done` hook prints p50/p90/p95/p99) or, without wrk, a bounded Python client.

    .venv/bin/python -m benchmarks.web [--duration 15] [--connections 1 4] [--nice -10]
                                       [--database-url URL] [--python-client]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, text

from abflow.definitions import parse_experiment
from abflow.settings import Settings
from abflow.warehouse.engine import embedded_url, make_engine
from abflow.warehouse.experiments_repo import upsert_experiments
from abflow.warehouse.migrate import migrate
from abflow.warehouse.web_tokens import create_token

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = ROOT / "benchmarks" / ".data"
RESULTS_DIR = ROOT / "benchmarks" / "results"
SCHEMA = "bench_web"
EXPERIMENTS = 200
RUNS_PER_EXPERIMENT = 50  # 200 x 50 = 10,000 analysis runs
STATUSES = ("running", "running", "running", "stopped", "concluded", "draft")
console = Console(width=None if Console().is_terminal else 160)

# Runs, their rows and the audit, generated in the database: one run a day per experiment, a
# failed run now and then (the overview then shows the newest one that did not fail), an
# unhealthy one more rarely, 5 health checks, 2 variant-stats rows, 1 insight and 1
# recommendation per run that did not fail.
SEED_SQL = """
insert into analysis_runs (run_id, experiment_key, as_of, flow_run_id, started_at, finished_at,
    status, message, units, excluded_units, days_since_start)
select md5(e.experiment_key || d)::uuid, e.experiment_key, e.start_at + d * interval '1 day',
    null, e.start_at + d * interval '1 day', e.start_at + d * interval '1 day' + interval '9 s',
    case when (e.n * 7 + d) % 23 = 0 then 'failed' when (e.n + d) % 41 = 0 then 'unhealthy'
        else 'succeeded' end,
    case when (e.n * 7 + d) % 23 = 0 then 'warehouse timeout' else 'ok' end,
    400 * d, d % 5, d
from (select experiment_key, start_at, row_number() over (order by experiment_key) as n
      from experiments where experiment_key like 'bench_web_%') e,
    generate_series(1, :runs) d;

insert into variant_stats (run_id, experiment_key, metric_key, variant_key, segment, units, mean,
    variance, sum, sum_squares)
select r.run_id, r.experiment_key, 'conv', v.k, 'all', r.units / 2, 0.1, 0.09,
    r.units / 20, r.units / 20
from analysis_runs r, (values ('control'), ('b')) v(k)
where r.status <> 'failed' and r.experiment_key like 'bench_web_%';

insert into insights (run_id, experiment_key, as_of, metric_key, metric_role, variant_key,
    control_key, segment, method, control_units, variant_units, control_mean, variant_mean,
    abs_lift, abs_ci_low, abs_ci_high, rel_lift, rel_ci_low, rel_ci_high, p_value,
    p_value_adjusted, significant, chance_to_beat_control, expected_loss)
select r.run_id, r.experiment_key, r.as_of, 'conv', 'primary', 'b', 'control', 'all',
    'welch', r.units / 2, r.units / 2, 0.1, 0.104, 0.004, -0.002, 0.01, 0.04, -0.02, 0.1,
    0.2, 0.2, false, 0.8, 0.001
from analysis_runs r where r.status <> 'failed' and r.experiment_key like 'bench_web_%';

insert into health_checks (run_id, experiment_key, check_name, severity, passed, observed,
    threshold, details)
select r.run_id, r.experiment_key, c.name, c.severity,
    not (r.status = 'unhealthy' and c.name = 'srm'), 0.5, 0.001, '{}'::jsonb
from analysis_runs r, (values ('srm', 'critical'), ('multiple_exposure', 'warning'),
    ('min_sample', 'warning'), ('contamination', 'warning'), ('traffic', 'warning'))
    c(name, severity)
where r.status <> 'failed' and r.experiment_key like 'bench_web_%';

insert into recommendations (run_id, experiment_key, decision, variant_key, rationale,
    days_remaining, details)
select r.run_id, r.experiment_key,
    case when r.status = 'unhealthy' then 'investigate'
         when (length(r.experiment_key) + extract(day from r.as_of)::int) % 5 = 0 then 'ship'
         else 'keep_running' end,
    'b',
    'No significant difference on conv yet: b +4.0% (CI -2.0% to +10.0%, p=0.2). About '
        || (60 - extract(day from r.as_of)::int) || ' more days at the current traffic.',
    greatest(0, 60 - extract(day from r.as_of)::int), '{}'::jsonb
from analysis_runs r where r.status <> 'failed' and r.experiment_key like 'bench_web_%';
"""


def _definition(i: int) -> dict[str, Any]:
    return {
        "key": f"bench_web_{i:03d}",
        "name": f"Benchmark experiment {i}",
        "hypothesis": "Seeded for benchmarks/web.py",
        "status": STATUSES[i % len(STATUSES)],
        "start_at": f"2026-{1 + i % 9:02d}-01T00:00:00Z",
        "variants": [
            {"key": "control", "weight": 0.5, "control": True, "config": {"colour": "blue"}},
            {"key": "b", "weight": 0.5, "config": {"colour": "green"}},
        ],
        "metrics": [{"key": "conv", "kind": "proportion", "event": "purchase", "role": "primary"}],
    }


def seed(engine: Engine) -> dict[str, int]:
    """(Re)create the benchmark rows; returns table counts."""
    experiments = [parse_experiment(_definition(i)) for i in range(EXPERIMENTS)]
    with engine.begin() as conn:
        conn.execute(text("delete from analysis_runs where experiment_key like 'bench_web_%'"))
        conn.execute(text("delete from web_tokens where name like 'bench-%'"))
        upsert_experiments(conn, experiments)
        raw = conn.connection.dbapi_connection
        with raw.cursor() as cur:  # several statements, one bound value
            cur.execute(SEED_SQL.replace(":runs", str(RUNS_PER_EXPERIMENT)).encode())
        conn.execute(text("analyze"))
        tables = ("experiments", "analysis_runs", "recommendations", "insights", "health_checks")
        return {
            t: int(conn.execute(text(f"select count(*) from {t}")).scalar_one())  # noqa: S608
            for t in tables
        }


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_web(url: str, port: int, log: Path, nice: int = 0) -> subprocess.Popen[bytes]:
    """`abflow web` as a subprocess (at `nice` priority); returns once it answers."""
    env = {**os.environ, "ABFLOW_DATABASE_URL": url, "ABFLOW_SCHEMA": SCHEMA}
    prefix = ["nice", "-n", str(nice)] if nice else []
    proc = subprocess.Popen(
        [*prefix, str(Path(sys.executable).with_name("abflow")), "web", "--port", str(port)],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"abflow web exited: {log.read_text()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("abflow web did not start within 60 s")


def sign_in(port: int, token: str) -> str:
    """A browser session cookie for the token (GET /login, POST /login with its CSRF field)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/login")
    resp = conn.getresponse()
    page = resp.read().decode()
    cookie = resp.getheader("set-cookie", "").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf, "no CSRF field on /login"
    body = urllib.parse.urlencode({"csrf": csrf.group(1), "token": token, "next": "/"})
    conn.request("POST", "/login", body, {
        "Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie,
    })  # fmt: skip
    resp = conn.getresponse()
    resp.read()
    if resp.status != 303:
        raise RuntimeError(f"sign-in failed: HTTP {resp.status}")
    return str(resp.getheader("set-cookie", "")).split(";")[0]


WRK_SCRIPT = """
local path = os.getenv("BENCH_PATH")
local random_units = os.getenv("BENCH_RANDOM_UNITS") == "1"
math.randomseed(os.time())
request = function()
  local p = path
  if random_units then p = path .. "u" .. math.random(1, 1000000000) end
  return wrk.format("GET", p)
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d\\n", summary.requests,
    summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.max, summary.errors.status + summary.errors.connect
    + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def measure_wrk(port: int, path: str, header: str, connections: int, duration: int,
                random_units: bool, nice: int = 0) -> dict[str, Any]:  # fmt: skip
    """wrk on loopback; latencies in milliseconds."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_SCRIPT)
    prefix = ["nice", "-n", str(nice)] if nice else []
    cmd = [*prefix, "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "-s", f.name, "-H", header,
           f"http://127.0.0.1:{port}{path}"]  # fmt: skip
    env = {**os.environ, "BENCH_PATH": path, "BENCH_RANDOM_UNITS": "1" if random_units else "0"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    os.unlink(f.name)
    found = re.search(r"^RESULT (.+)$", out, re.M)
    assert found, out
    n, dur_us, p50, p90, p95, p99, pmax, errors = map(int, found.group(1).split())
    shown = " ".join([*cmd[:-1], f"http://127.0.0.1:PORT{path}"])
    return {"tool": "wrk", "requests": n, "rps": n / (dur_us / 1e6), "errors": errors,
            "p50": p50 / 1000, "p90": p90 / 1000, "p95": p95 / 1000, "p99": p99 / 1000,
            "max": pmax / 1000, "command": shown}  # fmt: skip


def measure_python(port: int, path: str, header: str, requests: int,
                   random_units: bool) -> dict[str, Any]:  # fmt: skip
    """A bounded sequential client (keep-alive), for machines without wrk."""
    name, _, value = header.partition(": ")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    times, errors = [], 0
    start = time.perf_counter()
    for _ in range(requests):
        p = path + (f"u{random.randint(1, 10**9)}" if random_units else "")
        t0 = time.perf_counter()
        conn.request("GET", p, headers={name: value})
        resp = conn.getresponse()
        resp.read()
        times.append((time.perf_counter() - t0) * 1000)
        errors += resp.status >= 400
    total = time.perf_counter() - start
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"tool": "python", "requests": requests, "rps": requests / total, "errors": errors,
            "p50": q[49], "p90": q[89], "p95": q[94], "p99": q[98], "max": max(times),
            "command": f"sequential http.client, {requests} requests"}  # fmt: skip


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.web", description=__doc__)
    p.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL URL; default: embedded server in benchmarks/.data/pgdata",
    )
    p.add_argument("--duration", type=int, default=15, help="seconds per wrk measurement")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    p.add_argument("--python-client", action="store_true", help="do not use wrk")
    p.add_argument("--requests", type=int, default=3000, help="requests per Python measurement")
    p.add_argument("--nice", type=int, default=0,
                   help="run abflow web and wrk at this niceness (negative: ahead of other "
                   "processes on a shared machine; needs root)")
    return p.parse_args(argv)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Seed, serve, measure, print and save."""
    args = parse_args(argv)
    url = args.database_url or embedded_url(DATA_DIR / "pgdata")
    engine = make_engine(Settings(database_url=url, ABFLOW_SCHEMA=SCHEMA))
    migrate(engine, SCHEMA)
    counts = seed(engine)
    with engine.begin() as conn:
        token = create_token(conn, "bench-reader", "read")
    engine.dispose()
    console.print(f"seeded {counts}")
    use_wrk = shutil.which("wrk") is not None and not args.python_client
    port = _free_port()
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    proc = start_web(url, port, RESULTS_DIR / f"web-{stamp}-server.log", args.nice)
    results: list[dict[str, Any]] = []
    try:
        cookie = sign_in(port, token)
        targets = [
            ("GET /api/assign/{key}/{unit}", "/api/assign/bench_web_007/", f"Authorization: Bearer {token}", True),  # noqa: E501
            ("GET /api/config/{key}", "/api/config/bench_web_007", f"Authorization: Bearer {token}", False),  # noqa: E501
            ("GET / (dashboard, signed in)", "/", f"Cookie: {cookie}", False),
            ("GET /api/experiments", "/api/experiments", f"Authorization: Bearer {token}", False),
        ]  # fmt: skip
        for label, path, header, random_units in targets:
            for c in args.connections if use_wrk else [1]:
                load = os.getloadavg()[0]
                cpu0 = _cpu_seconds(proc.pid)
                if use_wrk:
                    # 2 s of warm-up (caches, connection pool), then the measurement
                    measure_wrk(port, path, header, c, 2, random_units, args.nice)
                    r = measure_wrk(port, path, header, c, args.duration, random_units, args.nice)
                else:
                    measure_python(port, path, header, 200, random_units)
                    r = measure_python(port, path, header, args.requests, random_units)
                # includes the warm-up's requests, so only an upper bound of the cost
                cpu = _cpu_seconds(proc.pid) - cpu0
                r.update(endpoint=label, connections=c, load_before=load, nice=args.nice,
                         server_cpu_ms_per_request=1000 * cpu / r["requests"])  # fmt: skip
                results.append(r)
                console.print(f"{label} c={c}: p50 {r['p50']:.2f} p95 {r['p95']:.2f} "
                              f"p99 {r['p99']:.2f} ms, {r['rps']:.0f} req/s")  # fmt: skip
    finally:
        proc.terminate()
        proc.wait(10)
    table = Table("endpoint", "conns", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                  "errors", "server CPU ms/req", "load")  # fmt: skip
    for r in results:
        table.add_row(r["endpoint"], str(r["connections"]), f"{r['requests']:,}",
                      f"{r['rps']:.0f}", f"{r['p50']:.2f}", f"{r['p95']:.2f}", f"{r['p99']:.2f}",
                      f"{r['max']:.1f}", str(r["errors"]), f"{r['server_cpu_ms_per_request']:.2f}",
                      f"{r['load_before']:.1f}")  # fmt: skip
    console.print(table)
    out = RESULTS_DIR / f"web-{stamp}.json"
    out.write_text(json.dumps({
        "stamp": stamp, "counts": counts, "results": results, "cpus": os.cpu_count(),
        "platform": platform.platform(), "load_after": os.getloadavg(),
    }, indent=2))  # fmt: skip
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
