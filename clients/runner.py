"""Run one client task end to end: private temp dir, the driver's preparation, the client,
its check, clean-up. Client kinds differ only in their driver
(``pipstorm.clients.drivers.registry``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipstorm.clients.drivers.protocol import Command, ConflictAware
from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.drivers.venv import throwaway_dir
from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.errors import DriverError
from pipstorm.clients.failure import failure_cause
from pipstorm.clients.process import Outcome, ProcessRegistry, run_process
from pipstorm.clients.task import ClientResult, ClientTask, RunOutcome


@dataclass(frozen=True)
class Prepared:
    """A run whose venv or project exists and that can be launched the moment it is due.

    Making the venv is the generator's cost, not the index's load, so the pool does it ahead of
    the run's intended start; the client process itself starts on time. ``error`` is set when
    the preparation failed and the run can only be recorded as such.
    """

    task: ClientTask
    work: Path
    started: float
    command: Command | None
    error: str | None


@contextmanager
def prepared(task: ClientTask, *, temp_root: Path | None) -> Iterator[Prepared]:
    """Make the run's private dir and what its driver needs; removed when the block exits.
    UnknownClientError (before anything is made) when no driver answers to the task's kind."""
    driver = driver_for(task.client)
    started = time.time()
    with throwaway_dir(temp_root, f"pipstorm-{task.run_id}-") as work:
        try:
            command: Command | None = driver.prepare(task, work)
            error = None
        except DriverError as exc:
            command, error = None, str(exc)
        yield Prepared(task=task, work=work, started=started, command=command, error=error)


def launch(prep: Prepared, *, registry: ProcessRegistry) -> ClientResult:
    """Run the prepared client now and describe it; a failing client is a result, not an error."""
    task = prep.task
    if prep.command is None or registry.stopping:
        kind: RunOutcome = "error" if prep.command is None else "interrupted"
        return not_launched(task, prep.started, prep.error or "interrupted before launch", kind)
    home = prep.work / "home"
    home.mkdir(exist_ok=True)
    # The client's own temp files (pip's build trackers, unpack dirs) live in the run's dir, so
    # a client killed mid-run leaves nothing behind once that dir is removed.
    tmp = prep.work / "tmp"
    tmp.mkdir(exist_ok=True)
    command = prep.command
    if command.call is not None:  # an in-process client (the synthetic HTTP one)
        outcome = command.call(task.timeout_s, registry)
    else:
        outcome = run_process(
            [*command.argv, *task.extra_args],
            env=scrubbed_env(home, {"TMPDIR": str(tmp), **command.env}),
            cwd=prep.work,
            timeout_s=task.timeout_s,
            registry=registry,
        )
    return finish(task, prep.work, prep.started, outcome, command.client_version)


def finish(
    task: ClientTask, work: Path, started: float, outcome: Outcome, client_version: str | None
) -> ClientResult:
    """The run's record from its process's outcome: classified, checked by its driver; a run
    that did not succeed carries its cause in ``error`` (``pipstorm.clients.failure``).

    The same for every launch mode (a subprocess here, a warm launcher's child in
    ``pipstorm.clients.warm.run``), so a run's outcome never depends on how its process was started.
    """
    kind = classify(outcome)
    problem = None
    driver = driver_for(task.client)
    if kind == "ok":
        problem = driver.check(task, work, outcome)
        kind = "failed" if problem else "ok"
    elif kind == "failed" and isinstance(driver, ConflictAware):
        problem = driver.conflict(task, work, outcome)
        kind = "conflict" if problem else "failed"
    if problem is None and outcome.exit_code is not None:
        # Every run that did not succeed says why, in the client's own words.
        problem = failure_cause(kind, outcome, task.timeout_s)
    return ClientResult(
        run_id=task.run_id,
        client=task.client,
        started=started,
        launched=outcome.started if outcome.exit_code is not None else None,
        ended=outcome.ended,
        exit_code=outcome.exit_code,
        outcome=kind,
        stderr_tail=outcome.stderr_tail[-1000:],
        error=problem if outcome.exit_code is not None else outcome.stderr_tail,
        cpu_s=outcome.cpu_s,
        max_rss_kb=outcome.max_rss_kb,
        client_version=client_version,
        gated=outcome.gated,
        cpu_gate_s=outcome.cpu_gate_s,
    )


def execute(task: ClientTask, *, temp_root: Path | None, registry: ProcessRegistry) -> ClientResult:
    """Prepare and launch at once: for one-off runs (tests, benchmarks, retry experiments)."""
    with prepared(task, temp_root=temp_root) as prep:
        return launch(prep, registry=registry)


def classify(outcome: Outcome) -> RunOutcome:
    """Name what happened to a client process, for the report's run outcome counts."""
    if outcome.timed_out:
        return "timeout"
    if outcome.interrupted:
        return "interrupted"
    if outcome.exit_code is None:
        return "error"
    return "ok" if outcome.exit_code == 0 else "failed"


def not_launched(task: ClientTask, started: float, why: str, kind: RunOutcome) -> ClientResult:
    """The record of a run whose client never started (preparation failed, or a stop came)."""
    return ClientResult(
        run_id=task.run_id,
        client=task.client,
        started=started,
        launched=None,
        ended=time.time(),
        exit_code=None,
        outcome=kind,
        stderr_tail="",
        error=why,
        cpu_s=0.0,
        max_rss_kb=0,
    )
