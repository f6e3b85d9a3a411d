"""The compact summary printed at the end of ``pipstorm run`` and ``pipstorm report``."""

from __future__ import annotations

from pipstorm.engine.analysis.generator.saturation import warning_lines
from pipstorm.engine.report.banner import verdict_line, verdict_reasons
from pipstorm.engine.report.markdown import table
from pipstorm.engine.report.model import Report
from pipstorm.engine.report.rows import (
    CLOUDWATCH_HEADERS,
    NONE,
    ONSET_HEADERS,
    SHARD_HEADERS,
    cause_lines,
    cloudwatch_rows,
    connections_text,
    dist_cells,
    onset_rows,
    shard_table_rows,
    threshold_rows,
)
from pipstorm.engine.report.target_rows import target_rows


def terminal_summary(report: Report) -> str:
    """Verdict, the generator warning, thresholds, operations, client runs, notes."""
    stats = report.stats
    lines = [verdict_line(report), *(f"cause: {c}" for c in cause_lines(report))]
    lines += verdict_reasons(report)
    lines += warning_lines(report.generator)
    lines += [f"target {label}: {text}" for label, text in target_rows(report)]
    if report.thresholds:
        lines += [
            "",
            table(
                [[r.key, r.limit, r.measured, r.result] for r in threshold_rows(report)],
                ("threshold", "limit", "measured", "result"),
                "simple",
                ("left", "right", "right", "left"),
            ),
        ]
    if stats.operations:
        rows = [
            [
                op,
                str(s.count),
                *dist_cells(s.total_ms, ("p50", "p95", "p99"), 1),
                str(s.error_count),
            ]
            for op, s in stats.operations.items()
        ]
        lines += [
            "",
            table(
                rows, ("operation", "requests", "p50 ms", "p95 ms", "p99 ms", "errors"), "simple"
            ),
        ]
    runs = stats.clients.all
    outcomes = ", ".join(f"{k} {n}" for k, n in runs.by_outcome.items()) or "none"
    lag = NONE if runs.lag_s is None else f"{runs.lag_s.p95:.3f}/{runs.lag_s.max:.3f}"
    lines += ["", f"client runs: {runs.count} ({outcomes}); lag p95/max {lag} s"]
    connections = connections_text(report)
    if connections is not None:
        lines.append(f"connections: {connections}")
    onset = onset_rows(report)
    if onset:
        lines += ["", table(onset, ONSET_HEADERS, "simple")]
    cloudwatch = cloudwatch_rows(report)
    if cloudwatch:
        lines += ["", table(cloudwatch, CLOUDWATCH_HEADERS, "simple")]
    if report.shards:
        lines += ["", table(shard_table_rows(report), SHARD_HEADERS, "simple")]
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
