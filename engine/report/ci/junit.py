"""A run's verdict as JUnit XML (``--junit FILE``), the format CI test reporters read.

GitLab's ``artifacts:reports:junit``, GitHub actions that publish test results, Jenkins and
most others read the same subset of the Ant/Jenkins JUnit schema: ``<testsuites>`` holding one
``<testsuite name tests failures errors skipped time timestamp>`` per run, each holding
``<testcase name classname time>`` elements that contain at most one ``<failure>``, ``<error>``
or ``<skipped>`` (with ``message`` and ``type``) and a ``<system-out>``. Only that subset is
written, so every reader shows the same thing.

One testsuite per run; in it one testcase per threshold (its name is the threshold, stable
from run to run so a reporter can follow its history; the measured value is in the message and
in ``system-out``), one for the generator check, one for the target staying up, and one for
the run having played to its end.

The generator check: a generator-bound run is a *skipped* testcase whose message is the
verdict's reason (``Report.decision``, the one rule of ``pipstorm.engine.analysis.verdict``):
for an ``inconclusive`` run (exit code 3) the load generator, not the index, was the bottleneck,
so the run can neither show the index good nor bad. It is not a failure: a failure would blame
the index in a CI history that tracks the index (docs/verdicts.md, the plugin's skip). When the
rule still says FAIL (5xx, a dead target), the threshold testcases carry the failures.

Nothing here holds a secret: the report's figures, the profile's name and the results folder;
never the index URL (it may carry user info) nor any credential.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.model import Report
from pipstorm.engine.report.rows import fmt_limit, fmt_measured
from pipstorm.engine.rundir.files import write_text_atomic

#: classname prefix of every testcase: ``pipstorm.<profile>.<group>``.
CLASS_PREFIX = "pipstorm"


@dataclass(frozen=True)
class Case:
    """One testcase: its outcome is ``passed``, ``failure``, ``error`` or ``skipped``."""

    name: str
    group: str
    outcome: str
    message: str
    detail: str = ""


def threshold_cases(report: Report) -> list[Case]:
    """One case per threshold: ``max_5xx <= 0``, PASS or FAIL with the measured value."""
    cases = []
    for result in report.thresholds:
        measured = fmt_measured(result)
        verdict = "PASS" if result.passed else "FAIL"
        message = f"{verdict}: measured {measured}, threshold {fmt_limit(result)}"
        detail = f"{result.description}\nthreshold: {fmt_limit(result)}\nmeasured: {measured}"
        cases.append(
            Case(
                name=f"{result.key} {fmt_limit(result)}",
                group="thresholds",
                outcome="passed" if result.passed else "failure",
                message=message,
                detail=f"{detail}\nresult: {verdict}",
            )
        )
    return cases


def generator_case(report: Report) -> Case:
    """Was the generator the bottleneck? Skipped with the reason when it was (see above):
    the verdict's own reason (``Report.decision``, ``pipstorm.engine.analysis.verdict``)."""
    name = "the load generator was not the bottleneck"
    check = report.generator
    if check is None or check.samples == 0:
        return Case(name, "generator", "skipped", "not checked: no host samples were recorded")
    decision = report.decision
    if decision.generator_bound:
        return Case(name, "generator", "skipped", f"{decision.verdict.upper()}: {decision.reason}")
    return Case(name, "generator", "passed", "the generator kept up")


def target_case(report: Report) -> Case:
    """The target stayed up for the whole run (a death is recorded in ``run.json``)."""
    name = "the target stayed up"
    died = report.run.target.get("died")
    if isinstance(died, dict):
        at = died.get("ts")
        since = (
            f" at t={at - report.run.started:.1f} s"
            if isinstance(at, int | float) and report.run.started is not None
            else ""
        )
        return Case(
            name,
            "target",
            "failure",
            f"the target died{since} (exit code {died.get('exit_code')})",
        )
    return Case(name, "target", "passed", "no death recorded")


def completion_case(report: Report) -> Case:
    """The run played its whole plan: an aborted run fails, an interrupted one is an error."""
    name = "the run played its whole plan"
    if report.aborted is not None:
        return Case(name, "run", "failure", f"aborted (--abort-on-fail): {report.aborted}")
    if report.interrupted:
        return Case(name, "run", "error", "interrupted: the numbers cover only the part that ran")
    if report.incomplete:
        return Case(name, "run", "error", "run.json has no end time: the run crashed or goes on")
    return Case(name, "run", "passed", "played to its end")


