"""The verdict over real report folders (synthetic records, the engine's own writers): an
inconclusive run in every rendering, the exit code, compare, the plugin, the profile key.

The rule's branches over its own inputs are in tests/engine/analysis/test_verdict.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipstorm.engine.analysis.verdict import EXIT_CODES
from pipstorm.engine.cli import main
from pipstorm.engine.pytest_plugin import judged
from pipstorm.engine.report.banner import verdict_line
from pipstorm.engine.report.compare import compare_paths
from pipstorm.engine.report.markdown import render_markdown
from pipstorm.engine.report.model import REPORT_HTML, REPORT_JSON, Report, build_report
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.run.execute import RunResult
from pipstorm.engine.run.plan.profiles import ProfileError, load_profile
from pipstorm.engine.rundir.files import REQUESTS_FILE, RUN_FILE
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import RequestRecord
from tests.engine.chromium_shot import needs_chromium, screenshot, verdict_colour
from tests.engine.synthetic_run import T0, write_run

SLOW_LISTINGS = {"error_rate": 1.0, "p95_listing_ms": 1.0}  # a latency threshold that fails


def bound_run(run_dir: Path, *, busy_cpu: float = 99.0) -> Path:
    """Two minutes of production_incident whose generator was above 90 % for 8 s per burst."""
    return write_run(run_dir, duration_s=120, busy_cpu=busy_cpu)


def add_requests(run_dir: Path, n: int, *, status: int | None, error: str | None) -> None:
    """Append ``n`` listings answered with ``status`` (or no answer and ``error``)."""
    with JsonlWriter(run_dir / REQUESTS_FILE) as out:
        for i in range(n):
            out.write(
                RequestRecord(
                    ts=T0 + 30 + i * 0.1,
                    op="listing",
                    method="GET",
                    path=f"/simple/p{i}/",
                    status=status,
                    total_ms=30_000.0 if error == "upstream_timeout" else 5.0,
                    run_id="r00001",
                    error=error,
                )
            )


def edit_run_json(run_dir: Path, **fields: Any) -> None:
    path = run_dir / RUN_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(fields)
    path.write_text(json.dumps(data), encoding="utf-8")


def test_a_generator_that_kept_up_still_passes(tmp_path: Path) -> None:
    report = build_report(bound_run(tmp_path / "run", busy_cpu=85.0))
    assert report.generator is not None and not report.generator.saturated
    assert (report.verdict, report.exit_code) == ("pass", 0)
    assert verdict_line(report) == "PASS: all 2 thresholds passed"


def test_a_bound_generator_is_inconclusive_in_every_rendering(tmp_path: Path) -> None:
    run_dir = bound_run(tmp_path / "run")
    report = write_reports(run_dir)
    assert (report.verdict, report.exit_code) == ("inconclusive", 3)
    assert EXIT_CODES == {"pass": 0, "fail": 1, "inconclusive": 3}
    line = "INCONCLUSIVE: the load generator was the bottleneck (all 2 thresholds passed)"
    assert verdict_line(report) == line
    summary = terminal_summary(report).splitlines()
    assert summary[0] == line
    assert summary[1].startswith("Why: generator host CPU above 90 % for 8 consecutive s: ")
    assert summary[2].startswith("What to do:") and "--shards" in summary[2]
    md = render_markdown(report)
    head = md.split("## Thresholds")[0]
    assert f"**{line}**" in head and "fewer clients per machine" in head
    page = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    assert '<header class="verdict inconclusive" id="verdict">' in page
    assert "<title>pipstorm INCONCLUSIVE: production_incident</title>" in page
    assert '<div class="reason">What to do: Play the profile again' in page
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["verdict"] == "inconclusive"
    decision = data["decision"]
    assert decision["verdict"] == "inconclusive" and decision["exit_code"] == 3
    assert decision["generator_bound"] is True and decision["generator_bound_allowed"] is False
    assert "generator host CPU above 90 % for 8 consecutive s" in decision["reason"]
    assert data["generator"]["saturated"] is True  # the check's figures stay where they were
    assert data["generator"]["cpu_busy_longest_s"] == 8.0
    assert main(["report", str(run_dir)]) == 3  # the exit code of `pipstorm report`


def test_a_failing_latency_under_a_bound_generator_is_inconclusive(tmp_path: Path) -> None:
    report = build_report(bound_run(tmp_path / "run"), SLOW_LISTINGS)
    assert not all(t.passed for t in report.thresholds)
    assert report.verdict == "inconclusive"
    assert verdict_line(report).endswith("(1 of 2 thresholds failed)")


def test_5xx_under_a_bound_generator_is_a_fail_saying_why(tmp_path: Path) -> None:
    run_dir = bound_run(tmp_path / "run")
    add_requests(run_dir, 2, status=502, error=None)
    report = build_report(run_dir, {**SLOW_LISTINGS, "max_5xx": 0})
    assert (report.verdict, report.exit_code) == ("fail", 1)
    assert report.decision.decisive == ("2 5xx responses (max_5xx 0)",)
    summary = terminal_summary(report).splitlines()
    assert summary[0] == "FAIL: 2 of 3 thresholds failed"
    assert summary[1].startswith("cause: target answered 5xx")  # named as before
    assert summary[2].startswith("The load generator was the bottleneck (")
    assert summary[2].endswith("but starvation cannot explain: 2 5xx responses (max_5xx 0).")


def test_timeouts_are_inconclusive_and_refused_connections_fail(tmp_path: Path) -> None:
    timeouts = bound_run(tmp_path / "timeouts")
    add_requests(timeouts, 20, status=None, error="upstream_timeout")
    report = build_report(timeouts)
    assert not next(t for t in report.thresholds if t.key == "error_rate").passed
    assert report.verdict == "inconclusive"

    refused = bound_run(tmp_path / "refused")
    add_requests(refused, 20, status=None, error="upstream_refused: connection refused")
    report = build_report(refused)
    assert report.verdict == "fail"
    assert "failed other than by timing out" in report.decision.decisive[0]
    assert "the target refused connections" in report.decision.decisive


def test_a_target_that_died_fails_a_bound_run_whose_latency_failed(tmp_path: Path) -> None:
    run_dir = bound_run(tmp_path / "run")
    edit_run_json(run_dir, target={"kind": "embedded", "died": {"ts": T0 + 50, "exit_code": -9}})
    report = build_report(run_dir, {"p95_listing_ms": 1.0})
    assert report.verdict == "fail"
    # The target's own failure decides first, named (pipstorm.engine.analysis.target.failure).
    (decisive,) = report.decision.decisive
    assert decisive.startswith("the embedded target (pypiserver) died at t=50.0 s")
    assert report.decision.reason.startswith("target failed: the embedded target")


def test_allow_generator_bound_in_run_json_keeps_pass_with_the_warning(tmp_path: Path) -> None:
    run_dir = bound_run(tmp_path / "run")
    edit_run_json(run_dir, allow_generator_bound=True)
    report = build_report(run_dir)
    assert (report.verdict, report.exit_code) == ("pass", 0)
    assert verdict_line(report) == "PASS: all 2 thresholds passed (generator-bound, allowed)"
    summary = terminal_summary(report)
    assert "verdict stands because allow_generator_bound was set" in summary
    assert "WARNING: the load generator was the bottleneck" in summary
    assert report.to_dict()["run"]["allow_generator_bound"] is True
    assert RunMeta.read(run_dir).allow_generator_bound is True
    edit_run_json(run_dir, allow_generator_bound="yes")
    with pytest.raises(Exception, match="'allow_generator_bound' must be true or false"):
        RunMeta.read(run_dir)


def test_compare_uses_the_same_word_and_rule(tmp_path: Path) -> None:
    kept_up = write_run(tmp_path / "kept-up", duration_s=120, host=True)
    bound = bound_run(tmp_path / "bound")
    write_reports(kept_up)
    write_reports(bound)
    # A report.json written before the rule: "pass" above a saturated generator.
    old = json.loads((bound / REPORT_JSON).read_text(encoding="utf-8"))
    old["verdict"] = "pass"
    del old["decision"]
    (tmp_path / "old.json").write_text(json.dumps(old), encoding="utf-8")
    data = json.loads(compare_paths([kept_up, bound, tmp_path / "old.json"], "json"))
    assert [r["verdict"] for r in data["runs"]] == ["pass", "inconclusive", "inconclusive"]
    table = compare_paths([kept_up, bound], "table")
    verdicts = next(line for line in table.splitlines() if line.startswith("verdict"))
    assert verdicts.split() == ["verdict", "pass", "inconclusive"]


def result_of(report: Report) -> RunResult:
    return RunResult(run_dir=report.run_dir, report=report, interrupted=False)


def test_the_plugin_skips_an_inconclusive_run_and_fails_it_when_strict(tmp_path: Path) -> None:
    report = build_report(bound_run(tmp_path / "run"))
    with pytest.raises(pytest.skip.Exception, match="pipstorm: INCONCLUSIVE: the load generator"):
        judged(result_of(report), strict=False)
    with pytest.raises(pytest.fail.Exception, match="pipstorm: INCONCLUSIVE: the load generator"):
        judged(result_of(report), strict=True)
    kept_up = build_report(bound_run(tmp_path / "kept-up", busy_cpu=85.0))
    result = judged(result_of(kept_up), strict=True)
    assert result.passed and result.reason == "all 2 thresholds passed"


def test_the_profile_key_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text("clients = 2\nduration_s = 30\nallow_generator_bound = true\n")
    assert load_profile(str(path)).allow_generator_bound is True
    path.write_text("clients = 2\nduration_s = 30\nallow_generator_bound = 1\n")
    with pytest.raises(ProfileError, match="allow_generator_bound has the wrong type"):
        load_profile(str(path))
    path.write_text("clients = true\nduration_s = 30\n")
    with pytest.raises(ProfileError, match="clients has the wrong type"):
        load_profile(str(path))


@needs_chromium
def test_chromium_shows_the_inconclusive_banner_neither_green_nor_red(tmp_path: Path) -> None:
    run_dir = bound_run(tmp_path / "run")
    write_reports(run_dir)
    shot = screenshot(run_dir / REPORT_HTML, tmp_path / "shot.png", tmp_path / "profile")
    r, g, b = verdict_colour(shot)
    assert abs(r - 0x4A) < 24 and abs(g - 0x55) < 24 and abs(b - 0x68) < 24, (r, g, b)


@pytest.mark.parametrize("command", ["run", "sizing-lab"])
def test_the_flag_is_offered_where_runs_are_judged(
    command: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # rich cuts long option names at 80 columns
    assert main([command, "--help"]) == 0
    assert "--allow-generator-bound" in capsys.readouterr().out
