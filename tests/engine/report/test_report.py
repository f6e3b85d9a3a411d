"""Reports built from hand-written run directories, as a crash or Ctrl-C leaves them too."""

from __future__ import annotations

import dataclasses
import html
import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from pipstorm.engine.report.model import (
    REPORT_HTML,
    REPORT_JSON,
    REPORT_MD,
    ReportError,
    build_report,
)
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.rundir.events import TARGET_DIED
from pipstorm.engine.rundir.files import EVENTS_FILE, RUN_FILE
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord
from tests.engine.analysis.test_stats import T0, req, run


def run_json(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": 1,
        "profile": {
            "name": "light_load",
            "clients": 3,
            "duration_s": 300,
            "tick_s": 10,
            "burst_every_s": None,
            "burst_multiplier": 1,
        },
        "planned_duration_s": 60,
        "time_scale": 1.0,
        "started": T0,
        "ended": T0 + 60,
        "interrupted": False,
        "seed": 1,
        "runs_planned": 3,
        "target": {"kind": "embedded", "index_url": "http://127.0.0.1:8080/simple/"},
        "thresholds": {
            "error_rate": 1.0,
            "p95_listing_ms": 2000.0,
            "p99_download_ms": 5000.0,
            "max_5xx": 0.0,
        },
        "versions": {"pipstorm": "0.1.0", "python": "3.11", "pip": "26.0.1"},
    }
    base.update(changes)
    return base


def make_run_dir(
    path: Path,
    requests: list[RequestRecord],
    clients: list[ClientRecord],
    *,
    run: dict[str, Any] | None = None,
    truncate: bool = True,
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / RUN_FILE).write_text(json.dumps(run or run_json()), encoding="utf-8")
    for name, records in (("requests.jsonl", requests), ("clients.jsonl", clients)):
        lines = [json.dumps(r.to_json()) + "\n" for r in records]
        if truncate and records:  # the last line cut short, as a crash leaves it
            lines.append(json.dumps(records[0].to_json())[:40])
        (path / name).write_text("".join(lines), encoding="utf-8")
    return path


def healthy_requests() -> list[RequestRecord]:
    out = []
    for i in range(30):
        run_id = f"r{i % 3}"
        out.append(req(i, "listing", 200, 50.0 + i, run_id=run_id, path=f"/simple/p{i}/"))
        out.append(req(i + 0.1, "download", 200, 80.0 + 2 * i, run_id=run_id, path=f"/d{i}"))
    return out


def healthy_clients() -> list[ClientRecord]:
    return [run("r0", lag=0.01), run("r1", lag=0.02, intended=10), run("r2", intended=20)]


