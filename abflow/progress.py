"""In-process progress events: flows emit, the CLI listens (no listener means no-op)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Listener = Callable[[str, dict[str, Any]], None]
_listeners: list[Listener] = []
_lock = threading.Lock()


def emit(event: str, **data: Any) -> None:
    """Tell every listener about a step (e.g. 'experiment_done', 'day_started')."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(event, data)


@contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Register a listener for the duration of a block."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)
