"""One client run through a warm launcher: prepared ahead as a gated child, then its record.

The warm twin of ``pipstorm.clients.runner.prepared`` / ``launch``: the run's private dir and what
its driver needs are made as in the exec path, but instead of a venv and a later ``exec`` the run
becomes a child forked from the launcher of its client (``pipstorm.clients.warm.launcher``), already
past its interpreter start, imports and pre-network start-up, waiting for its instant. Its record is
built by the same ``pipstorm.clients.runner.finish`` as an exec'd run's.

Client kinds without a ``warm`` method (uv, a native binary; the in-process HTTP client) keep
the exec path; ``warm_capable`` says which is which.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from pipstorm.clients.drivers.registry import KINDS, driver_for
from pipstorm.clients.drivers.venv import throwaway_dir
from pipstorm.clients.errors import DriverError, UnknownClientError
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import finish, not_launched
from pipstorm.clients.task import ClientResult, ClientTask, RunOutcome
from pipstorm.clients.warm.launcher import LauncherError, WarmChild, WarmSpec
from pipstorm.clients.warm.launchers import Launchers, outcome_of

INTERRUPTED = "interrupted before launch"
#: How long a prepared child that is abandoned (its block left early) gets to die.
ABANDON_WAIT_S = 5.0


@runtime_checkable
class WarmCapable(Protocol):
    """A driver whose runs can come from a warm launcher."""

    def warm(self, task: ClientTask, work: Path) -> WarmSpec:
        """Make what the run needs in ``work`` (like ``prepare``) and say what to run."""
        ...


def warm_capable(kind: str) -> bool:
    """Whether runs of client ``kind`` can be warm-launched (else they are exec'd)."""
    return kind in KINDS and isinstance(driver_for(kind), WarmCapable)


@dataclass(frozen=True)
class WarmPrepared:
    """A run whose child is forked and gated; ``error`` when it could not be prepared."""

    task: ClientTask
    work: Path
    started: float
    spec: WarmSpec | None
    child: WarmChild | None
    error: str | None


@contextmanager
def warm_prepared(
    task: ClientTask,
    *,
    launchers: Launchers,
    temp_root: Path | None,
    due_mono: float | None,
    registry: ProcessRegistry | None = None,
) -> Iterator[WarmPrepared]:
    """Prepare the run and fork its child, released at ``due_mono`` (None: ``child.open()``).

    On leaving the block the child is dead (killed if it had not finished) before the run's dir
    is removed, so nothing is left either way.
    """
    driver = driver_for(task.client)
    if not isinstance(driver, WarmCapable):
        raise UnknownClientError(f"client kind {task.client!r} has no warm launch; use exec")
    started = time.time()
    with throwaway_dir(temp_root, f"pipstorm-{task.run_id}-") as work:
        spec: WarmSpec | None = None
        child: WarmChild | None = None
        error: str | None = None
        try:
            if registry is not None and registry.stopping:
                raise LauncherError(INTERRUPTED)
            spec = driver.warm(task, work)
            child = launchers.for_spec(spec).fork(
                task.run_id, spec, work, extra_args=task.extra_args, due_mono=due_mono
            )
        except (DriverError, LauncherError) as exc:
            error = str(exc)
        try:
            yield WarmPrepared(task, work, started, spec, child, error)
        finally:
            if child is not None and not child.exited.is_set():
                child.signal(signal.SIGKILL)
                child.exited.wait(ABANDON_WAIT_S)


def launch_warm(prep: WarmPrepared, *, registry: ProcessRegistry) -> ClientResult:
    """Wait for the prepared child's release and exit; the run's record, as ``launch`` gives."""
    task = prep.task
    if prep.child is None or prep.spec is None:
        kind: RunOutcome = "interrupted" if prep.error == INTERRUPTED else "error"
        return not_launched(task, prep.started, prep.error or "not prepared", kind)
    outcome = outcome_of(
        prep.child,
        [*prep.spec.argv, *task.extra_args],
        prep.work,
        timeout_s=task.timeout_s,
        registry=registry,
    )
    return finish(task, prep.work, prep.started, outcome, prep.spec.client_version)


def execute_warm(
    task: ClientTask, *, launchers: Launchers, temp_root: Path | None, registry: ProcessRegistry
) -> ClientResult:
    """Prepare and release at once: the warm twin of ``pipstorm.clients.runner.execute`` (one-off
    runs)."""
    with warm_prepared(
        task, launchers=launchers, temp_root=temp_root, due_mono=None, registry=registry
    ) as prep:
        if prep.child is not None:
            prep.child.open()
        return launch_warm(prep, registry=registry)