def test_report_of_a_healthy_run(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    report = write_reports(run_dir)
    assert report.verdict == "pass"
    assert report.exit_code == 0
    assert report.skipped_lines == {"requests.jsonl": 1, "clients.jsonl": 1}
    assert not report.incomplete
    assert not report.interrupted

    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    for key in (
        "schema",
        "generated_at",
        "verdict",
        "error_rate",
        "latency_p95",
        "latency_p99",
        "status_code_counts",
        "error_5xx_count",
        "operations",
        "thresholds",
        "clients",
        "run",
        "incomplete",
        "interrupted",
        "skipped_lines",
        "duration_s",
    ):
        assert key in data, key
    assert data["schema"] == 1
    assert data["verdict"] == "pass"
    assert data["error_rate"] == 0.0
    assert data["status_code_counts"] == {"200": 60}
    assert data["error_5xx_count"] == 0
    assert data["duration_s"] == pytest.approx(60.0)
    totals = sorted(r.total_ms for r in healthy_requests())
    cuts = statistics.quantiles(totals, n=100, method="inclusive")
    assert data["latency_p95"] == pytest.approx(cuts[94])
    assert data["latency_p99"] == pytest.approx(cuts[98])
    assert data["operations"]["listing"]["count"] == 30
    assert data["operations"]["download"]["total_ms"]["max"] == 80.0 + 2 * 29
    assert data["clients"]["all"]["count"] == 3
    assert data["run"]["profile"]["name"] == "light_load"
    assert {t["key"]: t["passed"] for t in data["thresholds"]} == {
        "error_rate": True,
        "p95_listing_ms": True,
        "p99_download_ms": True,
        "max_5xx": True,
    }
    assert set(data["thresholds"][0]) >= {"key", "description", "limit", "measured", "passed"}

    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert md.startswith("# pipstorm report: light_load\n\n**PASS: all 4 thresholds passed**")
    assert "| listing" in md
    assert "Skipped 1 malformed line(s) in requests.jsonl" in md
    # only the reports were added next to the streams: no temp files left behind
    assert sorted(p.name for p in run_dir.iterdir() if not p.name.startswith("chart-")) == [
        "clients.jsonl",
        "report.html",
        "report.json",
        "report.md",
        "requests.jsonl",
        "run.json",
    ]
    assert {p.name for p in run_dir.glob("chart-*")} == {
        f"chart-{k}.png" for k in ("rate", "latency", "status", "latency-distribution", "clients")
    }


def test_failing_thresholds_show_in_report_md_with_measured_values(tmp_path: Path) -> None:
    requests = healthy_requests()
    requests += [req(40 + i, "listing", 200, 2600.0, run_id="r0") for i in range(10)]
    requests += [req(50, "listing", 503, 12.0, run_id="r1")]
    run_dir = make_run_dir(tmp_path / "run", requests, healthy_clients())
    report = write_reports(run_dir)
    assert report.verdict == "fail"
    assert report.exit_code == 1
    failed = {t.key: t for t in report.thresholds if not t.passed}
    assert set(failed) == {"p95_listing_ms", "error_rate", "max_5xx"}
    listing = sorted(r.total_ms for r in requests if r.op == "listing")
    expected_p95 = statistics.quantiles(listing, n=100, method="inclusive")[94]
    assert failed["p95_listing_ms"].measured == pytest.approx(expected_p95)

    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert "**FAIL: 3 of 4 thresholds failed**" in md
    row = next(line for line in md.splitlines() if line.startswith("| p95_listing_ms"))
    assert f"{expected_p95:.1f} ms" in row
    assert "< 2000 ms" in row
    assert "**FAIL**" in row
    error_row = next(line for line in md.splitlines() if line.startswith("| error_rate"))
    assert f"{100 / 71:.2f} %" in error_row
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["verdict"] == "fail"
    assert data["error_5xx_count"] == 1
    assert data["status_code_counts"] == {"200": 70, "503": 1}


def test_missing_operation_fails_with_no_samples(tmp_path: Path) -> None:
    listings = [r for r in healthy_requests() if r.op == "listing"]
    run_dir = make_run_dir(tmp_path / "run", listings, healthy_clients())
    report = write_reports(run_dir)
    result = next(t for t in report.thresholds if t.key == "p99_download_ms")
    assert (result.measured, result.passed) == (None, False)
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    row = next(line for line in md.splitlines() if line.startswith("| p99_download_ms"))
    assert "no samples" in row
    assert "Threshold p99_download_ms: no samples: no download requests were made" in md


def test_interrupted_run_is_reported_and_marked(tmp_path: Path) -> None:
    clients = [*healthy_clients(), run("r3", "interrupted")]
    run_dir = make_run_dir(
        tmp_path / "run",
        healthy_requests(),
        clients,
        run=run_json(ended=None, interrupted=True, runs_planned=18),
    )
    report = write_reports(run_dir)
    assert report.interrupted
    assert report.incomplete
    assert report.verdict == "pass"  # judged on what ran; the flags say it is partial
    # no end in run.json: the run lasted until the last thing recorded
    last = max([c.ended for c in clients] + [r.end for r in healthy_requests()])
    assert report.duration_s == pytest.approx(last - T0)
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert (data["interrupted"], data["incomplete"], data["ended"]) == (True, True, None)
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert "[interrupted run]" in md.splitlines()[2]
    assert "The run was interrupted" in md
    assert "4 of 18 planned client runs were recorded." in md
    assert "left out of the run error rate" in md


def test_crashed_run_without_end_is_incomplete(tmp_path: Path) -> None:
    run_dir = make_run_dir(
        tmp_path / "run", healthy_requests(), healthy_clients(), run=run_json(ended=None)
    )
    report = build_report(run_dir)
    assert report.incomplete
    assert not report.interrupted
    assert "[incomplete run]" in terminal_summary(report)
    assert any("no end time" in n for n in report.notes)


def test_notes_for_transport_errors_disconnects_and_unattributed(tmp_path: Path) -> None:
    requests = [
        *healthy_requests(),
        req(60, "download", None, 30000.0, error="upstream_timeout", ttfb_ms=None),
        req(61, "download", 200, 10.0, error="client_disconnected"),
        req(62, "other", 200, 1.0, run_id=None, path="/"),
    ]
    failed_run = ClientRecord.from_json(
        {**run("r9", "failed").to_json(), "stderr_tail": "Collecting x\nERROR: | boom\n"}
    )
    run_dir = make_run_dir(tmp_path / "run", requests, [*healthy_clients(), failed_run])
    report = write_reports(run_dir)
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert "1 request(s) got no complete upstream response (upstream_timeout 1)." in md
    assert "1 request(s) ended with the client disconnecting" in md
    assert "1 request(s) could not be attributed to a client run" in md
    assert "| upstream_timeout" in md
    assert "### Failed client runs (first 1 of 1)" in md
    assert "ERROR: \\| boom" in md  # a pipe in stderr must not break the table
    assert report.stats.requests.error_count == 1


def test_thresholds_can_be_replaced_to_rejudge_a_run(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    report = build_report(run_dir, {"p95_listing_ms": 60.0})
    assert [t.key for t in report.thresholds] == ["p95_listing_ms"]
    assert report.verdict == "fail"
    with pytest.raises(ReportError, match="unknown threshold 'nope'"):
        build_report(run_dir, {"nope": 1.0})


def test_run_without_thresholds_uses_the_defaults(tmp_path: Path) -> None:
    run = run_json()
    del run["thresholds"]
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients(), run=run)
    assert [t.key for t in build_report(run_dir).thresholds] == [
        "error_rate",
        "p95_listing_ms",
        "p99_download_ms",
        "max_5xx",
    ]


def test_empty_run_still_reports(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / RUN_FILE).write_text(json.dumps(run_json(ended=None)), encoding="utf-8")
    report = write_reports(run_dir)
    assert report.verdict == "fail"
    assert report.stats.requests.count == 0
    assert "requests.jsonl is missing: read as empty." in report.notes
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert "No requests were recorded." in md
    assert "No client runs were recorded." in md
    assert json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))["error_rate"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no run.json, not a pipstorm run directory"),
        ('{"schema": 1, "started"', "run.json: unreadable"),
        ("[1]", "run.json: expected a JSON object"),
        ('{"schema": 9}', "unsupported schema 9"),
        ('{"schema": 1, "thresholds": {"p95_x_ms": 1}}', "unknown threshold 'p95_x_ms'"),
        ('{"schema": 1, "thresholds": [1]}', "'thresholds' must be an object"),
    ],
)
def test_bad_run_directories_give_one_line_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    if content is not None:
        (tmp_path / RUN_FILE).write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=message) as info:
        build_report(tmp_path)
    assert "\n" not in str(info.value)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such run directory"):
        build_report(tmp_path / "absent")


