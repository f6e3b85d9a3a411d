"""A sized run's report: the target's sizing, counters and diagnosis in every rendering, and its
cgroup chart beside the latency chart."""

from __future__ import annotations

import json
from pathlib import Path

from pipstorm.engine.report.charts.files import build_charts
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.rundir.files import RUN_FILE, TARGET_CGROUP_FILE, write_json_atomic
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.infra.pypiserver.sizing import preset
from tests.engine.synthetic_run import T0, write_run


def size_it(run_dir: Path, *, oom_at: int | None = None) -> None:
    """Make the synthetic run a sized one, as a run with --sizing baseline leaves it."""
    meta = json.loads((run_dir / RUN_FILE).read_text(encoding="utf-8"))
    meta["target"].update(
        sizing=preset("baseline").as_record(),
        cgroup={
            "version": 1,
            "name": "pipstorm-1-1-1",
            "limits": {
                "cpu_quota_us": 20000,
                "cpu_period_us": 100000,
                "memory_limit_bytes": 2**27,
            },
        },
        unconfined_reason=None,
        counters={
            "cpu_s": 11.5,
            "periods": 1200,
            "throttled_periods": 900,
            "throttled_s": 40.2,
            "memory_peak_mb": 127.9 if oom_at else 52.0,
            "oom_kills": 1 if oom_at else 0,
            "survived": oom_at is None,
            "throttled_ratio": 0.75,
        },
    )
    write_json_atomic(run_dir / RUN_FILE, meta)
    with JsonlWriter(run_dir / TARGET_CGROUP_FILE) as writer:
        for second in range(120):
            dead = oom_at is not None and second >= oom_at
            writer.write(
                {
                    "ts": T0 + second,
                    "interval_s": 1.0,
                    "cpu_percent": 0.0 if dead else 20.0,
                    "throttled_s": 0.0 if dead else 0.6,
                    "throttled_periods": 0 if dead else 9,
                    "periods": 10,
                    "throttled_percent": 0.0 if dead else 90.0,
                    "memory_mb": 0.0 if dead else 52.0,
                    "memory_peak_mb": 127.9 if dead else 52.0,
                    "oom_kills": 1 if dead else 0,
                    "processes": 0 if dead else 3,
                    "server_alive": not dead,
                }
            )


def test_sized_run_reports_sizing_counters_diagnosis_and_chart(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=120, slow_ms=2500)
    size_it(run_dir, oom_at=80)
    report = write_reports(run_dir)
    assert report.verdict == "fail"
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    target = data["target"]
    assert target["sizing"]["name"] == "baseline"
    assert target["counters"]["oom_kills"] == 1
    assert [d["cause"] for d in target["diagnosis"]][:2] == ["OOM-killed", "CPU-throttled"]
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Target sizing and its cgroup over the run" in markdown
    assert "t3.micro, 2 tasks x 2 workers, container_memory 128: 2 vCPU, 256 MiB" in markdown
    assert "survived: NO" in markdown
    assert "diagnosis: OOM-killed" in markdown
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert 'id="target-sizing"' in html
    assert "diagnosis: OOM-killed" in html
    assert "target diagnosis: OOM-killed" in terminal_summary(report)
    keys = [c.key for c in build_charts(report).charts]
    assert keys.index("target-cgroup") == keys.index("latency") + 1
    assert (run_dir / "chart-target-cgroup.png").stat().st_size > 10_000


def test_unsized_run_has_no_target_section(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=60)
    write_reports(run_dir)
    data = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    assert data["target"] is None
    assert "Target sizing" not in (run_dir / "report.md").read_text(encoding="utf-8")
    assert not (run_dir / "chart-target-cgroup.png").exists()
