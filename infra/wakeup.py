"""A thread's EEVDF slice request: how soon it gets a core when it wakes on a busy machine.

Why: a nice (and a cgroup's ``cpu.shares``) sets a *share* of the CPU, not how soon a woken thread
runs. A local index woken for each request waits for the running client's slice to end first;
at x170 on 2 cores the bench's static index, niced -5 against one cgroup holding every client,
waited about as long as it ran, almost all of it in the burst's first half second. Since Linux
6.12 a fair task may ask for a shorter slice (``sched_setattr`` with ``sched_runtime``, 0.1-100
ms): a woken task whose slice is shorter than the running one's preempts it (the scheduler's
``PREEMPT_SHORT``), and the request is carried up the cgroup hierarchy. Measured (2026-12-06,
quiet; docs/performance.md, "An index served by its accepting thread, and a short slice"): with
100 us the index's counted share of its runnable time fell from 54-62 % to 48-61 % (one pool
thread) and from 45-47 % to 34-48 % (served by its accepting thread), its listing p95 from
313-345 to 251-308 ms; at x25 the embedded pypiserver showed no difference in three runs each.

Python has no ``os.sched_setattr``; no maintained library wraps it for fair tasks
(python-schedutils sets policies and affinity only), so this is the syscall through ctypes,
stdlib only. Where the
kernel predates custom slices it accepts the call and ignores the runtime; ``slice_us`` reads the
slice back (0 there), so what is recorded is what the kernel holds, not what was asked. Threads
and forked children inherit the request (measured here: a thread started after the call, and a
child forked after it, read the same slice).
"""

from __future__ import annotations

import ctypes
import os
import platform
from typing import Final

#: ``sched_setattr`` / ``sched_getattr`` syscall numbers (no libc wrapper in glibc < 2.41).
_SYSCALLS: Final = {"x86_64": (314, 315), "aarch64": (274, 275)}
#: The kernel's shortest slice request (``sched_runtime`` is clamped to 0.1-100 ms).
SHORTEST_SLICE_US: Final = 100


class _SchedAttr(ctypes.Structure):
    """``struct sched_attr`` up to ``sched_period`` (SCHED_ATTR_SIZE_VER0, 48 bytes)."""

    _fields_ = (
        ("size", ctypes.c_uint32),
        ("policy", ctypes.c_uint32),
        ("flags", ctypes.c_uint64),
        ("nice", ctypes.c_int32),
        ("priority", ctypes.c_uint32),
        ("runtime", ctypes.c_uint64),
        ("deadline", ctypes.c_uint64),
        ("period", ctypes.c_uint64),
    )


def _syscall(index: int) -> int | None:
    numbers = _SYSCALLS.get(platform.machine())
    return None if numbers is None or not hasattr(os, "SCHED_OTHER") else numbers[index]


def set_slice(tid: int, slice_us: int = SHORTEST_SLICE_US) -> bool:
    """Ask for a ``slice_us`` slice for thread ``tid`` (0: the calling thread), keeping its nice
    and the ordinary policy. Only for a thread under the ordinary policy (this call sets it).
    Returns whether the call was taken (not whether the kernel honours slices: ``slice_us``)."""
    number = _syscall(0)
    if number is None:
        return False
    try:
        nice = os.getpriority(os.PRIO_PROCESS, tid)
    except OSError:
        return False
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), os.SCHED_OTHER, 0, nice, 0, slice_us * 1000, 0, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.syscall(number, tid, ctypes.byref(attr), 0)) == 0


def slice_us(tid: int) -> int | None:
    """The slice the kernel holds for ``tid`` (µs): the one requested, else its default (1,400
    on this 2-core machine); 0 on a kernel without EEVDF slices; None where it cannot be read."""
    number = _syscall(1)
    if number is None:
        return None
    attr = _SchedAttr()
    libc = ctypes.CDLL(None, use_errno=True)
    if int(libc.syscall(number, tid, ctypes.byref(attr), ctypes.sizeof(attr), 0)) != 0:
        return None
    return int(attr.runtime) // 1000
