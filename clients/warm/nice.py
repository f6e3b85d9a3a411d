"""A process's nice value that the scheduler actually honours: its own, and its autogroup's;
and the cpu cgroup a process moves itself into (``join_cgroup``).

Stdlib only (the warm agent's children call it in the client's interpreter; pipstorm's exec
path and the embedded target's protection call it too).

Why the autogroup: with ``kernel.sched_autogroup_enabled = 1`` (the default of most desktop and
many server kernels, and of this project's 2-core machine) every session is one scheduling group,
and a task's nice only weighs against the tasks of its *own* session. Every client runs in its own
session (``setsid``: its group is stopped as one), so a client niced +10 still weighed as much as
the proxy or the target: measured here with six busy loops at nice +10 beside one nice-0 loop,
the nice-0 loop got 0.84 s of CPU in 3 s when the loops each had their own session, 2.90 s when
they shared its session, and 2.99 s with their sessions' autogroup niced +10 too. So a client's
nice is written to ``/proc/PID/autogroup`` as well (the process leads its own session, so that
group is its and its descendants' only). Where autogroups do not exist (the file is absent, or
the task sits in a cgroup other than the root, where the kernel ignores autogroups) only the
plain nice applies, which is then the one that counts.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def autogroup_path(pid: int) -> str:
    """The procfs file of ``pid``'s autogroup (``pid`` 0: this process)."""
    return f"/proc/{pid or 'self'}/autogroup"


def set_nice(pid: int, nice: int, *, autogroup: bool = True) -> bool:
    """Set ``pid``'s nice (0: this process), and its autogroup's when ``autogroup`` (only for a
    process that leads its own session: the group is shared by the session). Returns whether
    the plain nice was applied; an autogroup that cannot be set (absent, not permitted) is
    left as it is, silently: it is an improvement, never a condition of running."""
    try:
        os.setpriority(os.PRIO_PROCESS, pid, nice)
    except OSError:
        return False
    if autogroup:
        with contextlib.suppress(OSError):
            Path(autogroup_path(pid)).write_text(str(nice), encoding="ascii")
    return True


def autogroup_nice(pid: int) -> int | None:
    """The nice of ``pid``'s autogroup, or None where there is none (``/autogroup-N nice K``)."""
    try:
        text = Path(autogroup_path(pid)).read_text(encoding="ascii").strip()
    except OSError:
        return None
    _, _, value = text.rpartition(" ")
    try:
        return int(value)
    except ValueError:
        return None


def join_cgroup(procs: str) -> bool:
    """Move this process (every thread; its later children follow) into the cgroup whose
    ``cgroup.procs`` file is ``procs``. Returns whether the kernel took it; a cgroup that cannot
    be joined (gone, not permitted) is left, silently, as a nice is: the process then weighs as
    it did before (its own autogroup), which is an improvement missed, never a failed run.

    Inside any cgroup but the root, the kernel ignores autogroups: the process then weighs as
    its nice among the cgroup's tasks, and the cgroup as its ``cpu.shares`` against the rest."""
    try:
        fd = os.open(procs, os.O_WRONLY)
    except OSError:
        return False
    try:
        os.write(fd, str(os.getpid()).encode("ascii"))  # one value per write(2)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
