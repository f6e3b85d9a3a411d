"""The dashboard's feed: read from a run's own streams as they grow, whole for a late reader,
and saying at the end what the report says."""

from __future__ import annotations

import json
from pathlib import Path

from pipstorm.engine.report.live.feed import LiveFeed, status_class
from pipstorm.engine.report.model import build_report
from pipstorm.engine.rundir.files import HOST_FILE, RUN_FILE, TARGET_CGROUP_FILE
from tests.engine.analysis.test_stats import req
from tests.engine.report.test_report import healthy_clients, make_run_dir, run_json
from tests.engine.synthetic_run import T0, host_line, write_run


def test_the_feed_follows_the_streams_as_they_grow(tmp_path: Path) -> None:
    run_dir = make_run_dir(
        tmp_path / "run",
        [req(0.2, "listing", 200, 40.0), req(0.5, "download", 200, 80.0)],
        [],
        run=run_json(ended=None),
        truncate=False,
    )
    feed = LiveFeed(run_dir, judge_every_s=0.0)  # judged on every snapshot, for the test
    throttled = LiveFeed(run_dir)
    throttled.snapshot()
    first = feed.snapshot()
    assert first["state"] == "running"
    assert first["verdict"] is None  # no verdict before the end
    assert first["runs"]["requests"] == 2
    assert first["series"]["ops"] == ["download", "listing"]
    assert first["series"]["rps"]["listing"] == [1.0]
    with (run_dir / "requests.jsonl").open("a", encoding="utf-8") as out:
        for i, status in enumerate((200, 503, None)):
            rec = req(2.1 + i / 10, "listing", status, 100.0 + i, error=None if status else "x")
            out.write(json.dumps(rec.to_json()) + "\n")
        out.write('{"ts": 1')  # a line cut short waits for its end
    second = feed.snapshot()
    assert second["runs"]["requests"] == 5
    series = second["series"]
    assert series["t"] == [0.0, 1.0, 2.0]
    assert series["rps"]["listing"] == [1.0, 0.0, 3.0]
    assert series["p50"]["listing"][1] is None  # no requests that second: no latency
    assert series["p50"]["listing"][2] == 101.0
    assert series["status"]["5xx"] == [0, 0, 1]
    assert series["status"]["no answer"] == [0, 0, 1]
    assert series["errors"] == [0, 0, 2]
    states = {t["key"]: t["passed"] for t in second["thresholds"]}
    assert states["max_5xx"] is False  # the threshold's state so far
    assert second["runs"]["in_flight"] == 1  # r1 was seen at the index, not finished
    # By default the judged figures wait JUDGE_EVERY_S; the time series never wait.
    late = throttled.snapshot()
    assert {t["key"]: t["passed"] for t in late["thresholds"]}["max_5xx"] is True
    assert late["series"]["errors"] == [0, 0, 2]


def test_a_late_reader_sees_the_whole_run_and_the_end_says_the_verdict(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=120)
    lines = [json.dumps(host_line(T0 + s, 30.0)) for s in range(120)]
    (run_dir / HOST_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    state = LiveFeed(run_dir).snapshot()
    report = build_report(run_dir)
    assert state["state"] == "ended"
    assert state["runs"]["requests"] == report.stats.requests.count
    assert state["runs"]["finished"] == report.stats.clients.all.count
    assert state["verdict"] == report.verdict
    assert state["verdict_line"].startswith(report.verdict.upper())
    assert [t["passed"] for t in state["thresholds"]] == [t.passed for t in report.thresholds]
    assert state["generator"]["saturated"] is False
    assert len(state["host"]["t"]) == 120
    assert state["target_series"]["t"] == []  # no --sizing: no cgroup counters
    assert [b["offset_s"] for b in state["onset"]["bursts"]] == [0.0, 60.0]
    assert state["report"] is None  # report.html not written yet
    assert "index_url" not in json.dumps(state)  # the page never shows the index's URL
    assert "127.0.0.1:1" not in json.dumps(state)


def test_before_the_start_and_with_a_torn_run_json(tmp_path: Path) -> None:
    run_dir = make_run_dir(tmp_path / "run", [], healthy_clients(), run=run_json(started=None))
    assert LiveFeed(run_dir).snapshot()["state"] == "waiting"
    (run_dir / RUN_FILE).write_text("{", encoding="utf-8")
    assert LiveFeed(run_dir).snapshot()["state"] == "waiting"


def test_status_classes() -> None:
    assert [status_class(s) for s in (200, 304, 404, 503, None, 99)] == [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "no answer",
        "no answer",
    ]


def test_a_sized_targets_cgroup_counters_are_shown(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=30)
    rows = [
        {
            "ts": T0 + s,
            "cpu_percent": 20.0 + s,
            "throttled_percent": 5.0,
            "memory_mb": 100.0,
            "oom_kills": 0,
        }
        for s in range(3)
    ]
    (run_dir / TARGET_CGROUP_FILE).write_text(
        "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    state = LiveFeed(run_dir).snapshot()
    assert state["target_series"]["t"] == [0.0, 1.0, 2.0]
    assert state["target_series"]["cpu_percent"] == [20.0, 21.0, 22.0]
    assert ["cpu_percent", "22.0"] in state["target_counters"]
    assert ["oom_kills", "0"] in state["target_counters"]
