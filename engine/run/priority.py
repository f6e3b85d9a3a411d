"""Protect the measurement: the recording proxy runs at a better scheduling priority than the
clients.

The proxy times every request; when clients saturate the cores, a proxy waiting for a CPU adds
that wait to every latency it records. The clients are niced
(``pipstorm.clients.process.CLIENT_NICE``) and, where permitted, the proxy gets a real-time policy.
Measured on a 2-core machine with every core saturated by clients: nice alone barely protects the
proxy (+2 to +6 ms p99 added), while SCHED_FIFO does (+0.5 ms). So: SCHED_FIFO when permitted (root
or CAP_SYS_NICE), else a negative nice when permitted, else nothing; whatever was applied is
recorded in ``run.json``.

The embedded target (pipstorm's own pypiserver on this host) gets ``TARGET_NICE``, on every thread
of its processes and on its session's autogroup (``pipstorm.clients.warm.nice``: with autogroups,
a nice weighs only inside its session, and each client leads its own). Not a real-time policy:
a server may legitimately keep a core busy (an auth hash per request), and a real-time task must
not sit in a CPU-limited cgroup (the sized target's). Its threads also ask for the shortest EEVDF
slice (``pipstorm.infra.wakeup``): a nice sets a share, the slice how soon a woken thread
preempts a running client, which is what a server woken per request waits for. An index
pipstorm did not start (a static index on loopback) is watched, not changed
(``pipstorm.engine.run.target.local``).

Where root and cgroup v1 permit (``clients_cgroup``, ``pipstorm.infra.client_cgroup``), the
pool's workers, and so every launcher and client, run in one cpu cgroup that weighs as one nice-0
task (not 510 autogroups against the local target), and the warm clients that have sent their
first request move on into a second one that weighs less than the local target, so the ones
still on their way to it come first. Where a burst's release is small (``release_first``), the
warm clients wait at their gate in a third, heavy one, so at the instant the released ones come
before the local target too. Where not permitted, the record says why and nothing changes.

Safety: a SCHED_FIFO process that spins would starve the machine. The proxy is event-driven
(it waits on sockets), it is always a separate process, and only the proxy gets this (never the
target, never the clients). The kernel's RT throttling (``sched_rt_runtime_us``, 95 % by
default) leaves ordinary tasks a share anyway, ``SCHED_RESET_ON_FORK`` keeps anything the proxy
might spawn ordinary, and :class:`ProxyGuard` demotes the proxy to the ordinary policy if it ever
keeps a core fully busy.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil

from pipstorm.clients.warm.nice import autogroup_nice, set_nice
from pipstorm.infra.client_cgroup import create_group, procs_file, shares_of
from pipstorm.infra.pypiserver.cgroups import CgroupError
from pipstorm.infra.wakeup import set_slice, slice_us

#: The embedded target's nice (and its autogroup's): ahead of the clients, not real-time, and
#: the proxy's fallback value. Measured at x170 (2026-12-06, static index niced alike): at -5 and
#: at -20 its threads still waited 1-3 s (summed) in the burst's busiest seconds while running
#: 0.1-0.2 s, so the stronger nice bought nothing measurable, and a CPU-heavy pypiserver at -20
#: would outweigh the pool that launches runs on time (at -20 that run's launch lag p99 was
#: 4.3 s; one run each, not conclusive). Wake-up latency, not weight, is what a nice cannot fix.
TARGET_NICE = -5
#: What one released warm client needs of a CPU between its instant and its first request sent:
#: measured ~0.5 ms at x170 and at most ~1 ms at x25 (75 released in 0.03-0.05 s on 2 cores
#: beside a busy pypiserver, docs/performance.md); the upper figure.
RELEASE_CPU_S = 0.001
#: The longest a burst's release, put ahead of everything but the proxy (the ready group), may
#: hold a local index's CPU: 75 runs on 2 cores ~0.04 s, within it; 510 ~0.26 s, not (x170 was
#: then judged generator-bound, 52 %).
RELEASE_FIRST_BUDGET_S = 0.1
#: A low real-time priority: above every ordinary task, below the kernel's own RT threads.
PROXY_RT_PRIORITY = 10
#: The fallback for the proxy when a real-time policy is not permitted.
PROXY_NICE = -5
#: The guard demotes a SCHED_FIFO proxy using at least this much of a core ...
GUARD_CPU_PERCENT = 95.0
#: ... for this many consecutive samples.
GUARD_SAMPLES = 3


def _threads(pid: int) -> list[int]:
    """The thread ids of ``pid``: the scheduling policy is per thread on Linux."""
    try:
        return sorted(int(t.name) for t in Path(f"/proc/{pid}/task").iterdir())
    except (FileNotFoundError, ValueError):
        return [pid]


def protect_proxy(pid: int, *, mode: str = "auto") -> dict[str, Any]:
    """Give the proxy process ``pid`` a better priority than the clients; never raises.

    ``mode``: ``auto`` (SCHED_FIFO, else nice, else nothing), ``nice`` (nice only), ``none``.
    Returns what was applied, for ``run.json``: ``policy`` ("SCHED_FIFO", "nice" or "none"),
    ``rt_priority``/``nice`` and, when something was not permitted, ``fallback_reason``.
    """
    applied: dict[str, Any] = {"mode": mode, "policy": "none"}
    reasons: list[str] = []
    if mode == "auto":
        policy = getattr(os, "SCHED_FIFO", None)
        if policy is None:
            reasons.append("SCHED_FIFO: not available on this platform")
        else:
            try:
                flags = policy | getattr(os, "SCHED_RESET_ON_FORK", 0)
                for tid in _threads(pid):
                    os.sched_setscheduler(tid, flags, os.sched_param(PROXY_RT_PRIORITY))
            except OSError as exc:
                reasons.append(f"SCHED_FIFO: {exc.strerror or exc}")
            else:
                applied.update(policy="SCHED_FIFO", rt_priority=PROXY_RT_PRIORITY)
                runtime = _rt_runtime_us()
                if runtime is not None:
                    applied["sched_rt_runtime_us"] = runtime
                return applied
    if mode in ("auto", "nice"):
        try:
            for tid in _threads(pid):
                os.setpriority(os.PRIO_PROCESS, tid, PROXY_NICE)
        except OSError as exc:
            reasons.append(f"nice {PROXY_NICE}: {exc.strerror or exc}")
        else:
            applied.update(policy="nice", nice=PROXY_NICE)
    if reasons:
        applied["fallback_reason"] = "; ".join(reasons)
    return applied


def protect_target(pid: int | None) -> dict[str, Any]:
    """Give the embedded target's processes (``pid`` and its descendants) ``TARGET_NICE`` and the
    shortest slice; never raises. Returns what was applied, for ``run.json``: ``policy`` "nice"
    or "none", ``nice``, ``autogroup_nice`` (None where there is no autogroup),
    ``slice_us`` (read back from the kernel: its default where slices cannot be asked for) and
    ``fallback_reason``."""
    if pid is None:
        return {"policy": "none", "fallback_reason": "no local target"}
    try:
        members = [pid, *(p.pid for p in psutil.Process(pid).children(recursive=True))]
    except psutil.Error as exc:
        return {"policy": "none", "fallback_reason": f"target process: {exc}"}
    threads = [tid for member in members for tid in _threads(member)]
    applied = all(set_nice(tid, TARGET_NICE, autogroup=False) for tid in threads)
    set_nice(pid, TARGET_NICE)  # the server leads its session: its autogroup is the server's
    record: dict[str, Any] = {"policy": "nice" if applied else "none"}
    if applied:
        record["nice"] = TARGET_NICE
    else:
        record["fallback_reason"] = f"nice {TARGET_NICE}: not permitted"
    record["autogroup_nice"] = autogroup_nice(pid)
    for tid in threads:
        set_slice(tid)
    record["slice_us"] = slice_us(pid)
    return record


def demote_proxy(pid: int) -> bool:
    """Back to the ordinary policy (nice 0); False if that was not possible."""
    try:
        for tid in _threads(pid):
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
    except OSError:
        return False
    return True


def _rt_runtime_us() -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(Path("/proc/sys/kernel/sched_rt_runtime_us").read_text().strip())
    return None


class ProxyGuard:
    """A host-sampler hook: demotes a SCHED_FIFO proxy that keeps a core busy.

    An event-driven proxy near 100 % of a core for several seconds is either spinning or is
    itself the bottleneck; either way a real-time policy would then only starve the rest of the
    machine. The demotion is written into ``applied`` (the ``run.json`` record).
    """

    def __init__(self, pid: int, applied: dict[str, Any]) -> None:
        self.pid = pid
        self.applied = applied
        self._busy = 0

    def __call__(self, sample: Mapping[str, Any]) -> None:
        if self.applied.get("policy") != "SCHED_FIFO" or "demoted" in self.applied:
            return
        proxy = sample.get("proxy")
        cpu = proxy.get("cpu_percent") if isinstance(proxy, Mapping) else None
        self._busy = (
            self._busy + 1 if isinstance(cpu, int | float) and cpu >= GUARD_CPU_PERCENT else 0
        )
        if self._busy >= GUARD_SAMPLES:
            ok = demote_proxy(self.pid)
            self.applied["demoted"] = (
                f"proxy used >= {GUARD_CPU_PERCENT:g} % of a core for {GUARD_SAMPLES} s: "
                + ("back to the ordinary policy" if ok else "demotion failed")
            )


@contextlib.contextmanager
def clients_cgroup(record: dict[str, Any], *, wanted: bool, shares: int) -> Iterator[str | None]:
    """The ``cgroup.procs`` file of a new clients' cgroup with ``shares``
    (``pipstorm.infra.client_cgroup``), for the block (None: not ``wanted``, or not permitted
    here); removed when the block ends, killing what is still inside (after the pool's stop,
    nothing). ``record`` (in ``run.json``'s ``priority``) gets ``applied`` and ``cpu_shares``, or
    ``fallback_reason``: then the clients keep their own autogroups, as before."""
    if not wanted:
        yield None
        return
    try:
        group = create_group(shares)
    except CgroupError as exc:
        record.update(applied=False, fallback_reason=str(exc))
        yield None
        return
    record.update(applied=True, cpu_shares=shares_of(group), cgroup=group.name)
    try:
        yield procs_file(group)
    finally:
        with contextlib.suppress(CgroupError):
            group.remove()  # one left busy is retried at exit and by the next start


def release_first(largest_instant: int, cores: int) -> str | None:
    """None when a burst's released clients may come first (``READY_SHARES``): their release
    (``RELEASE_CPU_S`` each, spread over ``cores``) holds a local index for at most
    ``RELEASE_FIRST_BUDGET_S``; otherwise the reason they share the clients' weight with it."""
    cpu_s = largest_instant * RELEASE_CPU_S
    hold_s = cpu_s / max(1, cores)
    if hold_s <= RELEASE_FIRST_BUDGET_S:
        return None
    return (
        f"the largest instant's release ({largest_instant} runs, ~{cpu_s:.2f} CPU-s) could hold "
        f"a local index for ~{hold_s:.2f} s > {RELEASE_FIRST_BUDGET_S:g} s: released clients "
        "keep the clients' weight"
    )
