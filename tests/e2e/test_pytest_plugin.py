"""The pytest plugin used as a user would: a test project of its own, run by pytest in a
subprocess that finds the plugin through its ``pytest11`` entry point."""

from __future__ import annotations

import os
import re
import secrets
import signal
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET

import psutil
import pytest

from tests.e2e.test_remote_index import USERNAME, serving

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.e2e

#: Latency on this busy machine is not what the plugin tests are about; nor is whether its
#: generator kept up (a generator-bound run would be skipped: tests/engine/report/
#: test_report_verdict.py covers that), hence allow_generator_bound=True below.
LATENCY_OFF = '{"p95_listing_ms": "off", "p99_download_ms": "off"}'

USER_TESTS = (
    """
import json

LATENCY_OFF = """
    + LATENCY_OFF
    + """


def test_light_load_passes(pipstorm_run, pipstorm_corpus):
    result = pipstorm_run(
        "light_load", duration=10, thresholds=LATENCY_OFF, allow_generator_bound=True
    )
    assert result.passed
    written = json.loads((result.run_dir / "report.json").read_text())
    assert written["verdict"] == result.report["verdict"] == "pass"
    paths = [
        json.loads(line)["path"]
        for line in (result.run_dir / "requests.jsonl").read_text().splitlines()
    ]
    fetched = {p.rsplit("/", 1)[-1] for p in paths if p.endswith(".whl")}
    wheels = {w.name for w in pipstorm_corpus.directory.glob("*.whl")}
    assert len(wheels) == 300  # the default corpus, 100 projects x 3 versions
    assert fetched and fetched <= wheels  # what the target served is that corpus


def test_an_impossible_threshold_fails(pipstorm_run):
    result = pipstorm_run(
        "light_load",
        duration=10,
        thresholds={"p95_listing_ms": 0.001},
        allow_generator_bound=True,
    )
    assert result.verdict == "fail"
    assert result.report["verdict"] == "fail"
    assert result.passed


def test_a_typo_is_a_usage_error(pipstorm_run):
    pipstorm_run("light_load", durration=10)
"""
)

REMOTE_TESTS = (
    """
import json

LATENCY_OFF = """
    + LATENCY_OFF
    + """


def test_against_the_given_index(pipstorm_run, pipstorm_target):
    assert pipstorm_target.kind == "remote"
    result = pipstorm_run(
        "light_load", duration=10, thresholds=LATENCY_OFF, allow_generator_bound=True
    )
    assert result.passed
    run = json.loads((result.run_dir / "run.json").read_text())
    assert run["target"]["kind"] == "remote"
"""
)


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
    result = user_env.runpytest_subprocess(
        "-p", "no:cacheprovider", "--pipstorm-junit", "pipstorm.xml", timeout=240
    )
    result.assert_outcomes(passed=1, failed=2)
    # What the user sees under the failed assert: the verdict and the failed threshold.
    result.stdout.re_match_lines(
        [
            r".*PipstormResult\(verdict='fail', failed=\['p95_listing_ms: [\d.]+ \(limit 0.001\)'",
            r".*unknown option 'durration'",
        ]
    )
    # --pipstorm-junit: one testsuite per run, named after its test, the verdicts as judged.
    root = ET.parse(user_env.path / "pipstorm.xml").getroot()  # noqa: S314 - the plugin's file
    suites = {s.get("name", "").rsplit("::", 1)[-1]: s for s in root}
    assert set(suites) == {"test_light_load_passes)", "test_an_impossible_threshold_fails)"}
    assert suites["test_light_load_passes)"].get("failures") == "0"
    failed = suites["test_an_impossible_threshold_fails)"].find("testcase/failure")
    assert failed is not None and failed.get("message", "").startswith("FAIL: measured")


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


def test_pipstorm_index_url_points_the_runs_at_another_index(
    user_env: pytest.Pytester, e2e_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    password = "pw-" + secrets.token_hex(12)
    with serving(e2e_env, password) as (port, _):
        monkeypatch.setenv("PYPI_USERNAME", USERNAME)
        monkeypatch.setenv("PYPI_PASSWORD", password)
        user_env.makepyfile(test_remote=REMOTE_TESTS)
        url = f"http://127.0.0.1:{port}/simple/"
        result = user_env.runpytest_subprocess(
            "-p", "no:cacheprovider", f"--pipstorm-index-url={url}", timeout=240
        )
    result.assert_outcomes(passed=1)
    assert password not in result.stdout.str() + result.stderr.str()
