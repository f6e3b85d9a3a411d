"""Run traces and their diagnosis: injected faults named as such, never "package missing"."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipstorm.engine.analysis.trace import build_trace, diagnose, failure_reasons, retry_counts
from pipstorm.engine.run.plan.profiles import ProfileError, load_profile
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

LISTING = "/simple/test-package-000/"
MISSING = "ERROR: No matching distribution found for test-package-000==1.0.0"


def req(
    ts: float, status: int | None, fault: str | None = None, path: str = LISTING
) -> RequestRecord:
    return RequestRecord(
        ts=ts,
        op="listing",
        method="GET",
        path=path,
        status=status,
        total_ms=10.0,
        run_id="r1",
        fault=fault,
    )


def client(outcome: str, stderr: str = "") -> ClientRecord:
    return ClientRecord(
        run_id="r1",
        client="pip",
        project="test-package-000",
        version="1.0.0",
        tick=0,
        burst=False,
        intended=0.0,
        started=0.0,
        launched=0.0,
        ended=9.0,
        lag_s=0.0,
        exit_code=0 if outcome == "ok" else 1,
        outcome=outcome,
        stderr_tail=stderr,
    )


KINDS = {"f1": "503"}


def test_retries_exhausted_on_an_injected_503_is_not_a_missing_package() -> None:
    requests = [req(1.0, 503, "f1"), req(1.01, 503, "f1"), req(1.52, 503, "f1")]
    trace = build_trace("r1", requests, client("failed", MISSING), KINDS)
    assert [a.number for a in trace.attempts] == [1, 2, 3]
    gaps = [a.gap_s for a in trace.attempts]
    assert gaps[0] is None and gaps[2] == pytest.approx(0.5, abs=0.02)
    assert diagnose(trace).startswith("retries exhausted on injected 503 (3 attempts")
    assert failure_reasons([trace]) == {"retries exhausted on injected 503": 1}
    assert retry_counts([trace]) == {"listing": (3, 2, 2)}


def test_genuine_failures_and_a_really_missing_package() -> None:
    genuine = build_trace("r1", [req(1.0, 503), req(1.1, 503)], client("failed", MISSING), {})
    assert diagnose(genuine).startswith("retries exhausted on 503 from the index")
    missing = build_trace("r1", [req(1.0, 200)], client("failed", MISSING), {})
    assert diagnose(missing).startswith("package missing: the listing answered 200")


def test_recovered_runs() -> None:
    trace = build_trace("r1", [req(1.0, 503, "f1"), req(1.1, 200)], client("ok"), KINDS)
    assert trace.recovered
    assert diagnose(trace) == "ok after 1 retries"


def test_profile_faults_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text(
        'clients = 1\nduration_s = 10\n[[faults]]\nop = "listing"\nstatus = 503\nfirst = 2\n'
        '[[faults]]\nspec = "op=download,stall=1s"\n'
    )
    assert load_profile(str(path)).faults == (
        "op=listing,status=503,first=2",
        "op=download,stall=1s",
    )
    path.write_text('clients = 1\nduration_s = 10\n[[faults]]\nop = "listing"\nstatus = 999\n')
    with pytest.raises(ProfileError, match="'status=999' must be an HTTP status code"):
        load_profile(str(path))
