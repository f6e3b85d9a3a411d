"""The dashboard's judged figures: what the report would say of the records read so far.

Built with the report's own code (:func:`pipstorm.engine.report.model.build_report`), so the
thresholds' states, the generator check, the burst onset and the target's failure on the page
are the ones ``report.json`` will hold; the verdict itself is shown once the run has ended.
"""

from __future__ import annotations

from typing import Any

from pipstorm.engine.report.banner import verdict_line
from pipstorm.engine.report.live.shard_figures import shard_saturation
from pipstorm.engine.report.model import Report, build_report
from pipstorm.engine.report.rows import fmt_limit, fmt_measured
from pipstorm.engine.rundir.data import RunData


def judged_state(data: RunData, *, final: bool) -> dict[str, Any]:
    """Thresholds, generator (each shard's too), onset per burst tick and target failure (and,
    when ``final``, the verdict) as JSON-ready data."""
    report = build_report(data)
    state: dict[str, Any] = {
        "final": final,
        "thresholds": [
            {
                "key": t.key,
                "description": t.description,
                "limit": fmt_limit(t),
                "measured": fmt_measured(t),
                "passed": t.passed,
            }
            for t in report.thresholds
        ],
        "generator": _generator(report),
        "shard_generators": shard_saturation(data),  # none on a one-machine run
        "onset": _onset(report),
        "target_failure": [c.text for c in report.target_failure],
        "status_counts": dict(report.stats.requests.status_code_counts),
        "verdict": None,
        "verdict_line": None,
        "verdict_reason": None,
    }
    if final:  # the verdict as the report words it (pipstorm.engine.report.banner)
        state["verdict"] = report.verdict
        state["verdict_line"] = verdict_line(report)
        state["verdict_reason"] = report.decision.reason
    return state


def _generator(report: Report) -> dict[str, Any]:
    check = report.generator
    if check is None or check.samples == 0:
        return {"saturated": None, "reason": "no host samples yet", "cpu_p95": None}
    return {
        "saturated": check.saturated,
        "reason": "; ".join(check.reasons) or None,
        "cpu_p95": check.cpu_p95,
        "lag_p99_s": check.lag_p99_s,
    }


def _onset(report: Report) -> dict[str, Any]:
    """Per burst tick: its offset in the run, runs reached, onset p50/p95/max (s)."""
    onset = report.onset
    ticks: list[dict[str, Any]] = []
    if onset is not None:
        for tick in onset.bursts:
            dist = tick.onset_s
            ticks.append(
                {
                    "offset_s": tick.offset_s,
                    "runs": tick.runs,
                    "reached": tick.reached,
                    "p50": None if dist is None else dist.p50,
                    "p95": None if dist is None else dist.p95,
                    "max": None if dist is None else dist.max,
                }
            )
    base = None if onset is None or onset.base is None else onset.base.onset_s
    return {"bursts": ticks, "base_p95": None if base is None else base.p95}