def run_cases(report: Report) -> list[Case]:
    """Every testcase of one run, in the order a reader goes through a report."""
    return [
        *threshold_cases(report),
        generator_case(report),
        target_case(report),
        completion_case(report),
    ]


def testsuite(report: Report, name: str | None = None) -> ET.Element:
    """One ``<testsuite>`` for one run (``name`` defaults to ``pipstorm <profile>``)."""
    cases = run_cases(report)
    suite_name = name or f"{CLASS_PREFIX} {report.profile_name}"
    suite = ET.Element(
        "testsuite",
        {
            "name": suite_name,
            "tests": str(len(cases)),
            "failures": str(sum(c.outcome == "failure" for c in cases)),
            "errors": str(sum(c.outcome == "error" for c in cases)),
            "skipped": str(sum(c.outcome == "skipped" for c in cases)),
            "time": f"{report.duration_s or 0.0:.3f}",
            "timestamp": _timestamp(report.run.started),
        },
    )
    props = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", report.verdict),
        ("profile", report.profile_name),
        ("run_dir", str(report.run_dir)),
    ):
        ET.SubElement(props, "property", {"name": key, "value": value})
    classname = f"{CLASS_PREFIX}.{_dotted(report.profile_name)}"
    for case in cases:
        suite.append(_testcase(case, classname))
    return suite


def error_suite(name: str, message: str) -> ET.Element:
    """A testsuite for a run that never got to send load (a sized target that did not start)."""
    suite = ET.Element(
        "testsuite",
        {
            "name": name,
            "tests": "1",
            "failures": "0",
            "errors": "1",
            "skipped": "0",
            "time": "0",
            "timestamp": _timestamp(None),
        },
    )
    suite.append(_testcase(Case("the target started", "target", "error", message), CLASS_PREFIX))
    return suite


def check_junit_path(path: Path) -> None:
    """Refuse, before any load, a ``--junit`` file that could not be written afterwards."""
    if path.is_dir():
        raise UsageError(f"--junit {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise UsageError(f"--junit {path}: no such folder {path.parent}")


def write_junit(path: Path, suites: Sequence[ET.Element]) -> None:
    """``<testsuites>`` holding ``suites``, written atomically to ``path``."""
    root = ET.Element("testsuites")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    time_s = 0.0
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        time_s += float(suite.get("time", "0"))
        root.append(suite)
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{time_s:.3f}")
    ET.indent(root)
    text = ET.tostring(root, encoding="unicode", xml_declaration=False)
    write_text_atomic(path, '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n")


def write_run_junit(path: Path, reports: Sequence[Report]) -> None:
    """The JUnit file of one or more runs (``pipstorm run``, ``sizing-lab``)."""
    write_junit(path, [testsuite(r) for r in reports])


def _testcase(case: Case, classname: str) -> ET.Element:
    element = ET.Element(
        "testcase", {"name": case.name, "classname": f"{classname}.{case.group}", "time": "0"}
    )
    if case.outcome != "passed":
        child = ET.SubElement(
            element, case.outcome, {"message": _clean(case.message), "type": case.group}
        )
        if case.outcome != "skipped":
            child.text = _clean(case.detail or case.message)
    ET.SubElement(element, "system-out").text = _clean(case.detail or case.message)
    return element


def _timestamp(epoch: float | None) -> str:
    """ISO 8601 without a zone, as the schema's ``timestamp`` type wants (UTC; now if the run
    never started)."""
    when = datetime.now(UTC) if epoch is None else datetime.fromtimestamp(epoch, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S")


def _dotted(name: str) -> str:
    """A profile name as one classname part (reporters split classnames on dots)."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name) or "run"


def _clean(text: str) -> str:
    """Text XML 1.0 can hold: control characters (a client's raw error) would make the file
    unreadable to every reporter, so they become spaces (ElementTree escapes the rest)."""
    return "".join(
        ch if ch in "\t\n\r" or (ord(ch) >= 0x20 and ord(ch) not in {0xFFFE, 0xFFFF}) else " "
        for ch in text
    )
