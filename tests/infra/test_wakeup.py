"""A thread's slice request (``pipstorm.infra.wakeup``), read back from the kernel through
``sched_getattr``, with nothing of pipstorm's in between but the call under test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pipstorm.infra.wakeup import SHORTEST_SLICE_US, set_slice, slice_us


@pytest.fixture
def sleeper() -> Iterator[int]:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as proc:
        try:
            yield proc.pid
        finally:
            proc.kill()


def slices_supported(pid: int) -> bool:
    """Linux 6.12+ reports a fair task's slice (its default when none was asked for)."""
    return bool(slice_us(pid))


def test_the_requested_slice_is_what_the_kernel_holds(sleeper: int) -> None:
    if not slices_supported(sleeper):
        pytest.skip("this kernel has no EEVDF slices to ask for")
    default = slice_us(sleeper)
    assert default != SHORTEST_SLICE_US, default  # else the test could not tell
    assert set_slice(sleeper) is True
    assert slice_us(sleeper) == SHORTEST_SLICE_US


def test_the_nice_and_the_policy_are_kept(sleeper: int) -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, sleeper, 7)
    except OSError:
        pytest.skip("cannot renice here")
    assert set_slice(sleeper, 300) is True
    assert os.getpriority(os.PRIO_PROCESS, sleeper) == 7
    assert os.sched_getscheduler(sleeper) == os.SCHED_OTHER
    if slices_supported(sleeper):
        assert slice_us(sleeper) == 300


def test_a_gone_thread_is_refused_not_raised() -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]) as proc:
        proc.wait()
    assert set_slice(proc.pid) is False
    assert slice_us(proc.pid) is None
