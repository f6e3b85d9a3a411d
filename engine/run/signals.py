"""SIGTERM handled like Ctrl-C: what a CI job's cancel, ``timeout`` or ``kill`` sends.

Python's default for SIGTERM is to die on the spot, skipping every ``finally`` and ``with``
exit: the clients, the proxy and the target would be left running and the report unwritten.
Inside :func:`terminate_as_interrupt` SIGTERM raises :class:`Terminated` instead, so the code
unwinds exactly as it does on Ctrl-C, stops what it started and writes what it has.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class Terminated(Exception):
    """SIGTERM arrived; the message is the signal's name."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` in the main thread; restored afterwards."""

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Terminated(signal.Signals(signum).name)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
