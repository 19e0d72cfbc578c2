"""Prefect's temporary API server, started before the CLI's heavy imports so its boot overlaps them.

Without an API URL, Prefect starts a temporary server on the first flow call and waits for it
(4.7 s measured on 2 cores), after the process spent ~5 s importing Prefect, GX and SciPy. This
module starts the same server (the command Prefect's `SubprocessASGIServer` runs) as the very
first thing, lets the imports run while it boots, and points `PREFECT_API_URL` at it. Measured
with `benchmarks/` (`abflow run` at 1M events): see benchmarks/README.md.

Booting that server costs ~3.5 s of CPU (importing Prefect's API), more than a small analysis
takes, so by default the server is *kept*: the first run starts it detached under a small
watchdog (`python -m abflow.prefect_daemon`), records it in `$PREFECT_HOME/abflow-server.json`,
and later runs reuse it; the watchdog stops it after `ABFLOW_PREFECT_SERVER_IDLE_MINUTES` (15)
without a run. `0` restores a temporary server per run; `abflow server stop` stops a kept one.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_FALSE = {"0", "false", "no", "off"}


def wanted(environ: dict[str, str] | None = None, prefect_home: Path | None = None) -> bool:
    """True when Prefect would start a temporary server itself (no API URL configured anywhere)."""
    env = os.environ if environ is None else environ
    if env.get("PREFECT_API_URL"):
        return False
    if env.get("PREFECT_SERVER_EPHEMERAL_ENABLED", "true").strip().lower() in _FALSE:
        return False
    # A profile may set the API URL; leave that case to Prefect rather than re-implement its
    # profile resolution (a text check errs towards not starting a server).
    home = prefect_home or Path(env.get("PREFECT_HOME") or Path.home() / ".prefect")
    profiles = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml")
    try:
        return "PREFECT_API_URL" not in profiles.read_text(encoding="utf-8")
    except OSError:
        return True


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prefect_parent_dir() -> str:
    """The directory holding the `prefect` package, found without importing it (~1 s)."""
    spec = importlib.util.find_spec("prefect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("prefect is not installed")
    return str(Path(next(iter(spec.submodule_search_locations))).parent)


def server_command(port: int) -> list[str]:
    """The command Prefect's own SubprocessASGIServer runs for a temporary server."""
    return [
        sys.executable, "-m", "uvicorn",
        "--app-dir", _prefect_parent_dir(),
        "--factory", "prefect.server.api.server:create_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip


def server_env() -> dict[str, str]:
    """The environment Prefect's SubprocessASGIServer gives a temporary server (no UI)."""
    return {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether a Prefect API answers /health."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _drain_prefect_workers() -> None:
    """Send Prefect's queued logs and events before the server stops (as prefect_test_harness).

    Otherwise they are sent at interpreter exit to a server that is gone, and the retries hold
    the process for over a minute.
    """
    if "prefect" not in sys.modules:
        return
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    for worker in (APILogWorker, EventsWorker):
        try:
            worker.drain_all(timeout=5)
        except Exception:  # never let shutdown bookkeeping hide the command's own outcome
            continue


@contextmanager
def early_server(
    timeout_seconds: float = 120.0, keep_seconds: float = 0.0
) -> Iterator[Callable[[], None]]:
    """Start the server now; yield `wait()` (call it before the first flow); stop it on exit.

    `keep_seconds` > 0: reuse the kept server or start one that outlives this process and stops
    after that long without a run. A no-op (wait() returns at once) when an API URL is
    configured or temporary servers are off.
    """
    if not wanted():
        yield lambda: None
        return
    if keep_seconds > 0:
        with _kept_server(timeout_seconds, keep_seconds) as kept_wait:
            yield kept_wait
        return
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    process = subprocess.Popen(server_command(port), env=server_env())
    os.environ["PREFECT_API_URL"] = api_url

    def exited() -> str | None:
        code = process.poll()
        return None if code is None else f"temporary Prefect server exited with code {code}"

    try:
        yield _waiter(api_url, timeout_seconds, exited, "temporary")
    finally:
        _drain_prefect_workers()
        os.environ.pop("PREFECT_API_URL", None)
        stop_process(process, 5.0)


def _waiter(
    api_url: str, timeout_seconds: float, exited: Callable[[], str | None], kind: str
) -> Callable[[], None]:
    """wait(): until the server answers; raises when it died (`exited` says how) or timed out."""

    def wait() -> None:
        deadline = time.monotonic() + timeout_seconds
        while not healthy(api_url):
            died = exited()
            if died is not None:
                raise RuntimeError(f"{died} on start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{kind} Prefect server not ready after {timeout_seconds} s")
            time.sleep(0.1)

    return wait


def stop_process(process: subprocess.Popen[bytes], timeout_seconds: float) -> None:
    """SIGTERM, then SIGKILL after `timeout_seconds`; reaped either way."""
    process.terminate()
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- the kept server ----------------------------------------------------------------------------

STATE_FILE = "abflow-server.json"
LEASE_FILE = "abflow-server.lease"  # its mtime is the last use; runs touch it while they last
LOCK_FILE = "abflow-server.lock"
LOG_FILE = "abflow-server.log"


def prefect_home(environ: dict[str, str] | None = None) -> Path:
    """PREFECT_HOME as Prefect resolves it (default ~/.prefect), without importing Prefect."""
    env = os.environ if environ is None else environ
    return Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def fingerprint(home: Path) -> dict[str, str]:
    """What a kept server must share with this process to be reused: interpreter, Prefect, DB."""
    return {
        "python": sys.executable,
        "prefect": _prefect_parent_dir(),
        "home": str(home.resolve()),
        "database": os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL", ""),
    }


@contextmanager
def state_lock(home: Path) -> Iterator[None]:
    """Serialise finding, starting and stopping the kept server (CLI runs and its watchdog)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_state(home: Path) -> dict[str, Any] | None:
    """The kept server's record (pid, server_pid, api_url, fingerprint), None if there is none."""
    try:
        state = json.loads((home / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def touch_lease(home: Path) -> None:
    """Mark the kept server as used now (its watchdog measures idleness from this)."""
    (home / LEASE_FILE).touch()


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        # a watchdog this process started and that has exited is a zombie until reaped
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def stop_kept_server(
    home: Path | None = None, timeout_seconds: float = 10.0
) -> dict[str, Any] | None:
    """Stop the kept server of this PREFECT_HOME (if any); return its record."""
    home = home or prefect_home()
    with state_lock(home):
        state = read_state(home)
        if state is None:
            return None
        pids = _forget_and_signal(home, state)
    # waited outside the lock: the watchdog takes it on its way out
    deadline = time.monotonic() + timeout_seconds
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            _signal(pid, signal.SIGKILL)
    return state


def _forget_and_signal(home: Path, state: dict[str, Any]) -> list[int]:
    """Forget a recorded server and SIGTERM its watchdog and server (caller holds the lock)."""
    (home / STATE_FILE).unlink(missing_ok=True)
    pids = [p for p in (int(state.get("pid", 0)), int(state.get("server_pid", 0))) if p > 0]
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    return pids


def _start_kept(home: Path, keep_seconds: float) -> dict[str, Any]:
    """Start the watchdog (which starts the server), detached from this process and terminal."""
    port = _free_port()
    state = {
        "api_url": f"http://127.0.0.1:{port}/api",
        "port": port,
        "idle_seconds": keep_seconds,
        "started_at": time.time(),
        "fingerprint": fingerprint(home),
    }
    command = [
        sys.executable, "-m", "abflow.prefect_daemon",
        "--home", str(home), "--port", str(port), "--idle-seconds", str(keep_seconds),
    ]  # fmt: skip
    with open(home / LOG_FILE, "ab") as log:
        # its own session: ^C in this terminal and the end of this process leave it running;
        # no inherited pipes, so a caller reading our output is never held open by it
        daemon = subprocess.Popen(
            command,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    state["pid"] = daemon.pid
    (home / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    return state


@contextmanager
def _kept_server(timeout_seconds: float, keep_seconds: float) -> Iterator[Callable[[], None]]:
    """Reuse this PREFECT_HOME's kept server, or start one; keep its lease fresh meanwhile."""
    home = prefect_home()
    with state_lock(home):
        state = read_state(home)
        reuse = (
            state is not None
            and state.get("fingerprint") == fingerprint(home)
            and _alive(int(state.get("pid", 0)))
            # still booting for another run (wait() below waits for it), or answering
            and (
                time.time() - float(state.get("started_at", 0)) < timeout_seconds
                or healthy(str(state["api_url"]), timeout=1.0)
            )
        )
        if state is not None and not reuse:
            # crashed, unresponsive, or another interpreter's: replaced, never waited on
            _forget_and_signal(home, state)
        if not reuse:
            state = _start_kept(home, keep_seconds)
        assert state is not None
        touch_lease(home)
    api_url = str(state["api_url"])
    daemon_pid = int(state["pid"])
    os.environ["PREFECT_API_URL"] = api_url
    stop = threading.Event()

    def keep_leased() -> None:
        # a run longer than the idle period must not see its server stopped under it
        while not stop.wait(max(min(30.0, keep_seconds / 3), 0.2)):
            touch_lease(home)

    lease = threading.Thread(target=keep_leased, name="abflow-server-lease", daemon=True)
    lease.start()

    def exited() -> str | None:
        alive = _alive(daemon_pid)
        return None if alive else f"kept Prefect server exited (see {home / LOG_FILE})"

    try:
        yield _waiter(api_url, timeout_seconds, exited, "kept")
    finally:
        _drain_prefect_workers()
        stop.set()
        touch_lease(home)
        os.environ.pop("PREFECT_API_URL", None)
