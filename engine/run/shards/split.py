"""A schedule split over N generator machines: which runs each shard plays, and from when.

Why deterministic: the coordinator, every shard and a later ``pipstorm report`` must agree on
which runs belong where without talking, and a rerun with the same seed must split the same way.
Why spread per tick: a burst's clients must leave from every shard at once (an ALB pins one
host's keep-alive connections to one target; one shard playing a whole burst is not the profile),
and the base ticks' few runs rotate over the shards so no shard carries all of them.

All shards play against one absolute start time (wall clock, epoch seconds) chosen a few seconds
ahead, long enough for every shard to start its proxy and pool and prepare its first burst; the
clocks' offsets are checked before (``pipstorm.engine.run.shards.cluster``), so one instant means
one instant.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.plan.schedule import PlannedRun

#: The least lead between choosing the start time and offset 0: proxy and pool start-up.
MIN_LEAD_S = 5.0
#: Added per run of a shard's first tick: that tick's venvs are made before it is due.
LEAD_PER_FIRST_RUN_S = 0.1
#: The most lead the start-up estimate may ask for (a huge first burst still starts).
MAX_LEAD_S = 20.0


class ShardError(UsageError):
    """A split that cannot be made (no shards, more shards than runs are allowed)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: its runs, in start order, with their ids and offsets
    unchanged (so merged records read exactly as a single machine's)."""

    index: int
    count: int
    runs: tuple[PlannedRun, ...]

    @property
    def run_ids(self) -> list[str]:
        return [r.run_id for r in self.runs]

    @property
    def first_tick_runs(self) -> int:
        """How many runs the shard starts at its first tick (what start-up must prepare)."""
        if not self.runs:
            return 0
        first = self.runs[0].tick
        return sum(1 for r in self.runs if r.tick == first)


def split(plan: Sequence[PlannedRun], count: int) -> list[Shard]:
    """Split ``plan`` into ``count`` shards; every run lands in exactly one.

    Within a tick the runs are dealt round-robin, starting one shard further each tick: a
    burst of 75 over 2 shards is 38 + 37, and 3 base runs a tick over 2 shards alternate
    2 + 1 and 1 + 2, so each shard's load over time is the profile's divided by ``count``.
    """
    if count < 1:
        raise ShardError(f"--shards must be at least 1, got {count}")
    buckets: list[list[PlannedRun]] = [[] for _ in range(count)]
    position: dict[int, int] = {}
    for run in plan:
        k = position.get(run.tick, 0)
        position[run.tick] = k + 1
        buckets[(k + run.tick) % count].append(run)
    return [Shard(index=i, count=count, runs=tuple(runs)) for i, runs in enumerate(buckets)]


def lead_s(shards: Sequence[Shard]) -> float:
    """How far ahead offset 0 is placed: start-up plus the biggest first tick's preparation."""
    biggest = max((s.first_tick_runs for s in shards), default=0)
    return min(MAX_LEAD_S, MIN_LEAD_S + LEAD_PER_FIRST_RUN_S * biggest)


def start_time(shards: Sequence[Shard], *, now: float | None = None) -> float:
    """The absolute instant (epoch seconds, on a tenth of a second) of every shard's offset 0."""
    t = (time.time() if now is None else now) + lead_s(shards)
    return math.ceil(t * 10) / 10