def test_failed_write_keeps_the_previous_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    write_reports(run_dir)
    before = (run_dir / REPORT_JSON).read_text(encoding="utf-8")

    def refuse(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(ReportError, match="cannot write the report"):
        write_reports(run_dir, {"max_5xx": 0.0})
    monkeypatch.undo()
    assert (run_dir / REPORT_JSON).read_text(encoding="utf-8") == before
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]


def test_terminal_summary(tmp_path: Path) -> None:
    requests = [*healthy_requests(), req(70, "download", 200, 9000.0, run_id="r0")]
    run_dir = make_run_dir(tmp_path / "run", requests, healthy_clients())
    text = terminal_summary(build_report(run_dir))
    lines = text.splitlines()
    assert lines[0] == "FAIL: 1 of 4 thresholds failed"
    row = next(line for line in lines if line.startswith("p99_download_ms"))
    assert row.split()[-1] == "FAIL"
    assert "< 5000 ms" in row
    assert any(line.startswith("listing") and " 30 " in line for line in lines)
    assert "client runs: 3 (ok 3); lag p95/max" in text


def test_html_and_markdown_show_the_same_failed_run_reason(tmp_path: Path) -> None:
    """Both pages take the reason from one place: the diagnosis from the run's requests (an
    injected 503 named as such), not the client's raw error in one and the diagnosis in the
    other."""
    retries = [
        dataclasses.replace(req(t, "listing", 503, 5.0, run_id="r9"), fault="f1")
        for t in (1.0, 1.5, 2.5)
    ]
    failed = ClientRecord.from_json(
        {**run("r9", "failed").to_json(), "error": "pip exited 1", "stderr_tail": "ERROR: x"}
    )
    faults = [{"id": "f1", "spec": "op=listing,status=503"}]
    run_dir = make_run_dir(
        tmp_path / "run",
        [*healthy_requests(), *retries],
        [*healthy_clients(), failed],
        run=run_json(faults=faults),
    )
    report = write_reports(run_dir)
    reason = report.failure_reason(report.failed_runs[0])
    assert "injected 503" in reason
    assert "pip exited 1" not in reason
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    page = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    md_row = next(line for line in md.splitlines() if line.startswith("| r9 "))
    assert reason in md_row
    assert f'<td class="text">{html.escape(reason)}</td>' in page
    assert "pip exited 1" not in page


