"""Burst onset: how late each client run's first request reached the index.

Launch lag says when a run's process was released; onset says when the index felt it: from the
run's intended instant to its first request at the proxy. Between the two lies the client's
own start-up (interpreter, imports, pip's user agent, resolution before the first byte), which
a starved generator stretches: 75 fresh pips released on time at a burst tick reached the index
16-36 s late on 2 cores. A figure measured on such a smear is the generator's, not the index's,
so onset is reported per burst tick (and for the base ticks together) and the generator check
treats an onset p95 above :data:`ONSET_P95_S` as "the offered load was not the profile's".

Spread is first to last first-request of a burst: how sharp the burst was at the index.

Where a late onset came from: a warm run waits at its gate, prepared, until its instant, so one
whose gate came after its instant (``gated_late``) was released late because the generator had
not prepared it in time (its lead was too short for what preparing cost: the CPU to the gate,
``gate_cpu_s``, beside the probe's in ``run.json``'s ``launch`` costs); a late onset with no
run gated late happened after the release (the client's way to its first request, the proxy,
the host's CPU then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipstorm.engine.analysis.stats import Distribution, distribution
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

#: Above this onset p95 (any burst, or the base ticks) the load offered was not the profile's.
ONSET_P95_S = 1.0


@dataclass(frozen=True)
class TickOnset:
    """Onset of the runs of one burst tick (``tick`` set) or of all base ticks (``tick`` None).

    ``runs`` counts the runs planned there that were recorded; ``reached`` those whose first
    request reached the proxy (a run that failed before sending anything has no onset).
    """

    tick: int | None
    offset_s: float | None  # the tick's intended instant, seconds after the run's offset 0
    runs: int
    reached: int
    onset_s: Distribution | None
    spread_s: float | None  # first to last first-request (bursts only)
    # Warm runs only (None when no run of the group has a gate): runs gated after their
    # instant, and the CPU each spent to its gate.
    gated_late: int | None = None
    gate_cpu_s: Distribution | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Onset:
    """Every burst tick's onset, the base ticks', and each run's own (for the charts)."""

    bursts: tuple[TickOnset, ...]
    base: TickOnset | None
    by_run: Mapping[str, float]  # run id -> onset in seconds

    @property
    def worst_p95_s(self) -> float | None:
        """The highest onset p95 of any burst tick or of the base ticks."""
        values = [g.onset_s.p95 for g in (*self.bursts, self.base) if g and g.onset_s]
        return max(values) if values else None

    @property
    def late(self) -> bool:
        """Whether the offered load was late by the rule (worst p95 above ONSET_P95_S)."""
        worst = self.worst_p95_s
        return worst is not None and worst > ONSET_P95_S

    @property
    def gated_late(self) -> int | None:
        """Runs of any group gated after their instant (None: no run had a gate)."""
        counts = [g.gated_late for g in (*self.bursts, self.base) if g and g.gated_late is not None]
        return sum(counts) if counts else None

    def to_dict(self) -> dict[str, Any]:
        """``report.json``'s ``onset`` section."""
        return {
            "bursts": [b.to_dict() for b in self.bursts],
            "base": None if self.base is None else self.base.to_dict(),
            "worst_p95_s": self.worst_p95_s,
            "limit_p95_s": ONSET_P95_S,
            "late": self.late,
            "gated_late": self.gated_late,
        }


def first_requests(requests: Sequence[RequestRecord]) -> dict[str, float]:
    """Run id -> the start (epoch s) of its first request seen by the proxy."""
    first: dict[str, float] = {}
    for r in requests:
        if r.run_id is not None and (r.run_id not in first or r.ts < first[r.run_id]):
            first[r.run_id] = r.ts
    return first


def burst_onset(
    requests: Sequence[RequestRecord], clients: Sequence[ClientRecord], origin: float | None
) -> Onset:
    """Onset per burst tick and for the base ticks; ``origin`` is the run's offset 0."""
    first = first_requests(requests)
    by_run = {c.run_id: first[c.run_id] - c.intended for c in clients if c.run_id in first}
    burst_ticks: dict[int, list[ClientRecord]] = {}
    base: list[ClientRecord] = []
    for c in clients:
        if c.burst:
            burst_ticks.setdefault(c.tick, []).append(c)
        else:
            base.append(c)
    bursts = tuple(
        _group(tick, runs, first, by_run, origin) for tick, runs in sorted(burst_ticks.items())
    )
    return Onset(
        bursts=bursts,
        base=_group(None, base, first, by_run, origin) if base else None,
        by_run=by_run,
    )


def _group(
    tick: int | None,
    runs: Sequence[ClientRecord],
    first: Mapping[str, float],
    by_run: Mapping[str, float],
    origin: float | None,
) -> TickOnset:
    reached = [c for c in runs if c.run_id in first]
    starts = [first[c.run_id] for c in reached]
    intended = min(c.intended for c in runs)
    gated = [c for c in runs if c.gated is not None]
    return TickOnset(
        tick=tick,
        offset_s=None if tick is None or origin is None else round(intended - origin, 3),
        runs=len(runs),
        reached=len(reached),
        onset_s=distribution(by_run[c.run_id] for c in reached),
        spread_s=round(max(starts) - min(starts), 4) if tick is not None and starts else None,
        gated_late=sum(1 for c in gated if c.gated is not None and c.gated > c.intended)
        if gated
        else None,
        gate_cpu_s=distribution(c.cpu_gate_s for c in gated if c.cpu_gate_s is not None),
    )
