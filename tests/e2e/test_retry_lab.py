"""Real pip against the real pypiserver through the proxy, under injected faults: what pip does.

pip 26 retries 500/502/503 with urllib3's backoff (0, 0.5, 1, 2, 4 s: backoff_factor 0.25) and
resumes cut downloads with Range requests. Gaps are compared by lower bounds and ratios, never
by exact times.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.trace import RunTrace, diagnose, load_traces
from tests.e2e.conftest import pipstorm

pytestmark = pytest.mark.e2e


def lab(env: dict[str, str], tmp_path: Path, *args: str) -> tuple[str, RunTrace, Path]:
    results = tmp_path / "results"
    done = pipstorm(
        ["retry-lab", "--results", str(results), *args], env, tmpdir=tmp_path / "tmp", timeout=180
    )
    assert done.returncode == 0, done.stderr
    (run_dir,) = results.iterdir()
    (trace,) = load_traces(run_dir).traces
    return done.stdout, trace, run_dir


def test_pip_recovers_from_three_503s_with_growing_backoff(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    out, trace, _ = lab(e2e_env, tmp_path, "--fault", "op=listing,status=503,first=3")
    assert trace.client is not None and trace.client.outcome == "ok"
    (listing,) = [u for u in trace.urls if u.op == "listing"]
    attempts = listing.attempts
    assert [a.outcome for a in attempts] == ["503", "503", "503", "200"]
    assert [a.record.fault for a in attempts] == ["f1", "f1", "f1", None]
    gaps = [a.gap_s for a in attempts[1:]]
    assert all(g is not None for g in gaps)
    g1, g2, g3 = (g or 0.0 for g in gaps)
    assert g2 >= 0.5 and g3 >= 1.0  # urllib3 sleeps at least 0.5 s, then 1 s
    assert g3 > 1.5 * g2 > 1.5 * g1  # and the sleeps grow
    assert "ok after 3 retries" in out
    assert "recovered after retrying: 1 run(s)" in out


def test_pip_gives_up_after_its_retries_and_the_trace_says_why(
    e2e_env: dict[str, str], tmp_path: Path
) -> None:
    out, trace, run_dir = lab(
        e2e_env, tmp_path, "--fault", "op=listing,status=503", "--client-arg", "--retries 2"
    )
    assert trace.client is not None and trace.client.outcome == "failed"
    assert "No matching distribution found" in trace.client.stderr_tail  # what pip says...
    assert [a.outcome for a in trace.attempts] == ["503", "503", "503"]
    assert diagnose(trace).startswith("retries exhausted on injected 503")  # ...what it means
    assert "1 x retries exhausted on injected 503" in out
    # The report names it too, and the thresholds do not count injected 503s.
    done = pipstorm(["report", str(run_dir)], e2e_env, tmpdir=tmp_path / "tmp")
    assert done.returncode == 0, done.stderr
    report_md = (run_dir / "report.md").read_text()
    assert "retries exhausted on injected 503" in report_md
    assert "3 request(s) met an injected fault (f1 3)" in report_md


def test_connection_reset_on_downloads_is_recorded(e2e_env: dict[str, str], tmp_path: Path) -> None:
    out, trace, _ = lab(e2e_env, tmp_path, "--fault", "op=download,reset=before")
    (download,) = [u for u in trace.urls if u.op == "download"]
    assert len(download.attempts) == 6  # pip's default: 5 retries
    assert all(a.outcome == "reset_before_headers" for a in download.attempts)
    assert trace.client is not None and trace.client.outcome == "failed"
    assert "retries exhausted on injected reset before headers" in out


def test_a_stall_longer_than_pips_timeout(e2e_env: dict[str, str], tmp_path: Path) -> None:
    out, trace, _ = lab(
        e2e_env, tmp_path, "--fault", "op=download,stall=10s", "--client-arg", "--timeout 2"
    )
    (download,) = [u for u in trace.urls if u.op == "download"]
    # pip times out after 2 s without a byte, then resumes with Range requests (206).
    assert len(download.attempts) >= 2
    assert all(a.record.fault == "f1" for a in download.attempts)
    assert {a.record.status for a in download.attempts[1:]} == {206}
    later = [a.gap_s for a in download.attempts[1:] if a.gap_from_start]
    assert later and all(g is not None and g >= 2.0 for g in later)  # its read timeout
    assert trace.client is not None and trace.client.outcome == "failed"
    assert "retries exhausted on injected stall" in out
