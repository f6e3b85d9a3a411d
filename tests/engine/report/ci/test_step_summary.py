"""``GITHUB_STEP_SUMMARY``: each run's Markdown report appended to GitHub's job summary."""

from __future__ import annotations

from pathlib import Path

from pipstorm.engine.report.ci.step_summary import ENV_VAR, append_markdown, append_report
from pipstorm.engine.report.model import build_report
from tests.engine.report.test_report import healthy_clients, healthy_requests, make_run_dir


def test_the_report_is_appended_without_charts_and_after_what_was_there(tmp_path: Path) -> None:
    report = build_report(make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients()))
    summary = tmp_path / "summary.md"
    summary.write_text("## an earlier step\n", encoding="utf-8")
    said: list[str] = []
    env = {ENV_VAR: str(summary)}
    assert append_report(report, said.append, env)
    assert append_report(report, said.append, env)  # a second run in the same step
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## an earlier step\n# pipstorm report: light_load\n")
    assert text.count("**PASS: all 4 thresholds passed**") == 2
    assert ".png" not in text  # the charts stay in the results folder
    assert said == []


def test_nothing_outside_github_actions_and_a_failed_write_is_said(tmp_path: Path) -> None:
    said: list[str] = []
    assert not append_markdown("# x", said.append, {})
    assert not append_markdown("# x", said.append, {ENV_VAR: "  "})
    assert not append_markdown("# x", said.append, {ENV_VAR: str(tmp_path / "no" / "file")})
    assert len(said) == 1
    assert said[0].startswith(f"pipstorm: WARNING: {ENV_VAR} not written: ")
