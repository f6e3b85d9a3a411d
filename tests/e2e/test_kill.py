"""SIGKILL in the middle of a burst (what ``timeout -s KILL`` or a cancelled CI job does): nothing
of the run survives it (clients, launchers, pool workers, proxy, embedded target), no temp folder
is left, and ``pipstorm report DIR`` still rebuilds a report from the streams written so far."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import leftovers, processes_of

#: Serial: bursts of 75 clients, SIGKILLs whose clean-up time it prints (docs/testing.md).
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

#: The promise is 5 s (1.2-2.9 s measured on the 2-core machine); the test allows more, so that
#: a saturated host (8.2 s at load 25, everything gone) does not fail it on time. What it holds
#: is that nothing outlives the kill: before, clients lived on until pip gave up (11 s and more)
#: and their folders stayed for good.
GONE_WITHIN_S = 15.0


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.mark.parametrize(
    ("launch", "whole_group"),
    [("warm", True), ("warm", False), ("exec", True)],
    ids=["warm-group", "warm-main-only", "exec-group"],
)
def test_sigkill_mid_burst_leaves_nothing_and_the_report_is_rebuilt(
    e2e_env: dict[str, str], tmp_path: Path, launch: str, whole_group: bool
) -> None:
    results, tmpdir = tmp_path / "results", tmp_path / "tmp"
    tmpdir.mkdir()
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipstorm", "run", "--profile", "production_incident"),
            *("--duration", "120", "--launch", launch, "--results", str(results), "--quiet"),
        ],
        env={**e2e_env, "TMPDIR": str(tmpdir)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group, as a CI job's shell gives it
    )
    try:
        # The first tick is a burst of 75 runs: kill while most are in flight, after the
        # first requests reached the index.
        deadline = time.monotonic() + 180
        run_dir: Path | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = sorted(results.iterdir()) if results.exists() else []
            run_dir = found[0] if found else None
            if run_dir is not None and lines(run_dir / "requests.jsonl") >= 10:
                break
            time.sleep(0.05)
        assert run_dir is not None and proc.poll() is None, "the burst never reached the index"
        in_flight = processes_of(tmpdir)
        assert len(in_flight) >= 20, in_flight  # pool, proxy, target, launchers, clients
        killed_at = time.monotonic()
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(10)
        while processes_of(tmpdir) and time.monotonic() - killed_at < 30:
            time.sleep(0.1)
        gone_s = time.monotonic() - killed_at
        while leftovers(tmpdir) and time.monotonic() - killed_at < 30:
            time.sleep(0.1)
        clean_s = time.monotonic() - killed_at
        figures = f"{len(in_flight)} processes: gone after {gone_s:.1f} s, folders {clean_s:.1f} s"
        print(f"kill ({'process group' if whole_group else 'pipstorm alone'}): {figures}")  # noqa: T201 - the figure docs/reliability.md quotes
        assert processes_of(tmpdir) == [], figures
        assert leftovers(tmpdir) == [], figures
        assert gone_s <= GONE_WITHIN_S, figures
        assert clean_s <= GONE_WITHIN_S, figures
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for left in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if left.environ().get("TMPDIR", "").startswith(str(tmpdir)):
                    left.kill()

    # A kill can cut the last line of a stream short: the rebuild skips and counts it.
    with (run_dir / "requests.jsonl").open("ab") as stream:
        stream.write(b'{"run_id": "torn", "method": "GE')
    recorded = lines(run_dir / "requests.jsonl")
    rebuilt = subprocess.run(
        [sys.executable, "-m", "pipstorm", "report", str(run_dir)],
        env={**e2e_env, "TMPDIR": str(tmpdir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rebuilt.returncode in {0, 1, 3}, rebuilt.stderr  # a verdict (3: generator-bound)
    assert "Traceback" not in rebuilt.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["skipped_lines"].get("requests.jsonl", 0) >= 1
    assert report["requests"]["count"] >= recorded - 1  # every whole line counted
    assert report["incomplete"] is True
    # Pipstorm's own teardown must not pass for the index's errors (the orphaned target once
    # answered 500 to what was in flight, its htpasswd removed under it).
    server_errors = [
        line
        for line in (run_dir / "requests.jsonl").read_text(errors="replace").splitlines()
        if '"status":5' in line
    ]
    assert report["requests"]["error_5xx_count"] == 0, server_errors[:5]
    assert "no end time" in (run_dir / "report.md").read_text()
