"""Per-process counters from one pass over ``/proc``: what the host sampler sums, read cheaply.

Why not psutil here: at x170 about 510 warm pip children are alive at once, ~1,100 processes on
the host, and the sampler reads them every second. Through psutil a sample was
``process_iter(["ppid"])`` over every process (a ``Process`` object each, its ``stat`` read to
check the pid was not reused, then again for the ppid), then for every member of each group a
cached ``Process`` with ``is_running()`` (``stat`` again) and ``oneshot(cpu_times, memory_info,
num_fds)`` (``stat``, ``statm``, the ``fd`` listing): measured at 10-19 % of a core in the engine
process during an x170 run, taken from the burst's clients and the local index on a 2-core
machine. Here one sample reads each ``/proc/PID/stat`` once with raw ``os`` calls: one line holds
the ppid (the children map comes from the same pass) and the CPU counters; only the groups'
members have their ``statm`` read and their ``fd`` directory counted, once each even when a
process is in two groups (the pool's workers are in "pool" and in "clients"). What is left is
mostly the kernel's work behind those reads. Measured with 503 clients among 1,086 processes
(``tests/bench/test_sampler_bench.py``; docs/performance.md, "The host sampler at 500
clients"): ~140 ms of CPU per sample through psutil, ~26 ms this way.

The values are psutil's, by its own formulas (``tests/infra/test_procstat.py`` compares
them on real processes): ``cpu_times`` is ``utime``/``stime``/``cutime``/``cstime`` over
``SC_CLK_TCK``; ``memory_info().rss`` is ``statm``'s resident pages times ``SC_PAGE_SIZE``
(not ``stat``'s ``rss`` field: this kernel, 6.18, sums its per-CPU counters exactly for ``statm``
only, and ``stat``'s was measured up to 18 pages off on a sleeping process); ``num_fds``
is the length of the ``fd`` listing (for the reading process itself that includes the listing's
own descriptor, as psutil's does). A process that is gone, or not ours to read, between the
listing and its read is left out, as the sampler skipped psutil's ``NoSuchProcess`` /
``AccessDenied`` / ``ZombieProcess``. A process born after the pass is read on its own when a
group names it (a new pool worker). There is no cache between samples, so a reused pid is simply
a new process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

PROC = "/proc"
#: psutil's ``CLOCK_TICKS`` and ``PAGESIZE``, from the same calls.
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
#: Fields after the comm's closing parenthesis (``proc(5)``, 0-based from ``state``).
_PPID, _UTIME, _STIME, _CUTIME, _CSTIME = 1, 11, 12, 13, 14
_READ_BYTES = 4096  # a stat line is under ~1.2 kB (52 numbers and a comm of at most 64 bytes)


@dataclass(frozen=True, slots=True)
class ProcStat:
    """One process's ``/proc/PID/stat``: its parent, and seconds as psutil's ``cpu_times``."""

    ppid: int
    user: float
    system: float
    children_user: float  # CPU of children it has reaped (waited for)
    children_system: float


@dataclass(frozen=True)
class GroupReading:
    """One group of processes summed at one sample."""

    cpu_s: float  # cumulative CPU seconds of the group, reaped children included
    rss_bytes: int
    processes: int
    fds: int  # open file descriptors (sockets, pipes, files): flat over a long run, or leaking


def parse_stat(data: bytes) -> ProcStat:
    """A ``stat`` line's fields; the comm may hold spaces and parentheses, so the fields are
    counted from its *last* closing parenthesis. ValueError/IndexError if it is not one."""
    fields = data[data.rindex(b")") + 2 :].split()
    return ProcStat(
        ppid=int(fields[_PPID]),
        user=int(fields[_UTIME]) / CLOCK_TICKS,
        system=int(fields[_STIME]) / CLOCK_TICKS,
        children_user=int(fields[_CUTIME]) / CLOCK_TICKS,
        children_system=int(fields[_CSTIME]) / CLOCK_TICKS,
    )


def _read(path: str) -> bytes | None:
    """A small ``/proc`` file in one read (open, read, close; no Python file object)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, _READ_BYTES)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_stat(pid: int, proc: str = PROC) -> ProcStat | None:
    """One process's counters; None when it is gone or cannot be read."""
    data = _read(f"{proc}/{pid}/stat")
    try:
        return None if data is None else parse_stat(data)
    except (ValueError, IndexError):
        return None


def read_rss(pid: int, proc: str = PROC) -> int | None:
    """Resident bytes as psutil's ``memory_info().rss``; None when gone or not readable."""
    data = _read(f"{proc}/{pid}/statm")
    try:
        return None if data is None else int(data.split()[1]) * PAGE_SIZE
    except (ValueError, IndexError):
        return None


