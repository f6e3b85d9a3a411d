"""Confining the embedded pypiserver with cgroups, reading the cgroup's own counters, cleanup.

Two ways in, chosen by what the machine is:

- cgroup v1 (cpu, cpuacct, memory mounted as separate hierarchies, as here): pipstorm writes the
  files itself. One directory per controller, created *below the owner's own cgroup* of that
  controller, so whatever limits the owner already lives under still apply to the server.
- cgroup v2 with systemd answering (``/run/systemd/system`` exists): ``systemd-run --scope``
  wraps the server's argv, the way such machines expect processes to be confined; systemd
  removes the scope when its last process exits. Without systemd, the files are written below
  the owner's cgroup as on v1 (which needs the cpu and memory controllers delegated there).

Names are ``pipstorm-<owner pid>-<owner start time>-<serial>``: a later start finds cgroups whose
owner is gone (SIGKILLed before it could clean up) and removes them, killing any process still
inside first (only ever a pypiserver tree pipstorm put there).

The server enters its cgroup itself, before gunicorn forks a worker: the server's argv gets the
``cgroup.procs`` files in an environment variable (``JOIN_ENV``) and its first act is writing
its pid into each, so no ``preexec_fn`` runs in a threaded owner.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psutil

from pipstorm.infra.errors import InfraError
from pipstorm.infra.pypiserver.sizing import cpu_quota_us

JOIN_ENV: Final = "PIPSTORM_CGROUP_JOIN"
NAME_PREFIX: Final = "pipstorm-"
CGROUP_ROOT: Final = Path("/sys/fs/cgroup")
SYSTEMD_RUN_DIR: Final = Path("/run/systemd/system")
_PERIOD_US: Final = 100_000
_V1_CONTROLLERS: Final = ("cpu", "cpuacct", "memory")
#: The server's CPU weight against everything else on the machine, at the kernel's maximum (v1
#: ``cpu.shares``, v2 ``cpu.weight``, systemd ``CPUWeight``). A deployment's vCPUs are its own;
#: here the server shares cores with the load generator, and at the default weight (one nice-0
#: task's) the clients' own work took them: the optimized preset at 2 vCPU got 110-180 % CPU
#: in the burst seconds of production_incident while 75 requests queued (measured 2026-12-06).
#: The quota still caps it at the sizing; the weight only makes the clients take what it leaves.
#: Only while the quota leaves the generator a core (``ahead_of_clients``): a quota of every core
#: at this weight starved pipstorm's own sampler for 8 s of a burst (measured the same day).
CPU_SHARES_V1: Final = 262_144
CPU_WEIGHT_V2: Final = 10_000

_REMOVE_TIMEOUT_S: Final = 10.0
#: Directories this process could not remove (a task slow to exit); retried by ``remove_stale``.
_LEFT_BEHIND: set[Path] = set()
#: How long an orphaned server may take to stop by itself (its watchdog polls every second).
STALE_GRACE_S: Final = 3.0
_STALE_SCAN_DEPTH: Final = 4
_serial = itertools.count(1)


class CgroupError(InfraError):
    """The server cannot be confined here; the message is one line saying why."""


@dataclass(frozen=True)
class Cgroup:
    """One server's cgroup: its directory per controller (v1) or its one directory (v2).

    ``scope`` is the systemd unit when systemd-run made it; its directory is known only once the
    server runs (``attach_scope``).
    """

    version: int
    name: str
    dirs: tuple[Path, ...]
    scope: str | None = None

    def _dir_with(self, filename: str) -> Path | None:
        for directory in self.dirs:
            if (directory / filename).exists():
                return directory
        return None

    def pids(self) -> list[int]:
        """Every process in the cgroup (v1: in its memory directory, where all are)."""
        pids: set[int] = set()
        for directory in self.dirs:
            with contextlib.suppress(OSError):
                procs = (directory / "cgroup.procs").read_text().split()
                pids.update(int(pid) for pid in procs)
        return sorted(pids)

    def limits(self) -> dict[str, int | None]:
        """The limits the kernel holds (read back, not what was asked): quota, period, bytes."""
        if self.version == 1:
            cpu = self._dir_with("cpu.cfs_quota_us")
            memory = self._dir_with("memory.limit_in_bytes")
            return {
                "cpu_quota_us": _read_int(cpu / "cpu.cfs_quota_us") if cpu else None,
                "cpu_period_us": _read_int(cpu / "cpu.cfs_period_us") if cpu else None,
                "cpu_shares": _read_int(cpu / "cpu.shares") if cpu else None,
                "memory_limit_bytes": (
                    _read_int(memory / "memory.limit_in_bytes") if memory else None
                ),
            }
        directory = self.dirs[0]
        quota, _, period = _read_text(directory / "cpu.max").partition(" ")
        memory_max = _read_text(directory / "memory.max")
        weight = _read_text(directory / "cpu.weight")
        return {
            "cpu_quota_us": None if quota in ("", "max") else int(quota),
            "cpu_period_us": int(period) if period else None,
            "cpu_weight": int(weight) if weight.isdigit() else None,
            "memory_limit_bytes": None if memory_max in ("", "max") else int(memory_max),
        }

    def remove(self) -> None:
        """Kill what is still inside (nothing, after a clean stop), then remove the directories.

        A systemd scope goes by itself once empty: only its processes are killed here.
        """
        deadline = time.monotonic() + _REMOVE_TIMEOUT_S
        # A task killed while its cgroup is at its memory limit may need memory to finish
        # exiting: lift the limit first, or it can hold the directory busy.
        self._lift_memory_limit()
        self._kill_all()
        for directory in () if self.scope else self.dirs:  # systemd removes its scopes
            while directory.exists():
                try:
                    directory.rmdir()
                except FileNotFoundError:
                    break
                except OSError as exc:  # EBUSY while a killed task is still exiting
                    if time.monotonic() > deadline:
                        _LEFT_BEHIND.add(directory)  # the next create() tries again
                        raise CgroupError(f"cannot remove cgroup {directory}: {exc}") from None
                    self._kill_all()
                    time.sleep(0.05)
            _LEFT_BEHIND.discard(directory)

    def _kill_all(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def _lift_memory_limit(self) -> None:
        # v1: memsw must be raised before the limit it bounds; v2: one file.
        for directory in self.dirs:
            for name, value in (
                ("memory.memsw.limit_in_bytes", "-1"),
                ("memory.limit_in_bytes", "-1"),
                ("memory.max", "max"),
            ):
                with contextlib.suppress(OSError):
                    if (directory / name).exists():
                        write_value(directory / name, value)


def host_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0))


def ahead_of_clients(cpus: float | None) -> bool:
    """Whether the server gets the largest CPU weight: its quota must leave a core."""
    return cpus is not None and cpus <= host_cores() - 1


def detect_version(root: Path = CGROUP_ROOT) -> int | None:
    """1 or 2 for a usable hierarchy at ``root``; None when there are no cgroups."""
    if (root / "cgroup.controllers").exists():
        return 2
    if all((root / controller / "cgroup.procs").exists() for controller in ("cpu", "memory")):
        return 1
    return None


def own_path(controller: str | None, proc_cgroup: Path = Path("/proc/self/cgroup")) -> str:
    """This process's cgroup path in a v1 controller's hierarchy, or in v2's (``None``)."""
    for line in proc_cgroup.read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if (controller is None and controllers == "") or (
            controller is not None and controller in controllers.split(",")
        ):
            return path
    raise CgroupError(f"this process is in no {controller or 'v2'} cgroup")


