"""What following a run live costs the generator: the x25 onset bench with and without the page.

Issue 22's figure: ``production_incident --duration 70 --client pip`` against the embedded
target (two bursts of 75 runs), played

- on one machine, without ``--dashboard`` and with it and a browser-like poller of
  ``/state.json`` every second;
- over ``--shards 2`` (a LocalCluster on this machine), the same two ways: a sharded run now
  pulls its shards' streams into the coordinator's folder about once a second whether or not a
  page is open (``pipstorm.engine.run.shards.stream``), and the page reads that folder.

Prints, per run: each burst's onset p50/p95 and runs reached, the generator hosts' CPU (mean
and p95 of ``host.jsonl``), the pipstorm process's own CPU seconds (the engine or coordinator:
what the page and the pulls cost), and ``/state.json``'s median answer time. Asserts only that
each run produced a report. ``-k dashboard`` picks this file; the four runs take ~10 minutes.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.bench

X25 = ("--profile", "production_incident", "--duration", "70", "--client", "pip")
#: Off: this bench is about the generator, not about what the index answers.
LOOSE = ("--threshold", "p95_listing_ms=off", "--threshold", "p99_download_ms=off")


def _poll(url: str, stop: threading.Event, answers: list[float]) -> None:
    """A browser's polls: ``/state.json`` every second, each answer's time kept."""
    while not stop.wait(1.0):
        began = time.perf_counter()
        try:
            with urllib.request.urlopen(url + "state.json", timeout=30) as response:  # noqa: S310 - loopback
                response.read()
        except OSError:
            continue
        answers.append(time.perf_counter() - began)


def play(results: Path, *extra: str, dashboard: bool) -> dict[str, object]:
    """One run; its figures."""
    args = [sys.executable, "-m", "pipstorm", "run", *X25, *LOOSE, *extra]
    args += ["--results", str(results), "--quiet", *(["--dashboard"] if dashboard else [])]
    load_before = os.getloadavg()[0]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    me = psutil.Process(proc.pid)
    stop, poller = threading.Event(), None
    answers: list[float] = []
    cpu_s = 0.0
    assert proc.stderr is not None
    if dashboard:
        first = proc.stderr.readline()
        match = re.search(r"(http://127\.0\.0\.1:\d+/)", first)
        assert match is not None, first
        poller = threading.Thread(target=_poll, args=(match.group(1), stop, answers))
        poller.start()
    while proc.poll() is None:
        try:
            times = me.cpu_times()
            cpu_s = times.user + times.system  # the process itself, not its children
        except psutil.Error:
            break
        time.sleep(0.5)
    err = proc.stderr.read()
    proc.wait()
    stop.set()
    if poller is not None:
        poller.join()
    reports = sorted(results.glob("*/report.json"))
    assert reports, err[-2000:]
    report = json.loads(reports[-1].read_text(encoding="utf-8"))
    host = [
        row["host_cpu_percent"]
        for line in (reports[-1].parent / "host.jsonl").read_text().splitlines()
        if isinstance((row := json.loads(line)).get("host_cpu_percent"), int | float)
    ]
    return {
        "bursts": report["onset"]["bursts"],
        "host_cpu": (statistics.fmean(host), sorted(host)[int(0.95 * (len(host) - 1))]),
        "own_cpu_s": cpu_s,
        "state_ms": 1000 * statistics.median(answers) if answers else None,
        "polls": len(answers),
        "load": (load_before, os.getloadavg()[0]),
    }


def show(label: str, figures: dict[str, object]) -> None:
    load = figures["load"]
    print(f"\n{label}: load average {load[0]:.1f} -> {load[1]:.1f}")  # type: ignore[index]
    for burst in figures["bursts"]:  # type: ignore[attr-defined]
        onset = burst["onset_s"] or {}
        print(
            f"  burst at {burst['offset_s']:5.0f} s: {burst['reached']}/{burst['runs']} reached,"
            f" onset p50 {onset.get('p50', 0):.2f} s p95 {onset.get('p95', 0):.2f} s"
        )
    cpu = figures["host_cpu"]
    assert isinstance(cpu, tuple)
    mean, p95 = float(cpu[0]), float(cpu[1])
    print(f"  generator host CPU mean {mean:.0f} % p95 {p95:.0f} %")
    print(f"  pipstorm process CPU {figures['own_cpu_s']:.1f} s")
    if figures["state_ms"] is not None:
        print(f"  /state.json median {figures['state_ms']:.0f} ms over {figures['polls']} polls")


@pytest.mark.parametrize("shards", [None, 2], ids=["one-machine", "two-shards"])
def test_dashboard_cost_on_the_x25_onset(tmp_path: Path, shards: int | None) -> None:
    extra = () if shards is None else ("--shards", str(shards))
    for dashboard in (False, True):
        figures = play(tmp_path / f"dash-{dashboard}", *extra, dashboard=dashboard)
        where = "one machine" if shards is None else f"{shards} shards"
        show(f"x25, pip, {where}, {'with' if dashboard else 'without'} the page", figures)
