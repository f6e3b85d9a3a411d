"""One periodic thread: every sampler of a run (host, cgroup, the target's death watch) ticks on it.

Each tick is due ``every_s`` after the last was due. A tick that ran late (the GIL was busy, the
machine was saturated) is not followed by a burst of catch-up ticks: the next is at least half
an interval away, and the samplers divide by the interval they measured, so a late sample is
still exact, only later. A tick that raises is noted (``error``), never allowed to break a run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Periodic:
    """Calls ``tick`` every ``every_s`` seconds in a daemon thread, from ``start`` to ``stop``."""

    def __init__(self, tick: Callable[[], None], *, every_s: float, name: str) -> None:
        self.every_s = every_s
        self.error: str | None = None  # the last tick's exception, as one line
        self._tick = tick
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start ticking; the first tick comes ``every_s`` from now."""
        if self._thread is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop ticking and wait for a tick under way; safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5 * self.every_s + 5)
            self._thread = None

    def _loop(self) -> None:
        due = time.monotonic() + self.every_s
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due = max(due + self.every_s, time.monotonic() + self.every_s / 2)
            try:
                self._tick()
            except Exception as exc:  # sampling must never break a run: note it, go on
                self.error = f"{type(exc).__name__}: {exc}"
