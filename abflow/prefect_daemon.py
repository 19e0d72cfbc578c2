"""Watchdog of the kept Prefect server: runs it, stops it after an idle period.

Started detached by `abflow.prefect_server` (`python -m abflow.prefect_daemon --home H --port P
--idle-seconds S`). It starts the same uvicorn command Prefect uses for its temporary server and
stops it once `$PREFECT_HOME/abflow-server.lease` has not been touched for S seconds (CLI runs
touch it when they start, every few seconds while they run, and when they end), on SIGTERM
(`abflow server stop`), or when the server dies; then it removes the record so the next run
starts a fresh one. Deliberately light: no Prefect, no abflow settings.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from abflow.prefect_server import (
    LEASE_FILE,
    STATE_FILE,
    read_state,
    server_command,
    server_env,
    state_lock,
    stop_process,
)


def idle_for(home: Path) -> float:
    """Seconds since the lease was last touched (a missing lease counts as idle since now)."""
    try:
        return time.time() - (home / LEASE_FILE).stat().st_mtime
    except OSError:
        return 0.0


def main(argv: list[str] | None = None) -> int:
    """Run the server until idle, signalled or dead; forget its record on the way out."""
    parser = argparse.ArgumentParser(prog="python -m abflow.prefect_daemon")
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-seconds", type=float, required=True)
    args = parser.parse_args(argv)
    home: Path = args.home
    stopping = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = subprocess.Popen(server_command(args.port), env=server_env())
    with state_lock(home):
        state = read_state(home)
        if state is not None and state.get("port") == args.port:
            state["server_pid"] = server.pid
            (home / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    poll = min(5.0, max(args.idle_seconds / 4, 0.2))
    reason = "signal"
    while not stopping.wait(poll):
        if server.poll() is not None:
            reason = f"server exited with code {server.returncode}"
            break
        if idle_for(home) > args.idle_seconds:
            # re-checked under the lock: a run that just chose this server touched the lease
            with state_lock(home):
                if idle_for(home) > args.idle_seconds:
                    _forget(home, args.port)
                    reason = f"idle for {args.idle_seconds:g} s"
                    break
    stop_process(server, 10.0)
    with state_lock(home):
        _forget(home, args.port)
    sys.stderr.write(f"abflow kept Prefect server on port {args.port} stopped: {reason}\n")
    return 0


def _forget(home: Path, port: int) -> None:
    """Remove the record if it still describes this watchdog's server (caller holds the lock)."""
    state = read_state(home)
    if state is not None and state.get("port") == port:
        (home / STATE_FILE).unlink(missing_ok=True)


if __name__ == "__main__":
    raise SystemExit(main())
