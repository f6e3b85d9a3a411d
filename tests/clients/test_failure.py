"""A client run that did not succeed says why in its record, in the client's own words."""

from __future__ import annotations

from pipstorm.clients.failure import CAUSE_CHARS, failure_cause
from pipstorm.clients.process import Outcome
from pipstorm.clients.runner import classify

PIP_GAVE_UP = (
    "ERROR: Could not find a version that satisfies the requirement test-package-064==2.0.0 "
    "(from versions: none)\nERROR: No matching distribution found for test-package-064==2.0.0\n"
)


def outcome(
    code: int | None, stderr: str = "", stdout: str = "", *, timed_out: bool = False
) -> Outcome:
    return Outcome(
        argv=("pip",),
        exit_code=code,
        started=0.0,
        ended=1.0,
        duration_s=1.0,
        cpu_s=0.5,
        max_rss_kb=1,
        stdout_tail=stdout,
        stderr_tail=stderr,
        timed_out=timed_out,
    )


def test_a_failed_pip_run_keeps_pips_last_error_line() -> None:
    done = outcome(1, "WARNING: something harmless\n" + PIP_GAVE_UP)
    assert classify(done) == "failed"
    cause = failure_cause("failed", done, 120.0)
    assert cause == "ERROR: No matching distribution found for test-package-064==2.0.0"


def test_a_crash_after_the_error_line_is_summed_up_by_its_exception() -> None:
    crash = (
        'ERROR: Exception:\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "pip._vendor.requests.exceptions.RetryError: too many 502 error responses\n"
    )
    cause = failure_cause("failed", outcome(2, crash), 120.0)
    assert cause == "pip._vendor.requests.exceptions.RetryError: too many 502 error responses"


def test_without_an_error_line_the_last_line_or_the_exit_code_is_the_cause() -> None:
    assert failure_cause("failed", outcome(3, "", "lock failed\n\n"), 60) == "lock failed"
    assert failure_cause("failed", outcome(3), 60) == "exit code 3"
    assert failure_cause("failed", outcome(1, "x" * 1000), 60) == "x" * (CAUSE_CHARS - 3) + "..."


def test_a_timed_out_run_says_its_limit_and_what_it_said_last() -> None:
    done = outcome(-2, PIP_GAVE_UP, timed_out=True)
    assert classify(done) == "timeout"
    cause = failure_cause("timeout", done, 15.0)
    assert cause is not None
    assert cause.startswith("timed out after 15 s; last said: ERROR: No matching distribution")


def test_ok_runs_and_conflicts_have_no_cause() -> None:
    assert failure_cause("ok", outcome(0, "ERROR: noise"), 60) is None
    assert failure_cause("conflict", outcome(1, "ERROR: 409"), 60) is None
