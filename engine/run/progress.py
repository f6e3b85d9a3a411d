"""Live progress while a run goes: where it is, what it launched, what the index answers.

On a terminal: one status line rewritten in place every second. Elsewhere (CI logs, a pipe): a
plain line a minute, so a 24-minute run logs 24 lines, not 1440. ``--quiet`` silences both.

The current p95 per operation comes from the tail of ``requests.jsonl``: the file is read
incrementally from where the last update stopped (a run of hours never re-reads its log), and the
percentiles cover the requests that arrived in the last ``window_s`` seconds (at least 10 s, at
least one update interval), so the line says how the index is doing now, not on average.
"""

from __future__ import annotations

import json
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from pipstorm.engine.analysis.stats import is_error, percentile
from pipstorm.engine.rundir.jsonl import RecordError
from pipstorm.engine.rundir.records import request_from_json

TTY_EVERY_S = 1.0
PLAIN_EVERY_S = 60.0
MIN_WINDOW_S = 10.0
_CLEAR_EOL = "\x1b[K"


def to_stderr(line: str) -> None:
    """Say one line on stderr at once: what a run, a lab or a sharded run says by default."""
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class RunCounts:
    """The client runs so far, as the engine knows them at one moment."""

    launched: int  # due by now (the worker launches each at its intended time)
    in_flight: int  # launched and not reported yet
    finished: int
    failed: int  # finished with an outcome other than ok


class RequestTail:
    """Reads the lines appended to ``requests.jsonl`` since the last call."""

    def __init__(self, path: Path, window_s: float) -> None:
        self.path = path
        self.window_s = window_s
        self._offset = 0
        self._partial = b""
        self._recent: deque[tuple[float, str, float]] = deque()
        self.total = 0
        self.errors = 0

    def poll(self) -> None:
        """Take in the complete lines appended since the last poll (a cut line waits)."""
        try:
            with self.path.open("rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except FileNotFoundError:
            return
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()  # b"" after a complete last line
        now = time.monotonic()
        for raw in lines:
            try:
                record = request_from_json(json.loads(raw))
            except (ValueError, RecordError, TypeError, AttributeError):
                continue
            self.total += 1
            self.errors += is_error(record)
            self._recent.append((now, record.op, record.total_ms))
        while self._recent and self._recent[0][0] < now - self.window_s:
            self._recent.popleft()

    def p95_by_op(self) -> dict[str, float]:
        """p95 of total_ms per operation over the window."""
        by_op: dict[str, list[float]] = {}
        for _, op, ms in self._recent:
            by_op.setdefault(op, []).append(ms)
        return {op: percentile(sorted(values), 95) for op, values in sorted(by_op.items())}


class LiveProgress:
    """Renders progress lines; call :meth:`update` often (it decides when to print) and
    :meth:`close` at the end."""

    def __init__(
        self,
        requests_path: Path,
        *,
        planned_s: float,
        t0_mono: float,
        emit: Callable[[str], None],
        tty: TextIO | None = None,
        quiet: bool = False,
    ) -> None:
        self.planned_s = planned_s
        self.t0_mono = t0_mono
        self._emit = emit
        self._tty = tty
        self.quiet = quiet
        self.every_s = TTY_EVERY_S if tty is not None else PLAIN_EVERY_S
        self._tail = RequestTail(requests_path, max(MIN_WINDOW_S, self.every_s))
        self._next = time.monotonic() + self.every_s
        self._drawn = False

    def update(self, counts: RunCounts, *, force: bool = False) -> None:
        """Print a line if one is due (or ``force``)."""
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.every_s
        self._tail.poll()
        line = self.render(counts)
        if self._tty is not None:
            self._tty.write("\r" + line + _CLEAR_EOL)
            self._tty.flush()
            self._drawn = True
        else:
            self._emit(line)

    def render(self, counts: RunCounts) -> str:
        """The status line for ``counts`` and the requests read so far."""
        elapsed = min(max(0.0, time.monotonic() - self.t0_mono), self.planned_s)
        p95 = self._tail.p95_by_op()
        latency = ", ".join(f"{op} {ms:.0f}" for op, ms in p95.items()) or "-"
        return (
            f"[{elapsed:5.0f}/{self.planned_s:.0f} s] runs {counts.launched} launched, "
            f"{counts.in_flight} in flight, {counts.failed} failed | "
            f"{self._tail.total} requests, {self._tail.errors} errors | p95 ms: {latency}"
        )

    def close(self) -> None:
        """End the status line so what follows starts on a line of its own."""
        if self._tty is not None and self._drawn:
            self._tty.write("\n")
            self._tty.flush()
            self._drawn = False
