"""Run-queue wait from ``/proc/PID/task/TID/schedstat`` (``pipstorm.engine.run.runqueue``): a
process that shares its core with a busy loop is seen waiting; the sampler writes the figures
of the proxy's and the target's groups to ``host.jsonl``."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipstorm.engine.run.runqueue import RunQueueWatch, available, read_threads
from pipstorm.engine.run.sampler import HostSampler

pytestmark = pytest.mark.skipif(not available(), reason="this kernel keeps no schedstat")

LOOP = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


@pytest.fixture
def two_loops_on_one_core() -> Iterator[tuple[int, int]]:
    """Two busy loops pinned to the same core: each is runnable all the time and can run only
    while the other waits."""
    core = min(os.sched_getaffinity(0))
    procs = [subprocess.Popen([sys.executable, "-c", LOOP, str(core)]) for _ in range(2)]
    try:
        yield procs[0].pid, procs[1].pid
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_a_process_sharing_its_core_with_a_busy_loop_is_seen_waiting(
    two_loops_on_one_core: tuple[int, int],
) -> None:
    watched, _ = two_loops_on_one_core
    watch = RunQueueWatch()
    assert watch.read([watched]) is None  # the baseline
    time.sleep(1.0)
    reading = watch.read([watched])
    assert reading is not None and reading.threads == 1 and reading.threads_gone == 0
    # Both loops are always runnable on one core: the kernel has the watched one waiting for
    # a good part of the time (about half, less whatever else ran on that core).
    assert reading.wait_s > 0.1 * reading.run_s > 0, reading


def test_the_longest_one_thread_waited_is_kept_beside_the_sum(
    two_loops_on_one_core: tuple[int, int],
) -> None:
    # Two loops on one core wait side by side: the group's wait is both, its reach one's.
    watch = RunQueueWatch()
    watch.read(two_loops_on_one_core)
    time.sleep(1.0)
    reading = watch.read(two_loops_on_one_core)
    assert reading is not None and reading.threads == 2
    assert 0 < reading.wait_max_s < reading.wait_s, reading
    assert reading.wait_max_s >= reading.wait_s / 2, reading


def test_an_idle_process_waits_for_nothing() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        time.sleep(0.3)  # past its start-up
        watch = RunQueueWatch()
        watch.read([proc.pid])
        time.sleep(0.5)
        reading = watch.read([proc.pid])
        assert reading is not None and reading.wait_s == 0.0 and reading.run_s == 0.0
    finally:
        proc.kill()
        proc.wait()


def test_threads_are_read_one_by_one_and_the_gone_are_counted() -> None:
    own = read_threads([os.getpid()])
    assert (os.getpid(), os.getpid()) in own
    assert read_threads([2**22 + 12345]) == {}  # no such process: nothing, no error


def test_the_sampler_writes_the_wait_of_the_proxy_and_target_groups(
    tmp_path: Path, two_loops_on_one_core: tuple[int, int]
) -> None:
    proxy, target = two_loops_on_one_core
    sampler = HostSampler(
        tmp_path / "host.jsonl",
        proxy_pid=proxy,
        target_pid=target,
        client_pids=list,
        target_throttled_s=lambda: 1.5,
    )
    sampler.sample()
    time.sleep(0.5)
    sample = sampler.sample()
    assert sample is not None
    for name in ("proxy", "target"):
        group = sample[name]
        assert group["runq_wait_ms"] > 0 and group["runq_run_ms"] > 0, group
        assert group["runq_threads"] == 1 and group["runq_threads_gone"] == 0
        assert group["runq_wait_max_ms"] == group["runq_wait_ms"], group  # one thread
    assert sample["target"]["throttled_ms"] == 0.0  # a constant counter: nothing throttled
    assert "runq_wait_ms" not in sample["clients"]
