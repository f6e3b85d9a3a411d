"""Handing a run's schedule to the pool, and turning the pool's results into records.

The engine process does little during a run: it hands each planned run to the pool ahead of its
intended start (``pipstorm.engine.run.pool`` launches it on time) and writes one ``clients.jsonl``
line per result as it arrives, so an interrupted run keeps every result that came in.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipstorm.clients.task import ClientResult, ClientTask
from pipstorm.engine.analysis.stats import NOT_FAILED
from pipstorm.engine.run.plan.schedule import PlannedRun
from pipstorm.engine.run.pool import ClientPool, PoolError
from pipstorm.engine.run.progress import LiveProgress, RunCounts
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.records import ClientRecord

#: A run is handed to a worker this long before it is due unless told otherwise
#: (``pipstorm.engine.run.plan.lead`` computes it per run from the plan and measured costs).
PREPARE_AHEAD_S = 10.0


@dataclass
class RunClock:
    """Time zero of a run on both clocks, and the progress counts read off it.

    ``t0_wall``/``t0_mono`` are set once the pool is up (:meth:`start`); every planned offset is
    due at ``t0_mono + offset`` (CLOCK_MONOTONIC is shared by all processes on Linux) and is
    recorded against ``t0_wall + offset``. ``dues`` holds the due times of the runs handed out,
    in order, so the number launched so far is a bisection.
    """

    t0_wall: float = 0.0
    t0_mono: float = 0.0
    dues: list[float] = field(default_factory=list)
    finished: int = 0
    failed: int = 0

    def start(self, margin_s: float, *, at: float | None = None) -> None:
        """Offset 0 is ``margin_s`` from now, or the absolute instant ``at`` (epoch seconds: a
        shard's shared start time, ``pipstorm.engine.run.shards.worker``)."""
        now_wall, now_mono = time.time(), time.monotonic()
        ahead = margin_s if at is None else at - now_wall
        self.t0_wall = now_wall + ahead
        self.t0_mono = now_mono + ahead

    def counts(self) -> RunCounts:
        """Runs launched, in flight, finished and failed, now."""
        launched = bisect.bisect_right(self.dues, time.monotonic())
        return RunCounts(
            launched=launched,
            in_flight=max(0, launched - self.finished),
            finished=self.finished,
            failed=self.failed,
        )


def client_recorder(
    writer: JsonlWriter, plan: dict[str, PlannedRun], clock: RunClock
) -> Callable[[ClientResult], None]:
    """Turn a worker's result into one ``clients.jsonl`` line the moment it arrives."""

    def record(result: ClientResult) -> None:
        planned = plan[result.run_id]
        writer.write(
            ClientRecord.from_result(
                result,
                project=planned.project,
                version=planned.version,
                intended=clock.t0_wall + planned.offset_s,
                tick=planned.tick,
                burst=planned.burst,
            )
        )
        clock.finished += 1
        clock.failed += result.outcome not in NOT_FAILED

    return record


def dispatch_plan(
    plan: list[PlannedRun],
    pool: ClientPool,
    make_task: Callable[[PlannedRun], ClientTask],
    clock: RunClock,
    live: LiveProgress,
    *,
    ahead_s: float = PREPARE_AHEAD_S,
    guard: Callable[[], None] = lambda: None,
) -> None:
    """Hand each run to the pool ``ahead_s`` before it is due, updating progress.

    ``guard`` is called twice a second and stops the run by raising
    (``pipstorm.engine.run.disk_room``)."""
    for run in plan:
        due = clock.t0_mono + run.offset_s
        while (wait := due - ahead_s - time.monotonic()) > 0:
            time.sleep(min(wait, 0.5))
            raise_if_fatal(pool)
            guard()
            live.update(clock.counts())
        pool.submit(make_task(run), due)
        clock.dues.append(due)  # the plan is in time order, so `dues` stays sorted
    while pool.in_flight and time.monotonic() < clock.t0_mono + live.planned_s:
        time.sleep(0.5)
        raise_if_fatal(pool)
        guard()
        live.update(clock.counts())


def wait_for_last_runs(
    pool: ClientPool,
    timeout_s: float,
    live: LiveProgress,
    clock: RunClock,
    guard: Callable[[], None] = lambda: None,
) -> None:
    """Every run has been handed out: wait for the last ones (bounded by their timeout)."""
    deadline = time.monotonic() + timeout_s
    while not pool.wait_idle(min(1.0, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            break
        guard()
        live.update(clock.counts())
    raise_if_fatal(pool)


def raise_if_fatal(pool: ClientPool) -> None:
    """Stop the run when the pool cannot go on: a worker died, or could not run a task at all
    (a driver refused it); waiting on would only wait for runs that will never come."""
    if pool.fatal:
        raise PoolError(pool.fatal)
