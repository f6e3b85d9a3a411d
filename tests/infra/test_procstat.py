"""The sampler's own ``/proc`` reader gives psutil's values on real processes.

psutil's ``cpu_times`` (user, system, children_user, children_system), ``memory_info().rss``,
``num_fds`` and ``ppid`` are the reference: the host sampler used them before, and host.jsonl's
figures must keep their meaning. A child that has reaped a CPU-burning grandchild (so its
``children_*`` counters are not zero), keeps a second grandchild sleeping (so the children map
has a tree to find) and names itself with spaces and parentheses (so the ``stat`` line's comm
cannot be split naively) is compared exactly while it sleeps; the test process itself, which is
running, is compared between two psutil readings.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import psutil
import pytest

from pipstorm.infra.procstat import Snapshot, count_fds, read_rss, read_stat

# Reaps a grandchild that burns CPU, keeps one sleeping, renames itself, then waits on stdin.
CHILD = """
import subprocess, sys
subprocess.run([sys.executable, "-c", "sum(range(8_000_000))"], check=True)
sleeper = subprocess.Popen(
    [sys.executable, "-c", "import sys; print(flush=True); sys.stdin.read()"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
sleeper.stdout.readline()  # started: asleep from now on
with open("/proc/self/comm", "w") as comm:
    comm.write("a) b (c) d")
print(sleeper.pid, flush=True)
sys.stdin.readline()
sleeper.stdin.close()
sleeper.wait()
"""


@pytest.fixture
def family() -> Iterator[tuple[int, int]]:
    """(child, grandchild) pids, both asleep."""
    with subprocess.Popen(
        [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as child:
        assert child.stdin is not None and child.stdout is not None
        try:
            grandchild = int(child.stdout.readline())
            yield child.pid, grandchild
        finally:
            child.stdin.write("done\n")
            child.stdin.flush()
            child.wait(timeout=30)


def test_a_sleeping_child_reads_exactly_as_psutil(family: tuple[int, int]) -> None:
    child, _ = family
    proc = psutil.Process(child)
    assert proc.name() == "a) b (c) d"
    stat = read_stat(child)
    assert stat is not None
    times = proc.cpu_times()
    assert (stat.user, stat.system) == (times.user, times.system)
    assert (stat.children_user, stat.children_system) == (
        times.children_user,
        times.children_system,
    )
    assert stat.children_user + stat.children_system > 0.05  # the reaped grandchild's CPU
    assert read_rss(child) == proc.memory_info().rss > 0
    assert stat.ppid == proc.ppid() == os.getpid()
    assert count_fds(child) == proc.num_fds() >= 3


def test_the_children_map_and_a_groups_sums_are_psutils(family: tuple[int, int]) -> None:
    child, grandchild = family
    snapshot = Snapshot()
    members = snapshot.members([child])
    proc = psutil.Process(child)
    tree = [proc, *proc.children(recursive=True)]
    assert members == sorted(p.pid for p in tree) == sorted([child, grandchild])
    reading = snapshot.read(members, reaped=True)
    cpu = 0.0
    for member in sorted(tree, key=lambda p: p.pid):
        times = member.cpu_times()
        cpu += times.user + times.system + times.children_user + times.children_system
    assert reading.cpu_s == pytest.approx(cpu, abs=1e-9)
    assert reading.rss_bytes == sum(p.memory_info().rss for p in tree)
    assert reading.fds == sum(p.num_fds() for p in tree)
    assert reading.processes == 2
    own = snapshot.read([child], reaped=False)
    assert own.cpu_s == pytest.approx(proc.cpu_times().user + proc.cpu_times().system, abs=1e-9)


def test_the_running_test_process_is_between_two_psutil_readings() -> None:
    proc = psutil.Process()
    for _ in range(20):  # until rss and fds hold still across the reading (they move a page)
        before_times, before_rss = proc.cpu_times(), proc.memory_info().rss
        before_fds = proc.num_fds()
        stat, rss = read_stat(os.getpid()), read_rss(os.getpid())
        fds = count_fds(os.getpid())
        after_times, after_rss = proc.cpu_times(), proc.memory_info().rss
        after_fds = proc.num_fds()
        if before_rss == after_rss and before_fds == after_fds:
            break
    assert stat is not None
    assert before_times.user <= stat.user <= after_times.user
    assert before_times.system <= stat.system <= after_times.system
    assert stat.children_user == before_times.children_user == after_times.children_user
    assert rss == before_rss == after_rss
    # psutil's num_fds of its own process counts the listing's descriptor; so does ours.
    assert fds == before_fds == after_fds
    assert stat.ppid == os.getppid()


def test_a_process_that_is_gone_is_left_out() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    gone = int(done.stdout)
    assert read_stat(gone) is None and read_rss(gone) is None and count_fds(gone) is None
    reading = Snapshot().read([gone, os.getpid()], reaped=True)
    assert reading.processes == 1
