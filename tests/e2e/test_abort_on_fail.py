"""``--abort-on-fail`` against a real pypiserver answering 5xx through the proxy's fault
injection: the run stops early as on Ctrl-C (nothing left running, nothing left in TMPDIR),
reports the part that ran with the reason, exits 1, and ``--junit`` and GitHub's job summary
(``GITHUB_STEP_SUMMARY``) say the same to CI.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.e2e.conftest import LATENCY_OFF, left_running, leftovers, pipstorm

pytestmark = pytest.mark.e2e

#: 40 s of 2 http runs every 2 s (80 runs); every listing is answered 503 by the proxy, so the
#: first one already exceeds max_5xx=0 (with --count-injected) and the run stops long before.
PROFILE = """
clients = 2
duration_s = 40
tick_s = 2
mix = {http = 1.0}
"""


def test_abort_on_fail_stops_the_run_reports_why_and_exits_1(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "steady.toml"
    profile.write_text(PROFILE)
    results, junit, tmpdir = tmp_path / "results", tmp_path / "junit.xml", tmp_path / "tmp"
    summary = tmp_path / "step-summary.md"
    done = pipstorm(
        [
            *("run", "--profile", str(profile), "--results", str(results), "--quiet"),
            *("--fault", "op=listing,status=503", "--count-injected", *LATENCY_OFF),
            *("--abort-on-fail", "--junit", str(junit)),
        ],
        {**e2e_env, "GITHUB_STEP_SUMMARY": str(summary)},
        tmpdir=tmpdir,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "aborting (--abort-on-fail): max_5xx:" in done.stderr
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["aborted"]["reason"].startswith("max_5xx: ")
    assert not run["interrupted"]
    assert run["ended"] is not None
    # Stopped early: most of the 40 planned runs were never handed out.
    assert run["runs_dispatched"] < run["runs_planned"] // 2, run["runs_dispatched"]
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert report["verdict"] == "fail"
    assert report["aborted"] == run["aborted"]
    assert any(n.startswith("The run was aborted at t=") for n in report["notes"])
    assert "[aborted run]" in (run_dir / "report.md").read_text(encoding="utf-8")
    assert "thresholds failed [aborted run]**" in summary.read_text(encoding="utf-8")
    # CI's view: the 5xx threshold failed and the run did not play its plan.
    root = ET.parse(junit).getroot()  # noqa: S314 - the file this run wrote
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["max_5xx <= 0"].find("failure") is not None
    stopped = cases["the run played its whole plan"].find("failure")
    assert stopped is not None and "max_5xx" in stopped.get("message", "")
    # Stopped as on Ctrl-C: clients, proxy and target gone, the scratch folders removed.
    assert left_running(tmpdir) == []
    assert leftovers(tmpdir) == []


def test_without_the_flag_the_same_run_plays_to_its_end(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    profile = tmp_path / "short.toml"
    profile.write_text(PROFILE.replace("duration_s = 40", "duration_s = 4"))
    results = tmp_path / "results"
    done = pipstorm(
        [
            *("run", "--profile", str(profile), "--results", str(results), "--quiet"),
            *("--fault", "op=listing,status=503", "--count-injected", *LATENCY_OFF),
        ],
        e2e_env,
        tmpdir=tmp_path / "tmp",
    )
    assert done.returncode == 1, done.stderr
    (run_dir,) = results.iterdir()
    run = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    assert run["aborted"] is None
    assert run["runs_dispatched"] == run["runs_planned"]
