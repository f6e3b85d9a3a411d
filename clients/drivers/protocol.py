"""What every client kind must say: the driver protocol and the command a prepared run launches.

A driver is one small module (``pipstorm.clients.drivers.pip``, ``pipstorm.clients.drivers.poetry``,
``pipstorm.clients.drivers.uv``, ...) holding one object with this shape;
``pipstorm.clients.drivers.registry`` lists them. The runner does the rest the same way for every
kind: the run's private dir, the scrubbed environment, the one subprocess wrapper, the result
record.

- ``warm_up(version)``: what can be made once per generator (a cached tool venv, a pinned pip
  wheel), called before a load run starts so no client run pays for it.
- ``prepare(task, work)``: what one run needs in its private ``work`` dir (a venv with pip, a
  throwaway project), done ahead of the run's intended start; returns the command.
- ``check(task, work, outcome)``: after a process that exited 0, whether it really did the job
  (the lock file names the expected versions); a message makes the run ``failed``.

Two optional extras: a driver that also answers ``conflict(task, work, outcome)``
(``ConflictAware``) can turn a failed run into ``conflict`` (an upload the index refused
because the file exists); a ``Command`` with ``call`` set runs in process (the synthetic HTTP
client) instead of as a subprocess, and returns the same ``Outcome`` record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pipstorm.clients.process import Outcome, ProcessRegistry
from pipstorm.clients.task import ClientTask


@dataclass(frozen=True)
class Command:
    """What a prepared run launches: argv, environment added to the scrubbed one, version."""

    argv: list[str]
    env: Mapping[str, str] = field(default_factory=dict)
    client_version: str | None = None
    #: In-process clients only: called with (timeout_s, registry) instead of a subprocess
    #: being launched; ``argv`` then only describes the run.
    call: Callable[[float, ProcessRegistry], Outcome] | None = None


class Driver(Protocol):
    """One client kind."""

    @property
    def kind(self) -> str: ...

    @property
    def pins_per_run(self) -> int:
        """How many releases one run asks for (pip downloads one; a lock has several deps)."""
        ...

    @property
    def default_version(self) -> str | None:
        """The version run when a task pins none (None: whatever the venv seeds)."""
        ...

    def warm_up(self, version: str | None) -> None:
        """Install what is cached per version; raise DriverError if it cannot be had."""
        ...

    def prepare(self, task: ClientTask, work: Path) -> Command:
        """Make what the run needs inside ``work``; raise DriverError on failure."""
        ...

    def check(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        """None if an exit-0 run did its job, else why not (one line)."""
        ...


@runtime_checkable
class ConflictAware(Protocol):
    """A driver whose failed runs may be conflicts: the index refused because it has the file."""

    def conflict(self, task: ClientTask, work: Path, outcome: Outcome) -> str | None:
        """Why a run that exited non-zero is a conflict (one line), or None if it is not."""
        ...
