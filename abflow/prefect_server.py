"""Prefect's temporary API server, started before the CLI's heavy imports so its boot overlaps them.

Without an API URL, Prefect starts a temporary server on the first flow call and waits for it
(4.7 s measured on 2 cores), after the process spent ~5 s importing Prefect, GX and SciPy. This
module starts the same server (the command Prefect's `SubprocessASGIServer` runs) as the very
first thing, lets the imports run while it boots, and points `PREFECT_API_URL` at it. Measured
with `benchmarks/` (`abflow run` at 1M events): see benchmarks/README.md.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

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


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
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
def early_server(timeout_seconds: float = 120.0) -> Iterator[Callable[[], None]]:
    """Start the server now; yield `wait()` (call it before the first flow); stop it on exit.

    A no-op (wait() returns at once) when an API URL is configured or temporary servers are off.
    """
    if not wanted():
        yield lambda: None
        return
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    # The same command and environment Prefect's SubprocessASGIServer uses.
    env = {
        **os.environ,
        "PREFECT_UI_ENABLED": "0",
        "PREFECT__SERVER_EPHEMERAL": "1",
        "PREFECT__SERVER_FINAL": "1",
    }
    command = [
        sys.executable, "-m", "uvicorn",
        "--app-dir", _prefect_parent_dir(),
        "--factory", "prefect.server.api.server:create_app",
        "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "error", "--lifespan", "on",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    os.environ["PREFECT_API_URL"] = api_url

    def wait() -> None:
        deadline = time.monotonic() + timeout_seconds
        while not _healthy(api_url):
            if process.poll() is not None:
                raise RuntimeError(
                    f"temporary Prefect server exited with code {process.returncode} on start-up"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"temporary Prefect server not ready after {timeout_seconds} s")
            time.sleep(0.1)

    try:
        yield wait
    finally:
        _drain_prefect_workers()
        os.environ.pop("PREFECT_API_URL", None)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
