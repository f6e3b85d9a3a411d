"""report.json and run.json keep their keys: the seed's jq comparisons and older tools read them.

The lists are the contract (schema 1); adding a key is a deliberate change to this file.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipstorm.engine.report.write import write_reports
from tests.engine.synthetic_run import write_run

REPORT_KEYS = {
    "schema", "generated_at", "verdict", "profile", "started", "ended", "duration_s",
    "incomplete", "interrupted", "error_rate", "latency_p95", "latency_p99",
    "status_code_counts", "error_5xx_count", "operations", "requests", "thresholds", "clients",
    "failed_runs", "client_kinds", "skipped_lines", "notes", "generator", "onset", "target",
    "run", "run_dir", "cloudwatch", "shards",
    "target_failure", "failed_run_causes",
    "decision",
    "target_failed",
    "aborted",
}  # fmt: skip
DECISION_KEYS = {
    "verdict", "reason", "exit_code", "generator_bound", "generator_bound_allowed",
    "failed_thresholds", "decisive", "advice",
}  # fmt: skip
RUN_KEYS = {
    "schema", "profile", "planned_duration_s", "time_scale", "tick_s", "burst_ticks_s",
    "started", "ended", "interrupted", "seed", "runs_planned", "runs_dispatched", "thresholds",
    "target", "versions", "clients", "faults", "count_injected", "priority", "lab", "warnings",
    "shards",
    "launch",
    "allow_generator_bound",
    "run_timeout_s",
    "aborted",
}  # fmt: skip


def test_report_json_and_its_run_section_keep_their_keys(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=120)
    write_reports(run_dir)
    report = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert set(report) == REPORT_KEYS
    assert set(report["run"]) == RUN_KEYS  # run.json as RunMeta writes and reads it
    assert set(report["onset"]) == {
        "bursts", "base", "worst_p95_s", "limit_p95_s", "late", "gated_late",
    }  # fmt: skip
    assert set(report["decision"]) == DECISION_KEYS
    assert report["decision"]["verdict"] == report["verdict"] == "pass"