def systemd_answers() -> bool:
    """True where systemd is the init system and ``systemd-run`` exists (sd_booted)."""
    return SYSTEMD_RUN_DIR.is_dir() and shutil.which("systemd-run") is not None


def owner_tag(pid: int | None = None) -> str:
    """``<pid>-<start time>`` of the owner: names survive pid reuse."""
    process = psutil.Process(pid)
    return f"{process.pid}-{int(process.create_time())}"


def new_name() -> str:
    """A fresh cgroup name owned by this process."""
    return f"{NAME_PREFIX}{owner_tag()}-{next(_serial)}"


def create(
    cpus: float | None, memory_bytes: int | None, *, root: Path = CGROUP_ROOT
) -> tuple[Cgroup, list[str]]:
    """Make a cgroup with these limits; returns it and the argv prefix to start the server with.

    The prefix is empty unless systemd-run makes the scope (then the scope's directory is looked
    up from the server's pid once it runs). Stale cgroups of dead owners are removed first.
    """
    if os.geteuid() != 0:
        raise CgroupError("confining pypiserver needs root (cgroup files are root's)")
    version = detect_version(root)
    if version is None:
        raise CgroupError(f"no cgroup v1 cpu+memory or v2 hierarchy at {root}")
    remove_stale(root)
    name = new_name()
    if version == 2 and systemd_answers():
        return Cgroup(version=2, name=name, dirs=(), scope=f"{name}.scope"), _systemd_run_prefix(
            name, cpus, memory_bytes
        )
    try:
        if version == 1:
            cgroup = _create_v1(name, cpus, memory_bytes, root)
        else:
            cgroup = _create_v2(name, cpus, memory_bytes, root)
    except OSError as exc:
        raise CgroupError(f"cannot create cgroup {name}: {exc.strerror or exc}") from None
    return cgroup, []


