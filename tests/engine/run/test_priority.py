"""The proxy's scheduling priority: applied where permitted, recorded either way, and the guard
that demotes a real-time proxy keeping a core busy."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from pipstorm.engine.run.priority import (
    GUARD_SAMPLES,
    PROXY_NICE,
    RELEASE_FIRST_BUDGET_S,
    TARGET_NICE,
    ProxyGuard,
    protect_proxy,
    protect_target,
    release_first,
)
from pipstorm.infra.wakeup import SHORTEST_SLICE_US, slice_us

RESET_ON_FORK = getattr(os, "SCHED_RESET_ON_FORK", 0)


@pytest.fixture
def idle_child() -> Iterator[int]:
    """A process standing in for the proxy (protecting pipstorm's own test runner would leak)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"]) as proc:
        try:
            yield proc.pid
        finally:
            proc.kill()


def policy_of(pid: int) -> int:
    return os.sched_getscheduler(pid) & ~RESET_ON_FORK


def permitted_policy() -> str:
    """What ``auto`` must apply on this machine, found without pipstorm's code: the policy the
    kernel lets this process give a throwaway child (SCHED_FIFO as root or with CAP_SYS_NICE,
    else a negative nice, else none)."""
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as probe:
        try:
            try:
                os.sched_setscheduler(probe.pid, os.SCHED_FIFO, os.sched_param(1))
            except OSError:
                pass
            else:
                return "SCHED_FIFO"
            try:
                os.setpriority(os.PRIO_PROCESS, probe.pid, -1)
            except OSError:
                return "none"
            return "nice"
        finally:
            probe.kill()


def test_auto_gives_fifo_or_says_why_not(idle_child: int) -> None:
    applied = protect_proxy(idle_child)
    assert applied["mode"] == "auto"
    # Whatever the code decides, it must be what the kernel permits here: as root, SCHED_FIFO.
    assert applied["policy"] == permitted_policy()
    if applied["policy"] == "SCHED_FIFO":
        assert policy_of(idle_child) == os.SCHED_FIFO
        assert os.sched_getparam(idle_child).sched_priority == applied["rt_priority"]
        assert "fallback_reason" not in applied
    else:  # not permitted here: the reason is recorded, and nice was tried
        assert "SCHED_FIFO" in applied["fallback_reason"]
        assert policy_of(idle_child) == os.SCHED_OTHER
        if applied["policy"] == "nice":
            assert os.getpriority(os.PRIO_PROCESS, idle_child) == PROXY_NICE


def test_nice_mode_never_uses_a_realtime_policy(idle_child: int) -> None:
    applied = protect_proxy(idle_child, mode="nice")
    assert policy_of(idle_child) == os.SCHED_OTHER
    assert applied["policy"] in {"nice", "none"}
    expected = PROXY_NICE if applied["policy"] == "nice" else 0
    assert os.getpriority(os.PRIO_PROCESS, idle_child) == expected


def test_none_mode_changes_nothing(idle_child: int) -> None:
    assert protect_proxy(idle_child, mode="none") == {"mode": "none", "policy": "none"}
    assert policy_of(idle_child) == os.SCHED_OTHER
    assert os.getpriority(os.PRIO_PROCESS, idle_child) == 0


def busy(cpu: float) -> dict[str, object]:
    return {"proxy": {"cpu_percent": cpu, "rss_mb": 30.0}}


def test_the_guard_demotes_a_proxy_that_keeps_a_core_busy(idle_child: int) -> None:
    applied = protect_proxy(idle_child)
    if applied["policy"] != "SCHED_FIFO":
        pytest.skip(f"SCHED_FIFO not permitted here: {applied.get('fallback_reason')}")
    guard = ProxyGuard(idle_child, applied)
    for _ in range(GUARD_SAMPLES - 1):
        guard(busy(99.0))
    guard(busy(10.0))  # an ordinary second resets the count
    for _ in range(GUARD_SAMPLES - 1):
        guard(busy(99.0))
    assert "demoted" not in applied
    assert policy_of(idle_child) == os.SCHED_FIFO
    guard(busy(99.0))
    assert "back to the ordinary policy" in applied["demoted"]
    assert policy_of(idle_child) == os.SCHED_OTHER


def test_the_target_gets_its_nice_and_the_shortest_slice_on_every_thread() -> None:
    """A stand-in target with a second thread and a child (a pypiserver has workers): each of
    their threads ends at the target's nice and, where the kernel has slices, the shortest."""
    code = (
        "import os, threading, time\n"
        "threading.Thread(target=time.sleep, args=(120,), daemon=True).start()\n"
        "if os.fork() == 0:\n    time.sleep(120)\n    os._exit(0)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], start_new_session=True) as proc:
        try:
            tids = wait_for_tids(proc.pid, 3)
            applied = protect_target(proc.pid)
            if applied["policy"] == "none":
                pytest.skip(f"not permitted here: {applied.get('fallback_reason')}")
            assert applied["nice"] == TARGET_NICE
            assert {os.getpriority(os.PRIO_PROCESS, tid) for tid in tids} == {TARGET_NICE}
            if slice_us(proc.pid):
                assert applied["slice_us"] == SHORTEST_SLICE_US
                assert {slice_us(tid) for tid in tids} == {SHORTEST_SLICE_US}
        finally:
            os.killpg(proc.pid, 9)


def wait_for_tids(pid: int, count: int) -> list[int]:
    """The threads of ``pid`` and of its children, once there are ``count`` of them."""
    for _ in range(200):
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        tids = [t.id for p in procs for t in p.threads()]
        if len(tids) >= count:
            return tids
        time.sleep(0.05)
    raise AssertionError(f"only {tids} of {count} threads")


def test_a_small_release_comes_first_and_a_big_one_says_why_not() -> None:
    # x25's bursts of 75 on this project's 2 cores: the released clients come first.
    assert release_first(75, 2) is None
    assert release_first(0, 0) is None
    # x170's 510: their release would hold a local index for longer than the budget.
    why = release_first(510, 2)
    assert why is not None
    assert "510 runs" in why and f"> {RELEASE_FIRST_BUDGET_S:g} s" in why and "\n" not in why
    # The same burst spread over more cores fits (the budget is wall time a core is held).
    assert release_first(510, 8) is None
