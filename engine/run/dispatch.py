"""Handing a run's schedule to the pool, and turning the pool's results into records.

The engine process does little during a run: it hands each planned run to the pool ahead of its
intended start (``engine.run.pool`` launches it on time) and writes one ``clients.jsonl`` line per
result as it arrives, so an interrupted run keeps every result that came in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from clients.runner import ClientError
from clients.task import ClientResult, ClientTask
from engine.analysis.stats import NOT_FAILED
from engine.run.pool import ClientPool
from engine.run.progress import LiveProgress, RunCounts
from engine.run.schedule import PlannedRun
from engine.rundir.records import ClientRecord, JsonlWriter

#: A run is handed to a worker this long before it is due, so its venv is ready on time.
PREPARE_AHEAD_S = 10.0


@dataclass
class Finished:
    """Client runs that have reported, and how many of them did not succeed."""

    finished: int = 0
    failed: int = 0


def client_recorder(
    writer: JsonlWriter,
    plan: dict[str, PlannedRun],
    progress: Finished,
    origin: list[float],
) -> Callable[[ClientResult], None]:
    """Turn a worker's result into one ``clients.jsonl`` line the moment it arrives."""

    def record(result: ClientResult) -> None:
        planned = plan[result.run_id]
        writer.write(
            ClientRecord.from_result(
                result,
                project=planned.project,
                version=planned.version,
                intended=origin[0] + planned.offset_s,
                tick=planned.tick,
                burst=planned.burst,
            )
        )
        progress.finished += 1
        progress.failed += result.outcome not in NOT_FAILED

    return record


def dispatch_plan(
    plan: list[PlannedRun],
    pool: ClientPool,
    make_task: Callable[[PlannedRun], ClientTask],
    clock: tuple[float, list[float], LiveProgress, Callable[[], RunCounts]],
) -> None:
    """Hand each run to the pool ``PREPARE_AHEAD_S`` before it is due, updating progress."""
    t0_mono, dues, live, counts = clock
    for run in plan:
        due = t0_mono + run.offset_s
        while (wait := due - PREPARE_AHEAD_S - time.monotonic()) > 0:
            time.sleep(min(wait, 0.5))
            raise_if_fatal(pool)
            live.update(counts())
        pool.submit(make_task(run), due)
        dues.append(due)  # the plan is in time order, so `dues` stays sorted
    while pool.in_flight and time.monotonic() < t0_mono + live.planned_s:
        time.sleep(0.5)
        raise_if_fatal(pool)
        live.update(counts())


def wait_for_last_runs(
    pool: ClientPool, timeout_s: float, live: LiveProgress, counts: Callable[[], RunCounts]
) -> None:
    """Every run has been handed out: wait for the last ones (bounded by their timeout)."""
    deadline = time.monotonic() + timeout_s
    while not pool.wait_idle(min(1.0, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            break
        live.update(counts())
    raise_if_fatal(pool)


def raise_if_fatal(pool: ClientPool) -> None:
    """Stop the run when the pool cannot go on: a worker died, or could not run a task at all
    (a driver refused it); waiting on would only wait for runs that will never come."""
    if pool.fatal:
        raise ClientError(pool.fatal)
