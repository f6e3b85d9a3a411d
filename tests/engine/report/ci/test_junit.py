"""``--junit FILE``: a run's verdict as the JUnit XML that CI test reporters read.

The files are checked against the rules of the Jenkins ``junit-10.xsd`` schema, the common
subset GitLab's and GitHub's reporters parse (element order, required attributes, counts that
add up), by :func:`check_junit` below, so a test fails for a file a reporter would refuse.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.ci.junit import (
    check_junit_path,
    error_suite,
    write_junit,
    write_run_junit,
)
from pipstorm.engine.report.model import build_report
from pipstorm.engine.rundir.files import HOST_FILE
from tests.engine.analysis.test_stats import T0, req
from tests.engine.report.test_report import (
    healthy_clients,
    healthy_requests,
    make_run_dir,
    run_json,
)
from tests.engine.synthetic_run import host_line

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$")
_DECIMAL = re.compile(r"^\d+(\.\d+)?$")
_OUTCOMES = ("skipped", "error", "failure")


def _ordered(children: list[ET.Element], order: tuple[str, ...], where: str) -> None:
    """Children only of the allowed tags, in the schema's sequence order."""
    ranks = [order.index(c.tag) if c.tag in order else -1 for c in children]
    assert -1 not in ranks, f"{where}: unexpected child {[c.tag for c in children]}"
    assert ranks == sorted(ranks), f"{where}: children out of order {[c.tag for c in children]}"


def check_junit(path: Path) -> ET.Element:
    """Parse ``path`` and check it against junit-10.xsd's rules; return the root."""
    root = ET.parse(path).getroot()  # noqa: S314 - the file the test just wrote
    assert root.tag == "testsuites"
    totals = dict.fromkeys(("tests", "failures", "errors", "skipped"), 0)
    for suite in root:
        assert suite.tag == "testsuite"
        for attr in ("name", "tests", "failures", "errors", "skipped", "time", "timestamp"):
            assert suite.get(attr) is not None, f"testsuite without {attr}"
        assert _DECIMAL.match(suite.get("time", "")), suite.get("time")
        assert _TIMESTAMP.match(suite.get("timestamp", "")), suite.get("timestamp")
        _ordered(list(suite), ("properties", "testcase", "system-out", "system-err"), "suite")
        for prop in suite.iter("property"):
            assert prop.get("name") and prop.get("value") is not None
        cases = suite.findall("testcase")
        counted = dict.fromkeys(_OUTCOMES, 0)
        for case in cases:
            assert case.get("name") and case.get("classname"), case.attrib
            assert _DECIMAL.match(case.get("time", "")), case.attrib
            _ordered(list(case), ("skipped", "error", "failure", "system-out", "system-err"), "tc")
            outcomes = [c for c in case if c.tag in _OUTCOMES]
            assert len(outcomes) <= 1, "a testcase has one outcome"
            for outcome in outcomes:
                assert outcome.get("message"), "reporters show the message"
                counted[outcome.tag] += 1
        assert int(suite.get("tests", "")) == len(cases)
        assert int(suite.get("failures", "")) == counted["failure"]
        assert int(suite.get("errors", "")) == counted["error"]
        assert int(suite.get("skipped", "")) == counted["skipped"]
        for key in totals:
            totals[key] += int(suite.get(key, ""))
    for key, value in totals.items():
        assert int(root.get(key, "")) == value
    return root


def _cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {c.get("name", ""): c for c in suite.findall("testcase")}


