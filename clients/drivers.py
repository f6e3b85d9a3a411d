"""What every client kind must say, and the registry the runner looks kinds up in.

A driver is one small module (``clients.pip``, ``clients.poetry``, ``clients.uv``) holding one
object with this shape. The runner does the rest the same way for every kind: the run's private
dir, the scrubbed environment, the one subprocess wrapper, the result record.

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

from clients.process import Outcome, ProcessRegistry
from clients.task import ClientTask
from clients.tools import Tool, ToolError, ensure_tool


class DriverError(Exception):
    """A run could not be prepared (venv, tool, project); the message is one line."""


def tool_for(name: str, version: str) -> Tool:
    """The cached tool venv of ``name==version`` (made on first use), or a DriverError."""
    try:
        return ensure_tool(name, version)
    except ToolError as exc:
        raise DriverError(str(exc)) from exc


def write_project(work: Path, pyproject: str) -> Path:
    """A throwaway project dir in the run's ``work`` dir holding just ``pyproject.toml``."""
    project = work / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    return project


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


def registry() -> dict[str, Driver]:
    """Every client kind this version can drive, by kind name."""
    from clients import pip, poetry, synthetic, twine, uv

    drivers: list[Driver] = [pip.DRIVER, poetry.DRIVER, uv.DRIVER, twine.DRIVER, synthetic.DRIVER]
    return {driver.kind: driver for driver in drivers}


def driver_for(kind: str) -> Driver:
    """The driver of ``kind``; DriverError naming the known kinds otherwise."""
    drivers = registry()
    if kind not in drivers:
        raise DriverError(f"unknown client kind {kind!r} (known: {', '.join(drivers)})")
    return drivers[kind]


def warm_up(kinds_and_versions: Mapping[str, str | None]) -> None:
    """Warm up each client kind at its version (cached tools); before a load run starts."""
    for kind, version in kinds_and_versions.items():
        driver_for(kind).warm_up(version)
