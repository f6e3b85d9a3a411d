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

from pipstorm.engine.analysis.stats import NOT_FAILED, is_error
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


#: The figures judged for each group.
FIGURES = ("rss_mb", "fds")


@dataclass(frozen=True)
class SteadyState:
    """What a soak judges. ``failed_runs``: client runs that did not end ok (or conflict);
    ``request_errors``: requests counted as errors (``pipstorm.engine.analysis.stats``)."""

    growth: tuple[Growth, ...]
    ok_runs_without_requests: tuple[str, ...]
    unattributed_requests: int
    skipped_lines: int
    failed_runs: tuple[str, ...] = ()
    request_errors: int = 0

    def worst(self, figure: str) -> float | None:
        """The largest growth of ``figure`` over the groups; None when none was measured (no
        samples is no evidence of flatness)."""
        return max((g.growth for g in self.growth if g.figure == figure), default=None)

    @property
    def unmeasured(self) -> tuple[tuple[str, str], ...]:
        """The (group, figure) pairs with no growth measured: a soak needs every one."""
        seen = {(g.group, g.figure) for g in self.growth}
        return tuple((g, f) for g in GROUPS for f in FIGURES if (g, f) not in seen)


def steady_state(data: RunData) -> SteadyState:
    """The figures a soak judges, from a results folder read once."""
    rows = list(data.host)
    growth: list[Growth] = []
    if rows:
        t0, t1 = float(rows[0]["ts"]), float(rows[-1]["ts"])
        start = [r for r in rows if t0 + WARM_UP_S <= float(r["ts"]) < t0 + WARM_UP_S + WINDOW_S]
        end = [r for r in rows if float(r["ts"]) > t1 - WINDOW_S]
        for group in GROUPS:
            for figure in FIGURES:
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
        failed_runs=tuple(c.run_id for c in data.clients if c.outcome not in NOT_FAILED),
        request_errors=sum(1 for r in data.requests if r.run_id is not None and is_error(r)),
    )


def _median(rows: Sequence[HostRow], group: str, figure: str) -> float | None:
    values = [
        v
        for r in rows
        if isinstance(part := r.get(group), dict) and (v := number(part.get(figure))) is not None
    ]
    return statistics.median(values) if values else None
