"""How long the processes that time requests waited for a CPU: Linux's per-thread ``schedstat``.

What distorts a load generator's latency figures is not a busy host but a proxy (or a local
target) that is ready to run and waits for a core while a request is in flight: that wait is
recorded as the index's latency. The kernel counts exactly that per thread:
``/proc/PID/task/TID/schedstat`` holds three numbers, the nanoseconds run on a CPU, the
nanoseconds spent *waiting on a run queue* (runnable, not running: ``sched_info.run_delay``) and
the number of time slices. psutil exposes neither (its ``cpu_times`` are the first number
rounded to clock ticks; the wait only appears with delay accounting, which is off by default
since Linux 5.14): so this module reads ``/proc`` itself.

Per thread, because the process-level file (``/proc/PID/schedstat``) is the main thread's
alone. A thread's counters vanish with it: a thread that exits between two samples takes its
last wait along (a thread born since the last sample is counted from zero, as the kernel starts
it). ``threads_gone`` says how many did, and ``run_ms`` (the same threads' CPU) set beside the
group's CPU from psutil (which the kernel keeps for exited threads too) says how much of the
group's work the wait figure covers (``pipstorm.engine.analysis.generator.cpu_wait``).

A process in a cgroup with a CPU quota (the sized embedded target) also waits on its run
queue while the quota throttles it: that wait is the index's limit, not the generator's. The
sampler therefore records the target cgroup's throttled time beside its wait, and the rule does
not count the target's wait in seconds it was throttled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


def available(proc: Path = PROC) -> bool:
    """Whether this kernel keeps ``schedstat`` (``CONFIG_SCHED_INFO``) with a wait counter."""
    try:
        fields = (proc / "self" / "schedstat").read_text(encoding="ascii").split()
    except OSError:
        return False
    return len(fields) >= 2  # run time, run-queue wait[, slices]


def read_threads(pids: Iterable[int], proc: Path = PROC) -> dict[tuple[int, int], tuple[int, int]]:
    """``(pid, tid) -> (ns run, ns waited on a run queue)`` for every thread of ``pids``; a
    process or thread that is gone meanwhile is left out."""
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for pid in pids:
        try:
            tids = [entry.name for entry in (proc / str(pid) / "task").iterdir()]
        except OSError:
            continue
        for tid in tids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = (proc / str(pid) / "task" / tid / "schedstat").read_text(encoding="ascii")
                fields = text.split()
                found[pid, int(tid)] = (int(fields[0]), int(fields[1]))
    return found


@dataclass(frozen=True)
class WaitReading:
    """One group's threads over one sampling interval."""

    wait_s: float  # run-queue wait of the threads alive at this sample
    run_s: float  # their time on a CPU, from the same counters
    threads: int
    threads_gone: int  # threads seen at the last sample and gone now (their last wait is lost)
    #: The most one thread waited in the interval: how far back the group's wait can reach
    #: (a thread's wait is on record when it gets a CPU; threads wait side by side).
    wait_max_s: float = 0.0


class RunQueueWatch:
    """The run-queue wait of one group of processes between successive :meth:`read` calls."""

    def __init__(self, proc: Path = PROC) -> None:
        self._proc = proc
        self._last: dict[tuple[int, int], tuple[int, int]] | None = None

    def read(self, pids: Iterable[int]) -> WaitReading | None:
        """The wait since the last call; None on the first call (the baseline)."""
        now = read_threads(pids, self._proc)
        last, self._last = self._last, now
        if last is None:
            return None
        wait = run = longest = 0
        for key, (run_ns, wait_ns) in now.items():
            old_run, old_wait = last.get(key, (0, 0))  # born since: counted from zero
            # A reused thread id restarts its counters: then it is new, not negative.
            if run_ns < old_run or wait_ns < old_wait:
                old_run = old_wait = 0
            run += run_ns - old_run
            wait += wait_ns - old_wait
            longest = max(longest, wait_ns - old_wait)
        gone = len(last.keys() - now.keys())
        return WaitReading(
            wait_s=wait / 1e9,
            run_s=run / 1e9,
            threads=len(now),
            threads_gone=gone,
            wait_max_s=longest / 1e9,
        )
