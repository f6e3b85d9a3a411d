"""The host sampler's CPU per sample at ~500 clients: psutil's objects (before) vs one /proc pass.

What an x170 burst leaves alive, with sleeping processes instead of pips: a "pool worker" with
two launchers of ``SAMPLER_BENCH_CLIENTS`` (500) children between them, ``SAMPLER_BENCH_OTHERS``
(500) unrelated processes (the host had ~1,100 at x170), a "target" with 32 threads (the bench's
static index has a pool of 32) and a "proxy" with two. The groups of
``pipstorm.engine.run.sampler`` (engine, pool, clients, proxy, target) are then read
``SAMPLER_BENCH_SAMPLES`` (20) times each way, alternating which goes first:

- ``psutil``: how the sampler read them before (copied below): ``process_iter(["ppid"])`` for
  the children map, then a cached ``psutil.Process`` per member with ``is_running()`` and
  ``oneshot(cpu_times, memory_info, num_fds)``;
- ``procstat``: ``pipstorm.infra.procstat.Snapshot``, what the sampler does now.

Per sample: CPU seconds of the reading thread (``time.thread_time``) and wall time; the ratio;
then a whole ``HostSampler.sample()`` (host CPU and memory from psutil, the run-queue reads of
the proxy's and target's threads included) and the run-queue part alone, so what is left of a
sample's cost is on record. Asserts only that both ways found the same processes and figures
(the tree is asleep). ``make bench`` runs it; ``-k sampler`` picks this file.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.run.runqueue import RunQueueWatch
from pipstorm.engine.run.sampler import HostSampler
from pipstorm.infra.procstat import GroupReading, Snapshot

CLIENTS = int(os.environ.get("SAMPLER_BENCH_CLIENTS", "500"))
OTHERS = int(os.environ.get("SAMPLER_BENCH_OTHERS", "500"))
SAMPLES = int(os.environ.get("SAMPLER_BENCH_SAMPLES", "20"))

# argv: read fd, ready fd, launchers, children per launcher, threads. Every process blocks on
# the read fd until the bench closes its write end; then all exit and each parent reaps.
SLEEPERS = """
import os, sys, threading
r, ready, launchers, children, threads = map(int, sys.argv[1:])
for _ in range(threads):
    threading.Thread(target=os.read, args=(r, 1), daemon=True).start()
kids = []
for _ in range(launchers):
    pid = os.fork()
    if pid == 0:
        for _ in range(children):
            if os.fork() == 0:
                os.read(r, 1)
                os._exit(0)
        os.write(ready, b"l")
        while True:
            try:
                os.wait()
            except ChildProcessError:
                os._exit(0)
    kids.append(pid)
if not launchers:
    os.write(ready, b"l")
os.read(r, 1)
for pid in kids:
    os.waitpid(pid, 0)
"""


@contextmanager
def _sleepers(launchers: int, children: int, threads: int = 0) -> Iterator[int]:
    """A process tree asleep until the block ends; yields its root's pid."""
    read_fd, write_fd = os.pipe()
    ready_r, ready_w = os.pipe()
    argv = [str(read_fd), str(ready_w), str(launchers), str(children), str(threads)]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLEEPERS, *argv], pass_fds=(read_fd, ready_w), start_new_session=True
    )
    os.close(read_fd)
    os.close(ready_w)
    try:
        got = b""
        while len(got) < max(1, launchers):
            chunk = os.read(ready_r, 16)
            assert chunk, "the sleepers' tree died while starting"
            got += chunk
        yield proc.pid
    finally:
        os.close(write_fd)  # EOF everywhere: every sleeper exits, its parent reaps it
        os.close(ready_r)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


