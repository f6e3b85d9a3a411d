"""The proxy's scheduling priority: applied where permitted, recorded either way, and the guard
that demotes a real-time proxy keeping a core busy."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pipstorm.engine.run.priority import GUARD_SAMPLES, PROXY_NICE, ProxyGuard, protect_proxy

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
