"""The pytest plugin used as a user would: a test project of its own, run by pytest in a
subprocess that finds the plugin through its ``pytest11`` entry point."""

from __future__ import annotations

import os
import re
import signal
import urllib.error
import urllib.request

import psutil
import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e

USER_TESTS = """
def test_light_load_passes(pipstorm_run):
    assert pipstorm_run("light_load", duration=10).passed


def test_an_impossible_threshold_fails(pipstorm_run):
    result = pipstorm_run("light_load", duration=10, thresholds={"p95_listing_ms": 0.001})
    assert result.verdict == "fail"
    assert result.report["verdict"] == "fail"
    assert result.passed


def test_a_typo_is_a_usage_error(pipstorm_run):
    pipstorm_run("light_load", durration=10)
"""


@pytest.fixture
def user_env(
    pytester: pytest.Pytester, e2e_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> pytest.Pytester:
    """The user's project shares the e2e corpus cache (pytester gives it a HOME of its own)."""
    monkeypatch.setenv("PIPSTORM_CACHE_DIR", e2e_env["PIPSTORM_CACHE_DIR"])
    for name in [n for n in os.environ if n.startswith("PYPI_")]:
        monkeypatch.delenv(name)
    return pytester


def test_a_user_project_passes_and_fails(user_env: pytest.Pytester) -> None:
    user_env.makepyfile(test_load=USER_TESTS)
    result = user_env.runpytest_subprocess("-p", "no:cacheprovider", timeout=240)
    result.assert_outcomes(passed=1, failed=2)
    # What the user sees under the failed assert: the verdict and the failed threshold.
    result.stdout.re_match_lines(
        [
            r".*PipstormResult\(verdict='fail', failed=\['p95_listing_ms: [\d.]+ \(limit 0.001\)'",
            r".*unknown option 'durration'",
        ]
    )


def test_keep_after_leaves_the_target_up_and_says_where(user_env: pytest.Pytester) -> None:
    user_env.makepyfile(
        test_target="""
def test_target(pipstorm_target):
    assert pipstorm_target.kind == "embedded"
"""
    )
    result = user_env.runpytest_subprocess("-p", "no:cacheprovider", "--keep-after", timeout=120)
    result.assert_outcomes(passed=1)
    text = result.stdout.str()
    found = re.search(r"stays up at (http://127\.0\.0\.1:\d+/simple/) \(pid (\d+);", text)
    assert found, text
    url, pid = found.group(1), int(found.group(2))
    try:
        # The session is over and the server still answers (401: it wants its credentials).
        with pytest.raises(urllib.error.HTTPError) as answered:
            urllib.request.urlopen(url, timeout=10)  # noqa: S310 - loopback URL just printed
        answered.value.close()
        assert answered.value.code == 401
    finally:
        os.kill(pid, signal.SIGINT)
        psutil.wait_procs([psutil.Process(pid)], timeout=30)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
