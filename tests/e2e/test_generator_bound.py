"""A run whose generator is starved on purpose (a busy loop on every core) is flagged as
generator-bound: report.json says so and why, report.md and the terminal warn, and the verdict
is INCONCLUSIVE with exit code 3 (``pipstorm.engine.analysis.verdict``) unless
``--allow-generator-bound`` keeps the PASS/FAIL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import pipstorm
from tests.engine.run.test_priority import permitted_policy

#: Serial: it saturates every core on purpose (docs/testing.md).
pytestmark = [pytest.mark.e2e, pytest.mark.serial]

BUSY = "import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])})\nwhile True: pass"


@pytest.fixture
def every_core_busy() -> Iterator[None]:
    """One busy-looping process pinned to each core, at the clients' own default priority."""
    procs = [
        subprocess.Popen([sys.executable, "-c", BUSY, str(core)])
        for core in sorted(os.sched_getaffinity(0))
    ]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


@pytest.mark.usefixtures("every_core_busy")
def test_a_starved_generator_is_flagged(e2e_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            "run",
            "--profile",
            "light_load",
            "--duration",
            "20",
            "--run-timeout",
            "30",
            "--results",
            str(results),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    (run_dir,) = results.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    # Nothing the index did can explain a failure here: the verdict is the generator's.
    assert proc.returncode == 3, (report["decision"], proc.stderr[-3000:])
    assert report["verdict"] == report["decision"]["verdict"] == "inconclusive"
    assert "the load generator was the bottleneck" in report["decision"]["reason"]
    banner = "INCONCLUSIVE: the load generator was the bottleneck"
    assert banner in proc.stderr and "What to do: " in proc.stderr
    assert f"**{banner}" in (run_dir / "report.md").read_text()
    page = (run_dir / "report.html").read_text()
    assert '<header class="verdict inconclusive" id="verdict">' in page
    assert banner in page
    generator = report["generator"]
    assert generator["saturated"] is True, generator
    assert "generator host CPU above 90 %" in generator["reason"]
    assert generator["cpu_busy_longest_s"] >= 5
    assert any("latency percentiles" in text for text in generator["may_be_inflated"])
    assert "WARNING: the load generator was the bottleneck" in (run_dir / "report.md").read_text()
    assert "WARNING: the load generator was the bottleneck" in proc.stderr

    # What was sampled and what priorities were applied are on record.
    samples = [json.loads(line) for line in (run_dir / "host.jsonl").read_text().splitlines()]
    assert samples and all(s["proxy"] and s["target"] for s in samples)
    assert max(s["clients"]["processes"] for s in samples) >= 2  # workers, at least
    priority = json.loads((run_dir / "run.json").read_text())["priority"]
    assert priority["clients_nice"] == 10
    # What the kernel permits here (SCHED_FIFO as root), not any value the code can write.
    assert priority["proxy"]["policy"] == permitted_policy(), priority


@pytest.mark.usefixtures("every_core_busy")
def test_allow_generator_bound_keeps_pass_or_fail(e2e_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = pipstorm(
        [
            "run",
            "--profile",
            "light_load",
            "--duration",
            "15",
            "--run-timeout",
            "30",
            "--results",
            str(results),
            "--allow-generator-bound",
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    (run_dir,) = results.iterdir()
    report = json.loads((run_dir / "report.json").read_text())
    assert report["generator"]["saturated"] is True, report["generator"]
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    assert report["verdict"] in ("pass", "fail")
    assert report["decision"]["generator_bound_allowed"] is True
    assert json.loads((run_dir / "run.json").read_text())["allow_generator_bound"] is True
    assert "(generator-bound, allowed)" in proc.stderr
    assert "WARNING: the load generator was the bottleneck" in proc.stderr
