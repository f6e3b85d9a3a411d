"""Can this machine play the plan? Checked before any load is sent, from the profile alone.

A plan the generator cannot prepare or hold does not measure the index: its runs start late,
its clients starve each other, and at the extreme the engine itself runs out of memory building
the schedule (a profile with ``clients = 1000000`` used to dispatch a million runs at tick 0).
So a plan is refused, with its figures, when

- one tick would need more than :data:`CPU_OVERLOAD_MAX` times the CPU the machine has in a tick
  for the runs' own start-up (a burst may overload the generator for a moment, as the seed's
  profiles do: production_incident's x25 burst of fresh pips needs ~1.2x, heavy_load's ~1.7x);
- the runs of one tick would need more memory than :data:`MEMORY_SHARE_MAX` of what is available;
- or the schedule itself has more than :data:`PLANNED_RUNS_MAX` runs.

``--force`` plays it anyway; the warning is then recorded in run.json and the report. The costs
per run are the ones ``tests/bench/test_client_kinds_bench.py`` measured on the 2-core machine
(CPU-s and peak RSS of one cold run of each kind); a bigger plan belongs on several generators.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

import psutil

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.plan.schedule import Timeline

CPU_OVERLOAD_MAX = 4.0
MEMORY_SHARE_MAX = 0.8
PLANNED_RUNS_MAX = 200_000
#: (CPU seconds, peak RSS in MB) of one run of each kind on the generator (see module docstring).
RUN_COST: Mapping[str, tuple[float, float]] = {
    "pip": (0.33, 50.0),
    "poetry": (0.54, 68.0),
    "uv": (0.07, 40.0),
    "twine": (0.19, 45.0),
    "http": (0.001, 0.1),
}
#: The same for a run forked from a warm launcher, where measured: ``tests/bench/
#: test_gate_bench.py`` (issue 20; the child gated at its first connect, pip's user agent
#: shared): ~29 ms of CPU before the gate (pip's own start-up included) and ~21 ms after it,
#: ~4 ms more in the launcher's fork and the owner (``lead._measure_warm``), and 15 MB of
#: memory of its own per gated child (USS: pip's start-up now runs before the gate); other
#: kinds are priced as exec, to be safe.
WARM_RUN_COST: Mapping[str, tuple[float, float]] = {"pip": (0.055, 15.0)}
_UNKNOWN_COST = RUN_COST["poetry"]  # the dearest known kind, for a kind not measured


class CapacityError(UsageError):
    """The plan is more than this machine can prepare or hold; the message has the figures."""


@dataclass(frozen=True)
class Capacity:
    """What the machine has, and what the plan's busiest tick needs."""

    cores: int
    available_mb: float
    peak_runs: int
    planned_runs: int
    tick_s: float
    cpu_s_per_run: float
    mb_per_run: float

    @property
    def cpu_overload(self) -> float:
        """CPU the busiest tick's start-up needs, as a multiple of the tick's CPU."""
        return self.peak_runs * self.cpu_s_per_run / (self.cores * self.tick_s)

    @property
    def peak_mb(self) -> float:
        return self.peak_runs * self.mb_per_run

    def problems(self) -> list[str]:
        """Why the plan cannot be played here (empty when it can)."""
        found = []
        if self.planned_runs > PLANNED_RUNS_MAX:
            found.append(f"{self.planned_runs:,} planned runs (at most {PLANNED_RUNS_MAX:,})")
        if self.cpu_overload > CPU_OVERLOAD_MAX:
            need = self.peak_runs * self.cpu_s_per_run
            have = self.cores * self.tick_s
            found.append(
                f"{self.peak_runs:,} runs at one tick need {need:,.0f} CPU-s to start, "
                f"{self.cpu_overload:,.1f}x the {have:g} CPU-s {self.cores} cores have in a "
                f"{self.tick_s:g} s tick (at most {CPU_OVERLOAD_MAX:g}x)"
            )
        if self.peak_mb > MEMORY_SHARE_MAX * self.available_mb:
            found.append(
                f"{self.peak_runs:,} runs in flight need ~{self.peak_mb:,.0f} MB, more than "
                f"{MEMORY_SHARE_MAX:.0%} of the {self.available_mb:,.0f} MB available"
            )
        return found


def measure(
    line: Timeline,
    clients: int,
    multiplier: int,
    mix: Mapping[str, float],
    *,
    warm: bool = False,
) -> Capacity:
    """The busiest tick of the plan against this machine (no schedule is built); ``warm``
    prices runs as forked from warm launchers where that was measured."""
    shares = {k: v for k, v in mix.items() if v > 0}
    total = sum(shares.values()) or 1.0
    costs = {**RUN_COST, **(WARM_RUN_COST if warm else {})}
    cost = [costs.get(k, _UNKNOWN_COST) for k in shares]
    weights = [v / total for v in shares.values()]
    peak = clients * (multiplier if line.burst_every_s is not None else 1)
    bursts = len(line.burst_ticks)
    return Capacity(
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1,
        available_mb=psutil.virtual_memory().available / 1e6,
        peak_runs=peak,
        planned_runs=clients * (line.ticks - bursts) + peak * bursts,
        tick_s=line.tick_s,
        cpu_s_per_run=math.fsum(w * c for w, (c, _) in zip(weights, cost, strict=True)),
        mb_per_run=max((m for _, m in cost), default=0.0),
    )


def check(capacity: Capacity, *, force: bool) -> list[str]:
    """CapacityError naming every problem, unless ``force``: then the warnings to record."""
    problems = capacity.problems()
    if problems and not force:
        raise CapacityError(
            "this machine cannot play the plan: "
            + "; ".join(problems)
            + " (use fewer clients, a bigger generator or several, or --force to play it anyway)"
        )
    return [f"played with --force although {p}" for p in problems]