class _PsutilWay:
    """The sampler's reading before this change (engine/run/sampler.py at 83e591c)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}

    @staticmethod
    def children() -> dict[int, list[int]]:
        children: dict[int, list[int]] = {}
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if isinstance(ppid, int):
                children.setdefault(ppid, []).append(proc.pid)
        return children

    def read(self, pids: Sequence[int], *, reaped: bool) -> GroupReading:
        cpu, rss, count, fds = 0.0, 0, 0, 0
        for pid in pids:
            proc = self._procs.get(pid)
            try:
                if proc is None or not proc.is_running():
                    proc = self._procs[pid] = psutil.Process(pid)
                with proc.oneshot():
                    times = proc.cpu_times()
                    rss += proc.memory_info().rss
                    fds += proc.num_fds()
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                self._procs.pop(pid, None)
                continue
            cpu += times.user + times.system
            if reaped:
                cpu += times.children_user + times.children_system
            count += 1
        return GroupReading(cpu_s=cpu, rss_bytes=rss, processes=count, fds=fds)

    def forget_except(self, alive: set[int]) -> None:
        for pid in [p for p in self._procs if p not in alive]:
            del self._procs[pid]


def _members(roots: Sequence[int], children: Mapping[int, list[int]]) -> list[int]:
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        pid = stack.pop()
        if pid not in seen:
            seen.add(pid)
            stack.extend(children.get(pid, ()))
    return sorted(seen)


Groups = dict[str, tuple[list[int], bool]]  # name -> (roots, own only)


def _read_psutil(way: _PsutilWay, groups: Groups) -> dict[str, GroupReading]:
    children = way.children()
    readings, alive = {}, set()
    for name, (roots, own) in groups.items():
        members = roots if own else _members(roots, children)
        alive.update(members)
        readings[name] = way.read(members, reaped=not own)
    way.forget_except(alive)
    return readings


def _read_procstat(groups: Groups) -> dict[str, GroupReading]:
    snapshot = Snapshot()
    return {
        name: snapshot.read(roots if own else snapshot.members(roots), reaped=not own)
        for name, (roots, own) in groups.items()
    }


def _timed(read: Callable[[], object]) -> tuple[float, float, object]:
    cpu, wall = time.thread_time(), time.perf_counter()
    result = read()
    return time.thread_time() - cpu, time.perf_counter() - wall, result


def _ms(values: list[float]) -> str:
    return f"median {1000 * statistics.median(values):.2f} ms (min {1000 * min(values):.2f})"


@pytest.mark.bench
def test_sampler_cpu_per_sample(tmp_path: Path) -> None:
    with ExitStack() as stack:
        worker = stack.enter_context(_sleepers(2, CLIENTS // 2))
        stack.enter_context(_sleepers(2, OTHERS // 2))
        target = stack.enter_context(_sleepers(0, 0, threads=31))
        proxy = stack.enter_context(_sleepers(0, 0, threads=1))
        groups: Groups = {
            "engine": ([os.getpid()], True),
            "proxy": ([proxy], False),
            "target": ([target], False),
            "pool": ([worker], True),
            "clients": ([worker], False),
        }
        hosted = len(psutil.pids())
        way = _PsutilWay()
        _read_psutil(way, groups)  # both warm: the sampler's cache lives across samples
        _read_procstat(groups)
        cpu: dict[str, list[float]] = {"psutil": [], "procstat": []}
        wall: dict[str, list[float]] = {"psutil": [], "procstat": []}
        last: dict[str, object] = {}
        for index in range(SAMPLES):
            ways = {
                "psutil": lambda: _read_psutil(way, groups),
                "procstat": lambda: _read_procstat(groups),
            }
            for name in sorted(ways, reverse=bool(index % 2)):
                used, took, last[name] = _timed(ways[name])
                cpu[name].append(used)
                wall[name].append(took)
        sampler = HostSampler(
            tmp_path / "host.jsonl",
            proxy_pid=proxy,
            target_pid=target,
            client_pids=lambda: [worker],
        )
        sampler.sample()
        whole = [_timed(sampler.sample)[0] for _ in range(SAMPLES)]
        watch = RunQueueWatch()
        watch.read([proxy, target])
        runq = [_timed(lambda: watch.read([proxy, target]))[0] for _ in range(SAMPLES)]
    old, new = last["psutil"], last["procstat"]
    assert isinstance(old, dict) and isinstance(new, dict)
    assert new["clients"].processes == 1 + 2 + CLIENTS // 2 * 2
    for name in ("pool", "clients", "proxy", "target"):  # asleep: the same figures both ways
        assert new[name] == old[name], name
    ratio = statistics.median(cpu["procstat"]) / statistics.median(cpu["psutil"])
    load = " ".join(f"{x:.2f}" for x in psutil.getloadavg())
    print(
        f"\nsampler bench: {new['clients'].processes} processes in 'clients', {hosted} on the "
        f"host, {SAMPLES} samples each way, alternated; load {load}\n"
        f"  groups read the psutil way (before): CPU {_ms(cpu['psutil'])}, wall "
        f"{_ms(wall['psutil'])}\n"
        f"  groups read from one /proc pass (now): CPU {_ms(cpu['procstat'])}, wall "
        f"{_ms(wall['procstat'])}\n"
        f"  procstat/psutil CPU per sample {ratio:.2f}x\n"
        f"  a whole HostSampler.sample() now: CPU {_ms(whole)}; of which the run-queue reads "
        f"(proxy 2 + target 32 threads): CPU {_ms(runq)}"
    )