def _create_v1(name: str, cpus: float | None, memory_bytes: int | None, root: Path) -> Cgroup:
    dirs: list[Path] = []
    cgroup = Cgroup(version=1, name=name, dirs=())
    hierarchies: set[Path] = set()
    try:
        for controller in _V1_CONTROLLERS:
            hierarchy = (root / controller).resolve()
            if not (hierarchy / "cgroup.procs").exists() or hierarchy in hierarchies:
                continue  # co-mounted (cpu,cpuacct: two links to one hierarchy) or absent
            hierarchies.add(hierarchy)
            directory = hierarchy / own_path(controller).lstrip("/") / name
            directory.mkdir()
            dirs.append(directory)
            cgroup = Cgroup(version=1, name=name, dirs=tuple(dirs))
            if (directory / "cpu.cfs_quota_us").exists():
                write_value(directory / "cpu.cfs_period_us", str(_PERIOD_US))
                quota = cpu_quota_us(cpus, _PERIOD_US) if cpus is not None else -1
                write_value(directory / "cpu.cfs_quota_us", str(quota))
                if ahead_of_clients(cpus):
                    write_value(directory / "cpu.shares", str(CPU_SHARES_V1))
            if controller == "memory" and memory_bytes is not None:
                write_value(directory / "memory.limit_in_bytes", str(memory_bytes))
                # With swap, memsw must match or the limit only moves pages to swap.
                memsw = directory / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    write_value(memsw, str(memory_bytes))
    except BaseException:
        cgroup.remove()
        raise
    return cgroup