def scan(proc: str = PROC) -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, the ``stat`` line) of every process on the host (``/proc``'s numeric
    entries: thread group leaders). Only the ppid is parsed here: most processes on the host
    are no group's members, and the rest of a line is parsed only for those that are."""
    found: dict[int, tuple[int, bytes]] = {}
    for name in os.listdir(proc):  # noqa: PTH208 - raw os calls: the point is fewer objects
        if name.isdigit():
            data = _read(f"{proc}/{name}/stat")
            try:
                if data is not None:
                    found[int(name)] = (int(data.rpartition(b")")[2].split(None, 2)[1]), data)
            except (ValueError, IndexError):
                continue
    return found


@functools.cache
def _fd_dir_has_size(proc: str) -> bool:
    """Whether ``stat`` of a ``fd`` directory gives the number of open descriptors as its size
    (Linux 6.2 and later; before, 0): this process has some open, so 0 means not supported."""
    try:
        return os.stat(f"{proc}/self/fd").st_size > 0  # noqa: PTH116 - as above
    except OSError:
        return False


def count_fds(pid: int, proc: str = PROC) -> int | None:
    """``len(os.listdir('/proc/PID/fd'))`` as psutil's ``num_fds``; None when gone or not ours.

    Where the kernel gives the count as the directory's size, one ``stat`` (~3 us here) instead
    of a listing (~13 us), for processes of our own user (the kernel would refuse others' listing,
    which psutil reported as AccessDenied: those, and this process, whose listing counts its own
    descriptor in psutil's figure, are still listed).
    """
    path = f"{proc}/{pid}/fd"
    try:
        if pid != os.getpid() and _fd_dir_has_size(proc):
            status = os.stat(path)  # noqa: PTH116 - as above
            if status.st_uid == os.geteuid():
                return status.st_size
        return len(os.listdir(path))  # noqa: PTH208 - raw os calls: the point is fewer objects
    except OSError:
        return None


class Snapshot:
    """One pass over ``/proc`` for one sample: every group is summed from it.

    A member's resident set and descriptors are read lazily, for members only, once per process
    whatever the number of groups it is in.
    """

    def __init__(self, proc: str = PROC) -> None:
        self._proc = proc
        self._lines = scan(proc)
        self._stats: dict[int, ProcStat | None] = {}
        self._children: dict[int, list[int]] | None = None
        self._members: dict[int, tuple[int, int] | None] = {}

    def children(self) -> Mapping[int, list[int]]:
        """ppid -> pids, from the same pass (built once, when a group first needs it)."""
        if self._children is None:
            self._children = {}
            for pid, (ppid, _) in self._lines.items():
                self._children.setdefault(ppid, []).append(pid)
        return self._children

    def members(self, roots: Iterable[int]) -> list[int]:
        """The roots and all their descendants, sorted."""
        children = self.children()
        seen: set[int] = set()
        stack = list(roots)
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            stack.extend(children.get(pid, ()))
        return sorted(seen)

    def _stat(self, pid: int) -> ProcStat | None:
        if pid not in self._stats:
            line = self._lines.get(pid)
            try:
                # Not in the pass: born since (a new pool worker), or gone; read it on its own.
                stat = read_stat(pid, self._proc) if line is None else parse_stat(line[1])
            except (ValueError, IndexError):
                stat = None
            self._stats[pid] = stat
        return self._stats[pid]

    def _own(self, pid: int) -> tuple[int, int] | None:
        """(rss bytes, fds) of a member, read once per sample; None: gone or not ours."""
        if pid not in self._members:
            rss = read_rss(pid, self._proc)
            fds = count_fds(pid, self._proc) if rss is not None else None
            self._members[pid] = None if rss is None or fds is None else (rss, fds)
        return self._members[pid]

    def read(self, pids: Sequence[int], *, reaped: bool) -> GroupReading:
        """Sum the members' counters; ``reaped`` adds the CPU of children they have reaped.

        A member whose ``stat`` or ``fd`` listing cannot be read is not counted at all (gone, or
        not ours), as psutil's errors were skipped whole."""
        cpu = 0.0
        rss = 0
        count = 0
        fds = 0
        for pid in pids:
            stat = self._stat(pid)
            own = self._own(pid) if stat is not None else None
            if stat is None or own is None:
                continue
            # The same additions, in the same order, as over psutil's cpu_times.
            cpu += stat.user + stat.system
            if reaped:
                cpu += stat.children_user + stat.children_system
            rss += own[0]
            fds += own[1]
            count += 1
        return GroupReading(cpu_s=cpu, rss_bytes=rss, processes=count, fds=fds)
