"""Host sampling: CPU and memory of this host, the proxy, a local target and the clients.

Once a second a thread of the engine process appends one JSON line to ``host.jsonl`` in the run
directory, as it happens, so an interrupted run keeps what was sampled. The report reads it to
tell whether the generator itself was the bottleneck
(``pipstorm.engine.analysis.generator.saturation``).

Why a thread and not a process: the engine process is not time-critical (it hands runs to the
workers ten seconds ahead; the workers launch them on time), a sample costs milliseconds of CPU
(~30 ms with 500 clients alive), and every figure is a difference of cumulative counters divided
by the *measured* interval, so a sample taken late because the GIL was busy is still exact, just
later.

Why cumulative counters rather than ``psutil.Process.cpu_percent``: client processes live a
second or two, so most of them are born and gone between two samples. A group's CPU is counted
as ``user + system + children_user + children_system`` of every live member (roots and their
descendants): when a member exits and its parent reaps it, its CPU moves into the parent's
``children_*`` counters, so the group total stays continuous and no short-lived pip is missed.
(The pool's workers reap their pips with ``os.wait4``; gunicorn reaps its workers.)

The processes are read from one pass over ``/proc`` per sample (``pipstorm.infra.procstat``),
not through psutil's per-process objects: at x170 (~510 clients, ~1,100 processes on the host)
those cost the engine 10-19 % of a core. psutil still reads the host's CPU and memory (two files).

The proxy's and a local target's groups also carry their run-queue wait
(``pipstorm.engine.run.runqueue``: ``runq_wait_ms`` waited for a CPU in the interval, summed over
their threads; ``runq_wait_max_ms`` the most one thread waited; ``runq_run_ms`` the same threads'
CPU; ``runq_threads``/``runq_threads_gone``) and
a sized target its cgroup's ``throttled_ms``: what the generator rule judges
(``pipstorm.engine.analysis.generator.cpu_wait``). Absent where the kernel keeps no schedstat.

Units: ``host_cpu_percent`` is 0-100 of the whole machine; a group's ``cpu_percent`` is 100 per
fully busy core, as ``top`` shows it. ``rss_mb`` sums the members' resident sets (shared pages
are counted once per process, so it overstates a forked server's real use).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import psutil

from pipstorm.engine.run.runqueue import RunQueueWatch, WaitReading, available
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.infra.periodic import Periodic
from pipstorm.infra.procstat import GroupReading, Snapshot

#: Seconds between two samples.
SAMPLE_EVERY_S = 1.0
#: Groups measured without their descendants.
_OWN_ONLY = frozenset({"engine", "pool"})
#: Groups whose run-queue wait is sampled: the processes that time or serve requests.
_WAITED = ("proxy", "target")

Pids = Callable[[], Sequence[int]]
Counter = Callable[[], float | None]
OnSample = Callable[[Mapping[str, Any]], None]


def _busy(times: Any) -> tuple[float, float]:  # noqa: ANN401 - psutil's scputimes namedtuple
    """(busy, total) seconds of a CPU times tuple; idle and iowait are not busy (as psutil)."""
    total = float(sum(times))
    idle = float(times.idle) + float(getattr(times, "iowait", 0.0))
    return total - idle, total


def _percent(busy: float, total: float) -> float:
    return round(min(100.0, max(0.0, 100.0 * busy / total)), 1) if total > 0 else 0.0


class HostSampler:
    """Samples every ``every_s`` seconds in a daemon thread until stopped; a context manager.

    ``client_pids`` is called at each sample (the pool's workers come and go); the proxy and a
    local target are fixed pids, ``None`` when absent (a remote target is not ours to sample).
    ``on_sample`` sees each sample right after it is written (the proxy's priority guard).
    ``target_throttled_s``: the target cgroup's cumulative throttled seconds (a sized target).
    """

    def __init__(
        self,
        path: Path,
        *,
        proxy_pid: int | None,
        target_pid: int | None,
        client_pids: Pids,
        every_s: float = SAMPLE_EVERY_S,
        on_sample: OnSample | None = None,
        target_throttled_s: Counter | None = None,
    ) -> None:
        self.path = path
        self.every_s = every_s
        # The engine alone (its descendants are the groups below) and the pool's workers alone
        # (their own memory and descriptors: what must stay flat over a long run); every other
        # group is its roots plus their descendants ("clients": the workers and every client).
        self._groups: dict[str, Pids | None] = {
            "engine": lambda: [os.getpid()],
            "proxy": (lambda: [proxy_pid]) if proxy_pid is not None else None,
            "target": (lambda: [target_pid]) if target_pid is not None else None,
            "pool": client_pids,
            "clients": client_pids,
        }
        self._on_sample = on_sample
        self._target_pid = target_pid
        self._waits = {name: RunQueueWatch() for name in _WAITED} if available() else {}
        self._throttled = target_throttled_s
        self._last_throttled: float | None = None
        self._last_cpu: dict[str, float] = {}
        self._last_host: list[tuple[float, float]] = []
        self._last_mono = 0.0
        self._ticker = Periodic(self._tick, every_s=every_s, name="host-sampler")
        self._writer: JsonlWriter | None = None
        self.samples = 0

    @property
    def error(self) -> str | None:
        """What the last failed sample raised, as one line (sampling never breaks a run)."""
        return self._ticker.error

    def start(self) -> None:
        """Take the baseline reading and start the thread; the first line comes ``every_s``
        later."""
        if self._writer is not None:
            raise RuntimeError("the sampler is already running")
        self._writer = JsonlWriter(self.path)
        self.sample()  # baseline: counters only, nothing written
        self._ticker.start()

    def stop(self) -> None:
        """Stop the thread and close ``host.jsonl``; safe to call twice."""
        self._ticker.stop()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _tick(self) -> None:
        # After a stall the next sample is not hurried (pipstorm.infra.periodic): the stall
        # shows as a longer interval_s.
        sample = self.sample()
        if sample is not None and self._writer is not None:
            self._writer.write(sample)
            self.samples += 1
            if self._on_sample is not None:
                self._on_sample(sample)

    def _throttled_delta_s(self) -> float | None:
        """The target cgroup's throttled seconds since the last sample (None: not known)."""
        if self._throttled is None:
            return None
        try:
            now = self._throttled()
        except OSError:
            now = None
        last, self._last_throttled = self._last_throttled, now
        return None if now is None or last is None else max(0.0, now - last)

    def sample(self) -> dict[str, Any] | None:
        """One reading; the dict of a ``host.jsonl`` line, or None for the first (baseline)
        reading, which has no previous counters to differ from."""
        started = time.perf_counter()
        mono = time.monotonic()
        per_core = [_busy(t) for t in psutil.cpu_times(percpu=True)]
        snapshot = Snapshot()  # one pass over /proc serves every group
        readings: dict[str, GroupReading | None] = {}
        waits: dict[str, WaitReading | None] = {}
        for name, pids in self._groups.items():
            if pids is None:
                readings[name] = None
                continue
            own = name in _OWN_ONLY
            members = list(pids()) if own else snapshot.members(pids())
            readings[name] = snapshot.read(members, reaped=not own)
            if name in self._waits:
                waits[name] = self._waits[name].read(members)
        throttled = self._throttled_delta_s()
        first = not self._last_host
        interval = mono - self._last_mono
        previous_host, previous_cpu = self._last_host, self._last_cpu
        self._last_host, self._last_mono = per_core, mono
        self._last_cpu = {n: r.cpu_s for n, r in readings.items() if r is not None}
        if first or interval <= 0:
            return None
        deltas = [
            (busy - old_busy, total - old_total)
            for (busy, total), (old_busy, old_total) in zip(per_core, previous_host, strict=False)
        ]
        memory = psutil.virtual_memory()
        sample: dict[str, Any] = {
            "ts": round(time.time(), 3),
            "interval_s": round(interval, 3),
            "host_cpu_percent": _percent(sum(b for b, _ in deltas), sum(t for _, t in deltas)),
            "host_cpu_per_core": [_percent(b, t) for b, t in deltas],
            "host_mem_percent": round(memory.percent, 1),
            "host_mem_used_mb": round((memory.total - memory.available) / 2**20, 1),
            "host_mem_available_mb": round(memory.available / 2**20, 1),
            "load1": round(os.getloadavg()[0], 2),
        }
        for name, reading in readings.items():
            if reading is None:
                sample[name] = None
                continue
            used = reading.cpu_s - previous_cpu.get(name, reading.cpu_s)
            sample[name] = {
                # A member reaped by a process outside the group takes its CPU with it: a
                # negative difference is that loss, not negative work.
                "cpu_percent": round(max(0.0, 100.0 * used / interval), 1),
                "rss_mb": round(reading.rss_bytes / 2**20, 1),
                "processes": reading.processes,
                "fds": reading.fds,
            }
            _add_wait(sample[name], waits.get(name))
        if self._target_pid is not None and isinstance(sample.get("target"), dict):
            # The cores the target may run on: the generator rule counts only the CPU others
            # used there (pipstorm.engine.analysis.generator.cpu_wait, ATTRIBUTED).
            with contextlib.suppress(OSError):
                sample["target"]["cpus"] = sorted(os.sched_getaffinity(self._target_pid))
        if throttled is not None and isinstance(sample.get("target"), dict):
            sample["target"]["throttled_ms"] = round(1000 * throttled, 1)
        sample["sample_ms"] = round(1000 * (time.perf_counter() - started), 2)
        return sample


def _add_wait(group: dict[str, Any], wait: WaitReading | None) -> None:
    """The group's run-queue wait (``pipstorm.engine.run.runqueue``), when it was read."""
    if wait is None:
        return
    group["runq_wait_ms"] = round(1000 * wait.wait_s, 2)
    group["runq_run_ms"] = round(1000 * wait.run_s, 2)
    group["runq_threads"] = wait.threads
    group["runq_threads_gone"] = wait.threads_gone
    group["runq_wait_max_ms"] = round(1000 * wait.wait_max_s, 2)