def _create_v2(name: str, cpus: float | None, memory_bytes: int | None, root: Path) -> Cgroup:
    parent = root / own_path(None).lstrip("/")
    enabled = _read_text(parent / "cgroup.subtree_control").split()
    missing = [c for c in ("cpu", "memory") if c not in enabled]
    if missing:
        # Fails with EBUSY when the parent holds processes itself (v2's no-internal-process
        # rule): such machines delegate a subtree or run systemd.
        write_value(parent / "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))
    directory = parent / name
    directory.mkdir()
    cgroup = Cgroup(version=2, name=name, dirs=(directory,))
    try:
        if cpus is not None:
            write_value(directory / "cpu.max", f"{cpu_quota_us(cpus, _PERIOD_US)} {_PERIOD_US}")
        if ahead_of_clients(cpus):
            write_value(directory / "cpu.weight", str(CPU_WEIGHT_V2))
        if memory_bytes is not None:
            write_value(directory / "memory.max", str(memory_bytes))
            with contextlib.suppress(FileNotFoundError):
                write_value(directory / "memory.swap.max", "0")
    except BaseException:
        cgroup.remove()
        raise
    return cgroup


def _systemd_run_prefix(name: str, cpus: float | None, memory_bytes: int | None) -> list[str]:
    properties = ["-p", f"CPUWeight={CPU_WEIGHT_V2}"] if ahead_of_clients(cpus) else []
    if cpus is not None:
        properties += ["-p", f"CPUQuota={round(cpus * 100)}%"]
    if memory_bytes is not None:
        properties += ["-p", f"MemoryMax={memory_bytes}", "-p", "MemorySwapMax=0"]
    return ["systemd-run", "--scope", "--quiet", f"--unit={name}", *properties, "--"]


def attach_scope(cgroup: Cgroup, pid: int) -> Cgroup:
    """The systemd scope's cgroup with its directory, read from the server's /proc entry."""
    if cgroup.scope is None:
        return cgroup
    path = own_path(None, Path(f"/proc/{pid}/cgroup"))
    if not path.endswith("/" + cgroup.scope):
        raise CgroupError(f"pypiserver is not in its scope {cgroup.scope} (in {path})")
    directory = CGROUP_ROOT / path.lstrip("/")
    return Cgroup(version=2, name=cgroup.name, dirs=(directory,), scope=cgroup.scope)


def join_from_env(environ: dict[str, str] | os._Environ[str]) -> None:
    """In the server process: enter the cgroup named in ``JOIN_ENV`` (before any fork)."""
    for procs in filter(None, environ.pop(JOIN_ENV, "").split(os.pathsep)):
        write_value(Path(procs), str(os.getpid()))


def join_value(cgroup: Cgroup) -> str:
    """The ``JOIN_ENV`` value for a cgroup made here (empty for a systemd scope)."""
    return os.pathsep.join(str(d / "cgroup.procs") for d in cgroup.dirs)


@atexit.register
def _remove_left_behind() -> None:
    """At exit, one more try at what could not be removed earlier (its tasks have exited by
    now, mostly); what still resists is removed by the next pipstorm start as stale."""
    for directory in list(_LEFT_BEHIND):
        with contextlib.suppress(CgroupError):
            Cgroup(version=0, name=directory.name, dirs=(directory,)).remove()


def remove_stale(root: Path = CGROUP_ROOT) -> list[Path]:
    """Remove pipstorm cgroups whose owner process is gone; returns what was removed.

    A server whose owner was just killed is given ``STALE_GRACE_S`` to notice it and stop by
    itself (removing its private directory on the way), before what is left is killed.
    """
    stale = [d for d in pipstorm_dirs(root) if not owner_alive(d.name)]
    stale += [d for d in _LEFT_BEHIND if d.is_dir() and d not in stale]
    groups = [Cgroup(version=0, name=d.name, dirs=(d,)) for d in stale]
    deadline = time.monotonic() + STALE_GRACE_S
    while any(group.pids() for group in groups) and time.monotonic() < deadline:
        time.sleep(0.1)
    removed: list[Path] = []
    for group in groups:
        with contextlib.suppress(CgroupError):
            group.remove()
            removed.extend(group.dirs)
    return removed


def pipstorm_dirs(root: Path = CGROUP_ROOT) -> list[Path]:
    """Every cgroup directory named by pipstorm, down to a few levels below ``root``."""
    found: list[Path] = []
    for top, subdirs, _ in os.walk(root):
        depth = len(Path(top).relative_to(root).parts)
        for subdir in list(subdirs):
            if subdir.startswith(NAME_PREFIX):
                found.append(Path(top) / subdir)
                subdirs.remove(subdir)  # never descend into our own
        if depth >= _STALE_SCAN_DEPTH:
            subdirs.clear()
    return found


def owner_alive(name: str) -> bool:
    """Whether the process named in a pipstorm cgroup's name still runs (True: not ours)."""
    parts = name.removeprefix(NAME_PREFIX).split("-")
    if len(parts) < 2 or not (parts[0].isdigit() and parts[1].isdigit()):
        return True  # not a name we make: not ours to judge
    try:
        return owner_tag(int(parts[0])) == f"{parts[0]}-{parts[1]}"
    except psutil.NoSuchProcess:
        return False


def write_value(path: Path, value: str) -> None:
    """Unbuffered, one write: cgroup files take one value per write(2)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _read_text(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    return int(text) if text.lstrip("-").isdigit() else None