def test_a_passing_run_is_one_suite_of_passing_threshold_cases(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    out = tmp_path / "junit.xml"
    write_run_junit(out, [build_report(run_dir)])
    root = check_junit(out)
    (suite,) = root
    assert suite.get("name") == "pipstorm light_load"
    cases = _cases(suite)
    assert list(cases)[:4] == [
        "error_rate < 1 %",
        "p95_listing_ms < 2000 ms",
        "p99_download_ms < 5000 ms",
        "max_5xx <= 0",
    ]
    for name in list(cases)[:4]:
        assert cases[name].find("failure") is None
        assert (cases[name].findtext("system-out") or "").endswith("result: PASS")
    assert cases["the target stayed up"].find("failure") is None
    assert cases["the run played its whole plan"].find("error") is None
    # No host.jsonl: the generator was not checked, which is said, not passed.
    skipped = cases["the load generator was not the bottleneck"].find("skipped")
    assert skipped is not None and "no host samples" in skipped.get("message", "")
    assert suite.get("failures") == "0"
    assert suite.get("skipped") == "1"
    assert "127.0.0.1:8080" not in out.read_text(encoding="utf-8")  # never the index URL


def test_failed_thresholds_and_a_dead_target_are_failures_with_measured_values(
    tmp_path: Path,
) -> None:
    requests = [
        *healthy_requests(),
        req(40, "listing", 503, 10.0, run_id="r1"),
        req(41, "listing", 503, 10.0, run_id="r1", error="upstream_error: \x1b[31mbad\x00"),
    ]
    died = {"kind": "embedded", "died": {"ts": T0 + 42.5, "exit_code": -9}}
    run_dir = make_run_dir(tmp_path / "run", requests, healthy_clients(), run=run_json(target=died))
    out = tmp_path / "junit.xml"
    write_run_junit(out, [build_report(run_dir)])
    cases = _cases(check_junit(out)[0])
    failure = cases["max_5xx <= 0"].find("failure")
    assert failure is not None
    assert failure.get("message") == "FAIL: measured 2, threshold <= 0"
    assert "result: FAIL" in (failure.text or "")
    error_rate = cases["error_rate < 1 %"].find("failure")
    assert error_rate is not None and "measured 3.23 %" in error_rate.get("message", "")
    dead = cases["the target stayed up"].find("failure")
    assert dead is not None
    assert dead.get("message") == "the target died at t=42.5 s (exit code -9)"


def test_a_generator_bound_run_skips_the_generator_case_with_its_reason(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    lines = [json.dumps(host_line(T0 + s, 100.0)) for s in range(60)]
    (run_dir / HOST_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = build_report(run_dir)
    assert report.generator is not None and report.generator.saturated
    out = tmp_path / "junit.xml"
    write_run_junit(out, [report])
    skipped = _cases(check_junit(out)[0])["the load generator was not the bottleneck"].find(
        "skipped"
    )
    assert skipped is not None
    # The verdict's own reason (pipstorm.engine.analysis.verdict): inconclusive, exit code 3.
    assert report.decision.verdict == "inconclusive"
    assert skipped.get("message") == f"INCONCLUSIVE: {report.decision.reason}"
    assert "the load generator was the bottleneck" in skipped.get("message", "")


def test_interrupted_run_is_an_error_case_and_several_runs_several_suites(
    tmp_path: Path,
) -> None:
    ok = make_run_dir(tmp_path / "a", healthy_requests(), healthy_clients())
    cut = make_run_dir(
        tmp_path / "b", healthy_requests(), healthy_clients(), run=run_json(interrupted=True)
    )
    out = tmp_path / "junit.xml"
    write_junit(
        out,
        [
            *_suites(ok, cut),
            error_suite("pipstorm sizing-lab baseline", "the server died starting"),
        ],
    )
    root = check_junit(out)
    assert len(root) == 3
    assert root.get("errors") == "2"
    interrupted = _cases(root[1])["the run played its whole plan"].find("error")
    assert interrupted is not None and interrupted.get("message", "").startswith("interrupted")


def _suites(*run_dirs: Path) -> list[ET.Element]:
    from pipstorm.engine.report.ci.junit import testsuite

    return [testsuite(build_report(d)) for d in run_dirs]


def test_a_junit_path_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such folder"):
        check_junit_path(tmp_path / "missing" / "junit.xml")
    with pytest.raises(UsageError, match="is a folder"):
        check_junit_path(tmp_path)
    check_junit_path(tmp_path / "junit.xml")
