"""The host sampler on real processes: lines written as it goes, and the CPU of short-lived,
reaped client processes counted rather than lost between samples."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from pipstorm.engine.run.sampler import HostSampler

# A "pool worker": on "go", runs three short CPU-burning children one after the other (each
# reaped before the next sample could see it), prints their CPU as rusage counts it, then waits.
WORKER = """
import resource, subprocess, sys
sys.stdin.readline()
for _ in range(3):
    subprocess.run([sys.executable, "-c", "sum(range(6_000_000))"], check=True)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(usage.ru_utime + usage.ru_stime, flush=True)
sys.stdin.readline()
"""


def test_reaped_children_cpu_is_counted(tmp_path: Path) -> None:
    with subprocess.Popen(
        [sys.executable, "-c", WORKER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as worker:
        try:
            assert worker.stdin is not None and worker.stdout is not None
            sampler = HostSampler(
                tmp_path / "host.jsonl",
                proxy_pid=None,
                target_pid=None,
                client_pids=lambda: [worker.pid],
            )
            assert sampler.sample() is None  # the baseline
            worker.stdin.write("go\n")
            worker.stdin.flush()
            children_cpu = float(worker.stdout.readline())
            sample = sampler.sample()
        finally:
            worker.kill()
    assert sample is not None
    clients = sample["clients"]
    used = clients["cpu_percent"] * sample["interval_s"] / 100
    # The children are gone: their CPU reached the sample through the worker's counters.
    assert clients["processes"] == 1
    assert children_cpu > 0.05
    assert 0.9 * children_cpu <= used <= children_cpu + 0.3
    assert sample["proxy"] is None and sample["target"] is None


def test_the_thread_appends_a_line_per_sample(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    path = tmp_path / "host.jsonl"
    try:
        with HostSampler(
            path, proxy_pid=sleeper.pid, target_pid=None, client_pids=list, every_s=0.1
        ) as sampler:
            deadline = time.monotonic() + 30
            while sampler.samples < 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sampler.samples >= 3
    finally:
        sleeper.kill()
        sleeper.wait()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(lines) >= 3
    first = lines[0]
    assert 0.0 <= first["host_cpu_percent"] <= 100.0
    assert len(first["host_cpu_per_core"]) >= 1
    assert first["host_mem_percent"] > 0
    assert first["proxy"]["processes"] == 1 and first["proxy"]["rss_mb"] > 0
    assert first["engine"]["processes"] == 1
    assert first["engine"]["fds"] >= 3  # at least stdin, stdout, stderr; a leak makes it grow
    assert first["proxy"]["fds"] >= 1
    assert first["target"] is None
    empty = {"cpu_percent": 0.0, "rss_mb": 0.0, "processes": 0, "fds": 0}
    assert first["clients"] == empty
    assert first["pool"] == empty
    assert sampler.error is None
    assert [line["ts"] for line in lines] == sorted(line["ts"] for line in lines)


def test_a_targets_cores_are_recorded(tmp_path: Path) -> None:
    # The generator rule counts only the CPU others used on the cores the target may run on.
    core = min(os.sched_getaffinity(0))
    script = (
        f"import os, time; os.sched_setaffinity(0, {{{core}}}); print(flush=True); time.sleep(60)"
    )
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as pinned:
        try:
            assert pinned.stdout is not None
            pinned.stdout.readline()  # pinned by now
            sampler = HostSampler(
                tmp_path / "host.jsonl", proxy_pid=None, target_pid=pinned.pid, client_pids=list
            )
            assert sampler.sample() is None  # the baseline
            sample = sampler.sample()
        finally:
            pinned.kill()
    assert sample is not None
    assert sample["target"]["cpus"] == [core]
    assert sample["proxy"] is None
