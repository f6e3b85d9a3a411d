"""Does a long run leave pipstorm as it found it? Memory, descriptors and records over time.

A load generator that leaks is measuring itself by the end of a 24-minute profile: a proxy whose
RSS climbs swaps, an engine that keeps a descriptor per finished run runs out of them. Over a
long run (``make soak``), the resident memory and open descriptors of the engine, the proxy and
the pool's workers (``host.jsonl``, sampled every second) must be flat once warmed up, every
client run that succeeded must have requests recorded under its id, and no request may be left
unattributed or its line lost.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import CLIENTS_FILE, REQUESTS_FILE
from pipstorm.engine.rundir.host import HostRow, number

#: Groups of host.jsonl judged (the clients come and go; the target is not pipstorm's).
GROUPS = ("engine", "proxy", "pool")
#: Seconds at the start left out (imports, pools and caches filling), and the window compared.
WARM_UP_S = 60.0
WINDOW_S = 60.0


@dataclass(frozen=True)
class Growth:
    """One group's figure at the start (after warm-up) and at the end, medians of a window."""

    group: str
    figure: str  # rss_mb or fds
    start: float
    end: float

    @property
    def growth(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class SteadyState:
    growth: tuple[Growth, ...]
    ok_runs_without_requests: tuple[str, ...]
    unattributed_requests: int
    skipped_lines: int

    def worst(self, figure: str) -> float:
        """The largest growth of ``figure`` over the groups (0 when none was measured)."""
        return max((g.growth for g in self.growth if g.figure == figure), default=0.0)


def steady_state(data: RunData) -> SteadyState:
    """The figures a soak judges, from a results folder read once."""
    rows = list(data.host)
    growth: list[Growth] = []
    if rows:
        t0, t1 = float(rows[0]["ts"]), float(rows[-1]["ts"])
        start = [r for r in rows if t0 + WARM_UP_S <= float(r["ts"]) < t0 + WARM_UP_S + WINDOW_S]
        end = [r for r in rows if float(r["ts"]) > t1 - WINDOW_S]
        for group in GROUPS:
            for figure in ("rss_mb", "fds"):
                first, last = _median(start, group, figure), _median(end, group, figure)
                if first is not None and last is not None:
                    growth.append(Growth(group, figure, first, last))
    with_requests = {r.run_id for r in data.requests if r.run_id is not None}
    return SteadyState(
        growth=tuple(growth),
        ok_runs_without_requests=tuple(
            c.run_id for c in data.clients if c.outcome == "ok" and c.run_id not in with_requests
        ),
        unattributed_requests=sum(1 for r in data.requests if r.run_id is None),
        skipped_lines=sum(data.skipped.get(name, 0) for name in (REQUESTS_FILE, CLIENTS_FILE)),
    )


def _median(rows: Sequence[HostRow], group: str, figure: str) -> float | None:
    values = [
        v
        for r in rows
        if isinstance(part := r.get(group), dict) and (v := number(part.get(figure))) is not None
    ]
    return statistics.median(values) if values else None
