"""The verdict as every rendering shows it first: the line, and why when the generator mattered.

The verdict itself is ``pipstorm.engine.analysis.verdict``'s (``Report.decision``); this module
only words it, once, for the terminal, report.md and report.html's banner (whose colour is the
verdict's: green pass, red fail, and for inconclusive neither).
"""

from __future__ import annotations

from pipstorm.engine.analysis.verdict import ADVICE
from pipstorm.engine.report.model import Report


def verdict_line(report: Report) -> str:
    """``PASS: all 4 thresholds passed`` / ``FAIL: 1 of 4 thresholds failed [interrupted run]``
    / ``INCONCLUSIVE: the load generator was the bottleneck (all 2 thresholds passed)``
    / ``FAIL: target failed: <the fatal cause>; all 2 thresholds passed``."""
    failed = sum(1 for t in report.thresholds if not t.passed)
    total = len(report.thresholds)
    detail = (
        f"{failed} of {total} thresholds failed"
        if failed
        else f"all {total} thresholds passed"
        if total
        else "no thresholds set"
    )
    decision = report.decision
    fatal = report.target_failed
    if fatal is not None:  # the run fails on it whatever the thresholds: said first
        detail = f"target failed: {fatal.text}; {detail}"
    elif decision.verdict == "inconclusive":
        detail = f"the load generator was the bottleneck ({detail})"
    elif decision.allowed:
        detail += " (generator-bound, allowed)"
    flags = ["interrupted"] if report.interrupted else []
    if report.aborted is not None:
        flags.append("aborted")
    if report.incomplete and not report.interrupted:
        flags.append("incomplete")
    suffix = f" [{', '.join(flags)} run]" if flags else ""
    return f"{decision.verdict.upper()}: {detail}{suffix}"


def verdict_reasons(report: Report) -> list[str]:
    """Under the verdict line, when the generator was the bottleneck: why the verdict is what
    it is and, for an inconclusive run, what to do. Nothing when the generator kept up."""
    decision = report.decision
    if not decision.generator_bound:
        return []
    generator = report.generator
    why = "; ".join(generator.reasons) if generator is not None else "generator-bound"
    if decision.verdict == "inconclusive":
        return [
            f"Why: {why}: the profile's load was not played, so the thresholds say nothing "
            "about the index.",
            f"What to do: {ADVICE}",
        ]
    if decision.allowed:
        return [
            f"The load generator was the bottleneck ({why}); this verdict stands because "
            "allow_generator_bound was set (--allow-generator-bound or the profile's key)."
        ]
    return [
        f"The load generator was the bottleneck ({why}), but starvation cannot explain: "
        + "; ".join(decision.decisive)
        + "."
    ]