def test_a_failed_verdict_names_the_targets_failure_in_every_rendering(tmp_path: Path) -> None:
    refused = [
        req(t, "listing", None, 0.5, run_id="r9", error="upstream_refused", ttfb_ms=None)
        for t in (40.0, 40.1, 40.6, 41.6)
    ]
    failed = ClientRecord.from_json(
        {**run("r9", "failed").to_json(), "error": "ERROR: No matching distribution found"}
    )
    died: dict[str, Any] = {
        "kind": "embedded",
        "index_url": "http://127.0.0.1:1/simple/",
        "died": {
            "ts": T0 + 39.5,
            "exit_code": -9,
        },  # as pipstorm.engine.run.target.watch records it
    }
    run_dir = make_run_dir(
        tmp_path / "run",
        [*healthy_requests(), *refused],
        [*healthy_clients(), failed],
        run=run_json(target=died),
    )
    report = write_reports(run_dir)
    assert report.verdict == "fail"
    lines = [
        "the embedded target (pypiserver) died at t=39.5 s (exit code -9: killed by SIGKILL)",
        "target refused connections: 4 requests, t=40.0-41.6 s (upstream_refused); "
        "no request was answered after it",
        "failed client runs: 1 retries exhausted on upstream_refused from the index",
    ]
    summary = terminal_summary(report).splitlines()
    assert summary[1:4] == [f"cause: {line}" for line in lines]  # right under the verdict
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    page = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    for line in lines:
        assert f"- Cause: {line}" in md
        assert f'<div class="cause">Cause: {html.escape(line)}</div>' in page
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert [c["kind"] for c in data["target_failure"]] == ["died", "refused"]
    assert data["failed_run_causes"] == {"retries exhausted on upstream_refused from the index": 1}


