"""Reports of real runs: ``compare`` of two runs, ``report DIR`` of a run killed half-way, and
the HTML of a real run in headless Chromium."""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.e2e.conftest import LATENCY_OFF, pipstorm
from tests.engine.chromium_shot import colour_pixels, needs_chromium, screenshot

pytestmark = pytest.mark.e2e


def short_run(results: Path, env: dict[str, str], tmp: Path, *extra: str) -> Path:
    proc = pipstorm(
        [
            *("run", "--profile", "light_load", "--duration", "12"),
            *("--results", str(results), "--quiet", *extra),
            # compare is the subject, not whether this busy machine kept up (else exit 3)
            "--allow-generator-bound",
        ],
        env,
        tmpdir=tmp,
    )
    assert proc.returncode in {0, 1}, proc.stderr
    (run_dir,) = list(results.iterdir())
    return run_dir


@pytest.fixture(scope="module")
def two_runs(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A passing run, and a second one held to a listing p95 it cannot meet."""
    root = tmp_path_factory.mktemp("two_runs")
    a = short_run(root / "a", e2e_env, root / "tmp", *LATENCY_OFF)
    b = short_run(
        root / "b", e2e_env, root / "tmp", *LATENCY_OFF, "--threshold", "p95_listing_ms=0.001"
    )
    return a, b


def test_compare_of_two_real_runs_prints_the_deltas(
    two_runs: tuple[Path, Path], e2e_env: dict[str, str], tmp_path: Path
) -> None:
    a, b = two_runs
    for run_dir in two_runs:
        assert (run_dir / "report.html").is_file()
        assert (run_dir / "chart-latency.png").is_file()
    proc = pipstorm(["compare", str(a), str(b / "report.json")], e2e_env, tmpdir=tmp_path)
    assert proc.returncode == 0, proc.stderr
    verdicts = next(ln for ln in proc.stdout.splitlines() if ln.startswith("verdict"))
    # a busy machine may add "(generator-bound)" after a verdict: the verdicts are what counts
    assert re.sub(r"\([^)]*\)", "", verdicts).split()[1:] == ["pass", "fail"]
    # The p95 listing row holds both runs' own report.json figures and B's change against A,
    # computed from them (a row that printed anything else, or nothing, fails here).
    p95 = [
        json.loads((d / "report.json").read_text())["operations"]["listing"]["total_ms"]["p95"]
        for d in two_runs
    ]
    listing = next(ln for ln in proc.stdout.splitlines() if ln.startswith("p95 listing"))
    cells = re.split(r"\s{2,}", listing.strip())
    assert cells[1:3] == [f"{p95[0]:.1f}", f"{p95[1]:.1f}"], listing
    if round(p95[1] - p95[0], 1) == 0:
        assert cells[3] == "=", listing
    else:
        change = 100.0 * (p95[1] - p95[0]) / p95[0]
        judgement = "worse" if p95[1] > p95[0] else "better"
        assert cells[3] == f"{change:+.1f} % {judgement}", listing
    data = json.loads(
        pipstorm(["compare", str(a), str(b), "--format", "json"], e2e_env, tmpdir=tmp_path).stdout
    )
    failed = next(m for m in data["metrics"] if m["key"] == "thresholds_failed")
    assert failed["values"] == [0, 1]
    assert failed["judgement"] == ["same", "worse"]


@needs_chromium
def test_the_html_report_of_a_real_run_renders(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    shot = screenshot(two_runs[0] / "report.html", tmp_path / "shot.png", tmp_path / "profile")
    # A 12 s run has few points, so few colours; the charts' palette is there all the same.
    for colour in ("#1f77b4", "#ff7f0e", "#2ca02c"):  # listing, download, status 200
        assert colour_pixels(shot, colour) > 1000, colour


def _kill_everything(pid: int) -> None:
    """SIGKILL the run and every process it started: no clean-up, no report, like an OOM kill."""
    root = psutil.Process(pid)
    family = [root, *root.children(recursive=True)]
    for proc in family:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(family, timeout=30)


def test_report_of_a_run_killed_half_way(e2e_env: dict[str, str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "pipstorm", "run", "--profile", "light_load"),
            *("--duration", "30", "--results", str(results), "--quiet"),
        ],
        env={**e2e_env, "TMPDIR": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        clients = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list(results.glob("*/clients.jsonl"))
            if found and found[0].read_text().count("\n") >= 1:
                clients = found[0]
                break
            time.sleep(0.2)
        assert clients is not None, "no client run finished"
    finally:
        _kill_everything(proc.pid)
        proc.wait(timeout=30)
    run_dir = clients.parent
    assert not (run_dir / "report.json").exists()
    assert json.loads((run_dir / "run.json").read_text())["ended"] is None

    rebuilt = pipstorm(["report", str(run_dir)], e2e_env, tmpdir=tmp_path / "tmp")
    # A verdict, whichever (3: generator-bound on a busy host); the subject is the rebuild.
    assert rebuilt.returncode in {0, 1, 3}, rebuilt.stderr
    assert "incomplete" in rebuilt.stdout
    report = json.loads((run_dir / "report.json").read_text())
    assert report["incomplete"] is True
    assert report["clients"]["all"]["count"] < 9  # 3 ticks x 3 clients were planned
    page = (run_dir / "report.html").read_text()
    assert "incomplete run" in page and "data:image/png;base64," in page
    assert (run_dir / "chart-rate.png").is_file()
    assert "chart-rate.png" in (run_dir / "report.md").read_text()
