"""``make soak``: the long runs (a full 24-minute production_incident and a 30-minute soak with
real pip at a rate this machine sustains). Too long for CI's budget; run on demand, figures into
the README's Reliability section. Each asserts that pipstorm stayed flat and lost nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipstorm.engine.analysis.generator.steady_state import steady_state
from pipstorm.engine.rundir.data import RunData

pytestmark = pytest.mark.soak

#: Memory growth allowed over a long run (engine, proxy, pool workers each), MB.
RSS_GROWTH_MAX_MB = 20.0
#: Open descriptors allowed to differ between the start and the end (sockets in flight).
FD_GROWTH_MAX = 16
#: A steady rate of real pip for 30 minutes: 10 warm-launched runs a second (0.1 CPU-s each:
#: half of this 2-core machine, whose generator sustains 20 a second at onset p99 <= 1 s,
#: tests/bench/test_warm_bench.py), so that the rest of the machine serves the index.
SOAK_PROFILE = "clients = 10\nduration_s = 1800\ntick_s = 1\n"


def run(args: list[str], results: Path) -> Path:
    # Judged on what a soak is for (nothing leaks, nothing is lost, nothing fails): latency
    # thresholds off and a generator-bound verdict accepted, as this machine's capacity is
    # not the subject; every other threshold (error_rate, max_5xx) must pass: exit 0 only.
    off = ("--threshold", "p95_listing_ms=off", "--threshold", "p99_download_ms=off")
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pipstorm", "run", *args, *off, "--allow-generator-bound"),
            *("--results", str(results), "--quiet"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=3 * 3600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = results.iterdir()
    print(proc.stderr[-3000:])  # the verdict and the figures, for the README
    return run_dir


def judge(run_dir: Path) -> None:
    state = steady_state(RunData.load(run_dir))
    for g in state.growth:
        print(f"{g.group} {g.figure}: {g.start:.1f} -> {g.end:.1f} ({g.growth:+.1f})")
    assert state.unmeasured == ()  # no samples is no evidence of flatness
    rss, fds = state.worst("rss_mb"), state.worst("fds")
    assert rss is not None and rss <= RSS_GROWTH_MAX_MB
    assert fds is not None and fds <= FD_GROWTH_MAX
    assert state.failed_runs == ()
    assert state.request_errors == 0
    assert state.ok_runs_without_requests == ()
    assert state.unattributed_requests == 0
    assert state.skipped_lines == 0


def test_a_full_production_incident(tmp_path: Path) -> None:
    judge(run(["--profile", "production_incident"], tmp_path / "results"))


def test_a_thirty_minute_soak_with_real_pip(tmp_path: Path) -> None:
    profile = tmp_path / "soak.toml"
    profile.write_text(SOAK_PROFILE, encoding="utf-8")
    judge(run(["--profile", str(profile), "--client", "pip"], tmp_path / "results"))
