"""The open schedule with real pip runs that are slow on purpose (an injected listing delay) and
pool workers frozen on purpose (SIGSTOP), in exec launch mode: no run waits for another, each run
launches at or after its intended instant, and a run held back is recorded with its lag, not
hidden.

Every timing assertion is a bound the test itself caused (the delay, the freeze), never a
threshold on how fast this machine is.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipstorm.engine.rundir.records import load_clients, load_requests
from tests.e2e.conftest import LATENCY_OFF, left_running

#: Serial: it freezes the pool within a tick and bounds lags it caused (docs/testing.md).
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

TICK_S = 3.0
#: Each pip run waits this long for its listing: over two ticks, so runs of ticks overlap.
DELAY_S = 6.5
#: The pool workers are frozen from after tick 1's launch until past tick 2's intended instant.
FREEZE_AT_S, THAW_AT_S = 1.5 * TICK_S, 2 * TICK_S + 1.0

PROFILE = f"""
clients = 2
duration_s = {3 * TICK_S:g}
tick_s = {TICK_S:g}
"""


def pool_workers(engine: psutil.Process) -> list[psutil.Process]:
    """The engine's pool workers (multiprocessing spawn children; the proxy is a plain child)."""
    return [p for p in engine.children() if any("spawn_main" in part for part in p.cmdline())]


def test_slow_clients_do_not_hold_back_the_schedule_and_a_late_run_shows_its_lag(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "overlap.toml"
    profile.write_text(PROFILE)
    results, tmpdir = tmp_path / "results", tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [
            *(
                sys.executable,
                "-m",
                "pipstorm",
                "run",
                "--profile",
                str(profile),
                "--client",
                "pip",
            ),
            # exec: the workers spawn each client at its instant, so freezing them holds runs
            # back. A warm child, gated ahead, releases itself: a frozen worker does not delay it.
            *("--launch", "exec"),
            *("--fault", f"op=listing,delay={DELAY_S:g}s", "--results", str(results), "--quiet"),
            *LATENCY_OFF,
        ],
        env={**e2e_env, "TMPDIR": str(tmpdir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    frozen: list[psutil.Process] = []
    try:
        engine = psutil.Process(proc.pid)
        t0 = None
        deadline = time.monotonic() + 120
        while t0 is None and proc.poll() is None and time.monotonic() < deadline:
            found = list(results.glob("*/run.json"))
            if found:
                t0 = json.loads(found[0].read_text()).get("started")
            time.sleep(0.02)
        assert t0 is not None, "the run never started"
        workers = pool_workers(engine)
        assert workers, [p.cmdline() for p in engine.children()]
        time.sleep(max(0.0, t0 + FREEZE_AT_S - time.time()))
        for worker in workers:
            worker.send_signal(signal.SIGSTOP)
            frozen.append(worker)
        frozen_at = time.time()
        assert frozen_at < t0 + 2 * TICK_S, "froze the pool too late to hold back tick 2"
        time.sleep(max(0.0, t0 + THAW_AT_S - time.time()))
        thawed_at = time.time()
        for worker in frozen:
            worker.send_signal(signal.SIGCONT)
        frozen.clear()
        out, err = proc.communicate(timeout=180)
    finally:
        for worker in frozen:
            worker.send_signal(signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    (run_dir,) = results.iterdir()
    clients, _ = load_clients(run_dir / "clients.jsonl")
    assert len(clients) == 6 and {c.outcome for c in clients} == {"ok"}, clients
    by_tick = {tick: [c for c in clients if c.tick == tick] for tick in (0, 1, 2)}
    assert {tick: len(runs) for tick, runs in by_tick.items()} == {0: 2, 1: 2, 2: 2}
    for c in clients:
        assert c.launched is not None
        # intended starts are the schedule's, from time zero; the lag is launch minus intended
        assert c.intended == pytest.approx(t0 + c.tick * TICK_S, abs=1e-3)
        assert c.lag_s == pytest.approx(c.launched - c.intended, abs=1e-6)
        assert c.launched >= c.intended - 0.05  # never early (5 ms-scale clock conversions)
        assert c.ended - c.launched >= DELAY_S  # slow on purpose: each waited for its listing
    # Open model: each tick's runs launched while the previous tick's were still running.
    for tick in (1, 2):
        earlier_end = min(c.ended for c in by_tick[tick - 1])
        assert all((c.launched or 0.0) < earlier_end for c in by_tick[tick]), tick
    # Tick 2's runs could not launch before the workers were thawed: recorded late, by at least
    # the time they were held back.
    for c in by_tick[2]:
        assert c.launched is not None and c.launched >= thawed_at - 0.05
        assert c.lag_s >= thawed_at - c.intended - 0.05
    requests, _ = load_requests(run_dir / "requests.jsonl")
    assert {r.run_id for r in requests} == {c.run_id for c in clients}
    report = json.loads((run_dir / "report.json").read_text())
    assert report["clients"]["all"]["lag_s"]["max"] >= thawed_at - (t0 + 2 * TICK_S) - 0.05
    # A launch lag over 1 s makes the report say that the generator was the bottleneck.
    assert report["generator"]["saturated"] is True
    assert "lag" in report["generator"]["reason"]
    assert left_running(tmpdir) == []
    assert out is not None
