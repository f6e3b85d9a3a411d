"""The cgroup's own counters over a run: CPU used and throttled, memory peak and reclaim, OOM kills.

Why the cgroup's counters rather than psutil or gunicorn's log: a throttled server looks idle
to ``top`` (it is waiting for its next CFS period, not running), an OOM-killed worker is
respawned by gunicorn with one log line that may never be flushed, and an OOM-killed master
takes the log with it. The kernel counts all of these in the cgroup, monotonically, whoever
dies: ``cpu.stat`` (periods, throttled periods and time), ``cpuacct.usage`` / ``usage_usec``,
``memory.max_usage_in_bytes`` / ``memory.peak``, ``memory.oom_control`` / ``memory.events``.

Memory pressure is what the incident had (the host's memory, not its CPU, was the bottleneck), so
the reclaim it causes is counted too: how often usage hit the limit (v1 ``memory.failcnt`` and
``memory.memsw.failcnt``, v2 ``memory.events`` ``max``; this machine's kernel leaves v1's at 0
even with the peak at the limit, so the diagnosis also takes a peak at the limit as a hit),
pages the server needed again after the kernel evicted them (``memory.stat``
``workingset_refault_*``), major faults (``pgmajfault``: a page read back from disk), and, where
the kernel keeps one per cgroup (``memory.pressure``: cgroup v2, or v1 with ``psi_v1``), the time
some task stalled on memory.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pipstorm.infra.periodic import Periodic
from pipstorm.infra.pypiserver.cgroups import Cgroup

SAMPLE_EVERY_S = 1.0
OnCgroupSample = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class CgroupCounters:
    """One reading of the cgroup's cumulative counters (memory_bytes is the current use)."""

    cpu_s: float
    periods: int
    throttled_periods: int
    throttled_s: float
    memory_bytes: int
    memory_peak_bytes: int
    oom_kills: int
    processes: int
    major_faults: int = 0
    refaults: int = 0
    limit_hits: int = 0
    memory_stall_us: int | None = None  # None: no memory.pressure for this cgroup


@dataclass(frozen=True)
class CgroupSummary:
    """A run's figures from the cgroup: what the server used, how often it was held back."""

    cpu_s: float
    periods: int
    throttled_periods: int
    throttled_s: float
    memory_peak_mb: float
    oom_kills: int
    survived: bool
    major_faults: int = 0
    refaults: int = 0
    limit_hits: int = 0
    memory_stall_s: float | None = None

    @property
    def throttled_ratio(self) -> float:
        """Share of CFS periods in which the server wanted more CPU than its quota."""
        return self.throttled_periods / self.periods if self.periods else 0.0

    def as_record(self) -> dict[str, Any]:
        """The JSON form for run.json and reports."""
        record = asdict(self)
        record["throttled_ratio"] = round(self.throttled_ratio, 4)
        return record


def read_counters(cgroup: Cgroup) -> CgroupCounters:
    """The counters now; a directory that vanished reads as zeros (never raises)."""
    if cgroup.version == 2:
        return _read_v2(cgroup.dirs[0])
    stat: dict[str, int] = {}
    usage_ns = 0
    memory = peak = ooms = hits = 0
    memory_stat: dict[str, int] = {}
    stall: int | None = None
    for directory in cgroup.dirs:
        if (directory / "cpu.stat").exists():
            stat = _keyed(directory / "cpu.stat")
        if (directory / "cpuacct.usage").exists():
            usage_ns = _int(directory / "cpuacct.usage")
        if (directory / "memory.usage_in_bytes").exists():
            memory = _int(directory / "memory.usage_in_bytes")
            peak = _int(directory / "memory.max_usage_in_bytes")
            ooms = _keyed(directory / "memory.oom_control").get("oom_kill", 0)
            memory_stat = _keyed(directory / "memory.stat")
            # With memsw set to the same limit (cgroups.py), the memsw counter is charged
            # first and fails first: the limit's hits are counted there, not in failcnt.
            hits = max(_int(directory / "memory.failcnt"), _int(directory / "memory.memsw.failcnt"))
        if stall is None:
            stall = _stall_us(directory / "memory.pressure")
    return CgroupCounters(
        cpu_s=usage_ns / 1e9,
        periods=stat.get("nr_periods", 0),
        throttled_periods=stat.get("nr_throttled", 0),
        throttled_s=stat.get("throttled_time", 0) / 1e9,
        memory_bytes=memory,
        memory_peak_bytes=peak,
        oom_kills=ooms,
        processes=len(cgroup.pids()),
        major_faults=memory_stat.get("pgmajfault", 0),
        refaults=_refaults(memory_stat),
        limit_hits=hits,
        memory_stall_us=stall,
    )


def _refaults(memory_stat: dict[str, int]) -> int:
    """Evicted pages needed again: file and anon since Linux 5.9, one counter before."""
    if "workingset_refault_file" in memory_stat or "workingset_refault_anon" in memory_stat:
        return memory_stat.get("workingset_refault_file", 0) + memory_stat.get(
            "workingset_refault_anon", 0
        )
    return memory_stat.get("workingset_refault", 0)