def test_a_passing_verdict_shows_no_cause_lines(tmp_path: Path) -> None:
    requests = [*healthy_requests(), req(59, "listing", None, 0.5, error="upstream_refused")]
    run_dir = make_run_dir(
        tmp_path / "run", requests, healthy_clients(), run=run_json(thresholds={"max_5xx": 0})
    )
    report = write_reports(run_dir)
    assert report.verdict == "pass"
    assert [c.kind for c in report.target_failure] == ["refused"]  # in report.json all the same
    assert "cause:" not in terminal_summary(report)


def test_a_dead_target_fails_the_run_whatever_the_thresholds(tmp_path: Path) -> None:
    # Every threshold off and every request answered, pipstorm SIGKILLed before run.json had
    # an end: the death appended to events.jsonl at once still fails the run, named.
    run_dir = make_run_dir(
        tmp_path / "run",
        healthy_requests(),
        healthy_clients(),
        run=run_json(thresholds={}, ended=None),
    )
    event = {"ts": T0 + 8.0, "event": TARGET_DIED, "exit_code": -9}
    (run_dir / EVENTS_FILE).write_text(json.dumps(event) + "\n", encoding="utf-8")
    report = write_reports(run_dir)
    assert report.verdict == "fail"
    assert report.exit_code == 1
    died = "the embedded target (pypiserver) died at t=8.0 s (exit code -9: killed by SIGKILL)"
    summary = terminal_summary(report).splitlines()
    assert summary[0].startswith(f"FAIL: target failed: {died}")
    assert summary[1] == f"cause: {died}"
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    assert f"FAIL: target failed: {died}" in md
    page = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    assert '<header class="verdict fail"' in page
    assert html.escape(f"FAIL: target failed: {died}") in page
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["verdict"] == "fail"
    assert data["target_failure"][0]["kind"] == "died"
    assert data["target_failure"][0]["fatal"] is True
    assert data["target_failed"] == data["target_failure"][0]


def test_a_healthy_run_has_no_target_failure(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", healthy_requests(), healthy_clients())
    assert build_report(run_dir).to_dict()["target_failed"] is None


def test_connections_and_unattributed_requests_are_figures_of_every_rendering(
    tmp_path: Path,
) -> None:
    requests = [
        dataclasses.replace(r, conn=i // 2 + 1, upstream_new=i % 4 == 0)
        for i, r in enumerate(healthy_requests())
    ]
    scans = [
        req(30 + i, "other", 400, 0.0, run_id=None, error="bad_request: BadStatusLine", path="")
        for i in range(40)
    ]
    run_dir = make_run_dir(tmp_path / "run", [*requests, *scans], healthy_clients())
    report = write_reports(run_dir)
    # 40 refused scans against 60 good requests: still no error, the run passes.
    assert report.stats.requests.error_rate == 0.0
    assert report.verdict == "pass"
    line = "Connections: 30 opened by clients, 15 opened to the index (for 60 requests)"
    note = "40 request(s) could not be attributed to a client run (run_id null)"
    md = (run_dir / REPORT_MD).read_text(encoding="utf-8")
    page = (run_dir / REPORT_HTML).read_text(encoding="utf-8")
    assert f"- {line}" in md
    assert "Connections" in page and "30 opened by clients, 15 opened to the index" in page
    assert line.lower() in terminal_summary(report)
    for text in (md, page, terminal_summary(report)):
        assert note in text
        assert "counted apart, in no error rate (400 bad_request 40)" in text
    data = json.loads((run_dir / REPORT_JSON).read_text(encoding="utf-8"))
    assert data["requests"]["client_connections"] == 30
    assert data["requests"]["upstream_connections"] == 15
    assert data["requests"]["unattributed"] == {"400 bad_request": 40}
