"""The seed's headline as ``make run`` plays it: production_incident for 70 s, real pip, warm.

Two bursts of 75 pip runs (forked from warm launchers, gated at their instant) and the base
ticks against the embedded target. Asserted: every run ok, the onset of each burst computed and
reported, the launch mode in run.json and the report, nothing left in TMPDIR and no launcher
left running. Not asserted: how small the onset is (``tests/bench/test_warm_bench.py`` measures).
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest

from pipstorm.clients.warm.launcher import ROOT_PREFIX
from pipstorm.engine.analysis.stats import percentile
from pipstorm.engine.rundir.records import load_clients, load_requests
from tests.e2e.conftest import LATENCY_OFF, left_running, leftovers, pipstorm

pytestmark = pytest.mark.e2e


def launchers_running(tmpdir: Path) -> list[int]:
    """Processes whose command line names a warm launcher's private dir under ``tmpdir``: this
    run's, never another test's or another run's on the same machine."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        parts = proc.info["cmdline"] or ()
        if any(p.startswith(str(tmpdir)) and ROOT_PREFIX in p for p in parts):
            found.append(proc.pid)
    return found


@pytest.mark.serial  # two bursts of 75 clients (docs/testing.md)
def test_the_incident_with_warm_pip_runs_every_client_and_reports_onset(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        ["run", "--profile", "production_incident", "--duration", "70", "--results", str(results)],
        e2e_env,
        tmpdir=tmp_path / "tmp",
        timeout=400,
    )
    assert proc.returncode in (0, 1, 3), proc.stderr  # a verdict (3: generator-bound)
    assert "launch: pip warm; runs prepared" in proc.stderr
    (run_dir,) = list(results.iterdir())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["launch"]["mode"] == "warm"
    assert report["run"]["launch"]["kinds"] == {"pip": "warm"}
    assert report["run"]["launch"]["costs"]["pip"]["held_mb"] > 0
    clients = report["clients"]["all"]
    assert clients["count"] == 165 and clients["by_outcome"] == {"ok": 165}, clients
    bursts = report["onset"]["bursts"]
    assert [(b["offset_s"], b["runs"], b["reached"]) for b in bursts] == [(0, 75, 75), (60, 75, 75)]
    # Each burst's onset is its runs' first request at the proxy minus their intended instant,
    # recomputed here from the raw records: a wrong figure fails, whatever its size.
    requests, _ = load_requests(run_dir / "requests.jsonl")
    runs, _ = load_clients(run_dir / "clients.jsonl")
    first: dict[str, float] = {}
    for r in requests:
        if r.run_id is not None:
            first[r.run_id] = min(r.ts, first.get(r.run_id, r.ts))
    for burst in bursts:
        started = float(report["started"])
        mine = [c for c in runs if c.burst and round(c.intended - started) == burst["offset_s"]]
        onsets = sorted(first[c.run_id] - c.intended for c in mine)
        assert len(onsets) == burst["reached"] == 75
        assert burst["onset_s"]["p95"] == pytest.approx(percentile(onsets, 95), abs=1e-6)
        assert burst["onset_s"]["max"] == pytest.approx(onsets[-1], abs=1e-6)
    assert "Launch: warm (pip warm)" in (run_dir / "report.md").read_text()
    assert leftovers(tmp_path / "tmp") == []
    assert launchers_running(tmp_path / "tmp") == []
    assert left_running(tmp_path / "tmp") == []


def test_exec_mode_is_still_a_fresh_process_per_run(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "10", "--launch", "exec"),
            *("--results", str(results), *LATENCY_OFF),  # the subject is the launch mode
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = list(results.iterdir())
    run = json.loads((run_dir / "run.json").read_text())
    assert run["launch"]["mode"] == "exec" and run["launch"]["kinds"] == {"pip": "exec"}
    assert leftovers(tmp_path / "tmp") == []