def _stall_us(path: Path) -> int | None:
    """``some ... total=US`` of a pressure file: time at least one task waited on memory."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        kind, _, fields = line.partition(" ")
        if kind == "some":
            for item in fields.split():
                key, _, value = item.partition("=")
                if key == "total" and value.isdigit():
                    return int(value)
    return None


def _read_v2(directory: Path) -> CgroupCounters:
    stat = _keyed(directory / "cpu.stat")
    memory = _int(directory / "memory.current")
    peak_file = directory / "memory.peak"  # Linux >= 5.19
    memory_stat = _keyed(directory / "memory.stat")
    events = _keyed(directory / "memory.events")
    return CgroupCounters(
        cpu_s=stat.get("usage_usec", 0) / 1e6,
        periods=stat.get("nr_periods", 0),
        throttled_periods=stat.get("nr_throttled", 0),
        throttled_s=stat.get("throttled_usec", 0) / 1e6,
        memory_bytes=memory,
        memory_peak_bytes=_int(peak_file) if peak_file.exists() else memory,
        oom_kills=events.get("oom_kill", 0),
        processes=len(Cgroup(version=2, name=directory.name, dirs=(directory,)).pids()),
        major_faults=memory_stat.get("pgmajfault", 0),
        refaults=_refaults(memory_stat),
        limit_hits=events.get("max", 0),
        memory_stall_us=_stall_us(directory / "memory.pressure"),
    )


def _keyed(path: Path) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if value.strip().lstrip("-").isdigit():
                values[key] = int(value)
    return values


def _int(path: Path) -> int:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return 0


class CgroupSampler:
    """Samples a cgroup every ``every_s`` seconds in a daemon thread; a context manager.

    ``alive`` says whether the server (its master) still runs; a sample records it, and the
    summary's ``survived`` is the last answer. Samples go to ``on_sample`` as they are taken.
    """

    def __init__(
        self,
        cgroup: Cgroup,
        *,
        alive: Callable[[], bool],
        on_sample: OnCgroupSample | None = None,
        every_s: float = SAMPLE_EVERY_S,
    ) -> None:
        self.cgroup = cgroup
        self.every_s = every_s
        self._alive = alive
        self._on_sample = on_sample
        self._first: CgroupCounters | None = None
        self._last: CgroupCounters | None = None
        self._last_mono = 0.0
        self._peak = 0
        self._survived = True
        self._ticker = Periodic(self._tick, every_s=every_s, name="cgroup-sampler")
        self._started = False
        self._lock = threading.Lock()

    @property
    def error(self) -> str | None:
        """What the last failed sample raised, as one line (sampling never breaks a run)."""
        return self._ticker.error

    def start(self) -> None:
        """Take the baseline reading and start sampling."""
        if self._started:
            raise RuntimeError("the cgroup sampler is already running")
        self._started = True
        self.sample()
        self._ticker.start()

    def stop(self) -> CgroupSummary:
        """Stop sampling (one last reading first) and return the run's summary."""
        self._ticker.stop()
        self.sample()
        return self.summary()

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
        sample = self.sample()
        if sample is not None and self._on_sample is not None:
            self._on_sample(sample)

    def sample(self) -> dict[str, Any] | None:
        """One reading as a sample dict (None for the first, which has nothing to differ from)."""
        with self._lock:
            if not all(directory.is_dir() for directory in self.cgroup.dirs):
                return None  # removed (the server was stopped): keep the last reading
            now = read_counters(self.cgroup)
            mono = time.monotonic()
            alive = self._alive()
            self._survived = self._survived and alive
            self._peak = max(self._peak, now.memory_peak_bytes, now.memory_bytes)
            previous, interval = self._last, mono - self._last_mono
            self._last, self._last_mono = now, mono
            if self._first is None:
                self._first = now
            if previous is None or interval <= 0:
                return None
            periods = now.periods - previous.periods
            throttled = now.throttled_periods - previous.throttled_periods
            return {
                "ts": round(time.time(), 3),
                "interval_s": round(interval, 3),
                "cpu_percent": round(max(0.0, 100 * (now.cpu_s - previous.cpu_s) / interval), 1),
                "throttled_s": round(max(0.0, now.throttled_s - previous.throttled_s), 4),
                "throttled_periods": max(0, throttled),
                "periods": max(0, periods),
                "throttled_percent": round(100 * throttled / periods, 1) if periods > 0 else 0.0,
                "memory_mb": round(now.memory_bytes / 2**20, 1),
                "memory_peak_mb": round(self._peak / 2**20, 1),
                "oom_kills": now.oom_kills,
                "processes": now.processes,
                "server_alive": alive,
                "major_faults": max(0, now.major_faults - previous.major_faults),
                "refaults": max(0, now.refaults - previous.refaults),
                "limit_hits": max(0, now.limit_hits - previous.limit_hits),
                "memory_stall_s": _stall_delta_s(previous, now),
            }

    def summary(self) -> CgroupSummary:
        """The run so far: differences of the counters since ``start``."""
        with self._lock:
            first, last = self._first, self._last
            if first is None or last is None:
                raise RuntimeError("the cgroup sampler never read its counters")
            return CgroupSummary(
                cpu_s=round(last.cpu_s - first.cpu_s, 3),
                periods=last.periods - first.periods,
                throttled_periods=last.throttled_periods - first.throttled_periods,
                throttled_s=round(last.throttled_s - first.throttled_s, 3),
                memory_peak_mb=round(self._peak / 2**20, 1),
                # Cumulative since the cgroup was made: a kill during start-up counts too.
                oom_kills=last.oom_kills,
                survived=self._survived,
                major_faults=max(0, last.major_faults - first.major_faults),
                refaults=max(0, last.refaults - first.refaults),
                limit_hits=max(0, last.limit_hits - first.limit_hits),
                memory_stall_s=_stall_delta_s(first, last),
            )


def _stall_delta_s(before: CgroupCounters, after: CgroupCounters) -> float | None:
    """Seconds of memory stall between two readings; None where the kernel keeps none."""
    if before.memory_stall_us is None or after.memory_stall_us is None:
        return None
    return round(max(0, after.memory_stall_us - before.memory_stall_us) / 1e6, 3)
