"""What a burst's memory costs to fault in, and whether the lead's figure for it is right.

The lead a burst is prepared with adds, per MB a warm child holds, what backing memory again
costs this host (``pipstorm.infra.first_touch``, measured at a run's start). This bench shows
the mechanism and checks the figure against what children really cost:

1. the measure itself, the figure a run's lead would use now (``touch_cost``: the measure, or
   this boot's last that found memory given back, if higher), and a control with ordinary 4 KB
   pages: a fresh mapping touched, then the same again once freed (CPU per MB);
2. ``CHILDREN`` warm pip children forked at once from one launcher and held at their gates
   (the plan's probe run: nothing is sent anywhere): their CPU to the gate, and the host's CPU
   per child (launcher and owner included); first as they are, then again while this process
   holds ``HELD_GB`` of memory it touched (what a burst's first children hold while its last
   ones fault theirs in: x170's 510 children hold 6 GB). The model's price for the second is
   the first plus the child's MB times the measured figure; the bench prints both.

On this Firecracker guest (2026-12-07): the measure 1.9-2.8 ms per MB; 200 children 21 ms each
to their gate, 52 ms with 6 GB held (docs/performance.md, "x170's first run on a fresh
machine"). Prints figures and ratios; asserts only that the children reached their gates.
``-k first_touch`` picks this file; it takes about a minute (the held memory is touched once).
"""

from __future__ import annotations

import dataclasses
import mmap
import os
import statistics
import time
from contextlib import ExitStack

import psutil
import pytest

from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import warm_prepared
from pipstorm.engine.run.plan.lead import PROBE_URL, touch_cost
from pipstorm.infra import first_touch
from pipstorm.packages.cache import default_cache_root

pytestmark = pytest.mark.bench

CHILDREN = int(os.environ.get("PIPSTORM_BENCH_CHILDREN", "200"))
#: Held while the second set is forked; at most a third of the memory available.
HELD_GB = float(os.environ.get("PIPSTORM_BENCH_HELD_GB", "6"))
GATE_WAIT_S = 120.0


def _touch_4k(mb: int) -> float:
    """CPU per MB to fault in a fresh mapping of ordinary pages."""
    with mmap.mmap(-1, mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as area:
        before = time.thread_time()
        for offset in range(0, mb << 20, mmap.PAGESIZE):
            area[offset] = 1
        return 1000.0 * (time.thread_time() - before) / mb


def _host_cpu() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.system + times.nice + times.irq + times.softirq)


def _children(
    launchers: Launchers, label: str, count: int = CHILDREN
) -> tuple[float, float, float]:
    """``count`` probe children forked at once and gated: (child CPU p50 ms, host CPU ms per
    child, their USS in MB)."""
    task = ClientTask(
        run_id=f"pipstorm-bench-{label}",
        client="pip",
        project="pipstorm-probe",
        version="1.0.0",
        index_url=PROBE_URL,
    )
    with ExitStack() as stack:
        started, host = time.monotonic(), _host_cpu()
        preps = [
            stack.enter_context(
                warm_prepared(
                    dataclasses.replace(task, run_id=f"{task.run_id}-{i}"),
                    launchers=launchers,
                    temp_root=None,
                    due_mono=None,
                )
            )
            for i in range(count)
        ]
        children = [prep.child for prep in preps]
        assert all(c is not None and c.gated.wait(GATE_WAIT_S) for c in children)
        wall, host = time.monotonic() - started, _host_cpu() - host
        cpu = sorted(1000.0 * c.cpu_ahead_s for c in children if c is not None)
        uss = statistics.mean(
            psutil.Process(c.pid).memory_full_info().uss / 2**20
            for c in children[:20]
            if c is not None and c.pid is not None
        )
    fifth = max(1, len(cpu) // 5)
    print(
        f"  {label}: {count} children gated in {wall:.2f} s; CPU to the gate p50"
        f" {cpu[len(cpu) // 2]:.1f} ms, p90 {cpu[int(0.9 * (len(cpu) - 1))]:.1f} ms, dearest"
        f" fifth {statistics.mean(cpu[-fifth:]):.1f} ms; host CPU {1000 * host / count:.1f} ms"
        f" per child; USS {uss:.1f} MB"
    )
    return cpu[len(cpu) // 2], 1000 * host / count, uss


def test_first_touch_and_a_burst_of_children() -> None:
    touch = first_touch.measure()
    print(
        f"\nthe measure: first touch {touch.first_ms_per_mb:.2f} ms/MB, again"
        f" {touch.again_ms_per_mb:.2f} ms/MB (huge pages asked: {touch.huge_pages}): the host's"
        f" part {touch.host_ms_per_mb:.2f} ms/MB"
    )
    used = touch_cost(default_cache_root())
    print(f"  the figure a run's lead would use now (this boot's last that found any): {used:.2f}")
    print(f"4 KB pages: fresh {_touch_4k(256):.2f} ms/MB, again {_touch_4k(256):.2f} ms/MB")
    held_mb = int(min(HELD_GB * 1024, psutil.virtual_memory().available / 2**20 / 3))
    launchers = Launchers(None)
    try:
        _children(launchers, "the launcher's start", count=1)  # not counted below
        plain_cpu, plain_host, uss = _children(launchers, "as they are")
        with mmap.mmap(-1, held_mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) as held:
            before = time.monotonic()
            for offset in range(0, held_mb << 20, mmap.PAGESIZE):
                held[offset] = 1
            print(f"  {held_mb} MB held, touched in {time.monotonic() - before:.1f} s")
            held_cpu, held_host, _ = _children(launchers, f"beside {held_mb} MB held")
    finally:
        launchers.close()
    model = plain_host + uss * used
    print(
        f"host CPU per child held/as they are: {held_host / plain_host:.2f}x"
        f" (child CPU p50 {held_cpu / plain_cpu:.2f}x); the lead's price for it:"
        f" {plain_host:.1f} + {uss:.1f} MB x {used:.2f} = {model:.1f} ms"
        f" against {held_host:.1f} ms measured"
    )
