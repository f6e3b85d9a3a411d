"""The per-shard table: runs, losses, onset, CPU and clock per shard, in report.json and .md."""

from __future__ import annotations

import json
from pathlib import Path

from pipstorm.engine.report.write import write_reports
from pipstorm.engine.rundir.meta import RunMeta, ShardMeta
from pipstorm.engine.rundir.records import load_clients
from tests.engine.synthetic_run import T0, write_run


def test_a_lost_shard_shows_its_runs_and_when_and_the_report_says_no_replay(
    tmp_path: Path,
) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=120)
    clients, _ = load_clients(run_dir / "clients.jsonl")
    ids = [c.run_id for c in clients]
    meta = RunMeta.read(run_dir)
    lost_ids = [f"r9{i:04d}" for i in range(7)]  # planned on shard 1, never recorded
    meta.shards = [
        ShardMeta(index=0, runs=ids, status="ok", host="gen-a", clock_offset_s=0.0021),
        ShardMeta(
            index=1, runs=lost_ids, status="lost", host="gen-b", lost_at=T0 + 42.0, error="died"
        ),
    ]
    meta.write(run_dir)
    report = write_reports(run_dir)
    rows = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))["shards"]
    assert [r["shard"] for r in rows] == [0, 1]
    ok, lost = rows
    assert ok["runs_recorded"] == len(ids) and ok["runs_lost"] == 0
    assert ok["onset_p95_s"] is not None and ok["cpu_s_per_run"] == 0.4
    assert abs(ok["clock_offset_ms"] - 2.1) < 1e-9
    assert lost["status"] == "lost" and lost["runs_lost"] == 7 and lost["lost_after_s"] == 42.0
    assert any("Shard 1" in n and "not replayed" in n for n in report.notes)
    md = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "### Shards" in md and "| lost" in md
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert '<section id="shards">' in html and "gen-b" in html


def test_a_one_machine_run_has_no_shard_table(tmp_path: Path) -> None:
    run_dir = write_run(tmp_path / "run", duration_s=60)
    write_reports(run_dir)
    assert json.loads((run_dir / "report.json").read_text(encoding="utf-8"))["shards"] is None
    assert "### Shards" not in (run_dir / "report.md").read_text(encoding="utf-8")


def test_two_shards_on_one_host_do_not_count_their_busy_seconds_twice() -> None:
    from pipstorm.engine.analysis.generator.shards import generator_check
    from tests.engine.synthetic_run import host_line

    # Each shard's sampler saw 3 busy seconds (below the 5 s rule); interleaved they look like 6.
    rows = [
        {**host_line(T0 + s + shard * 0.5, 95.0 if s < 3 else 20.0), "shard": shard}
        for s in range(20)
        for shard in (0, 1)
    ]
    rows.sort(key=lambda r: r["ts"])
    merged_view = generator_check(
        [{k: v for k, v in r.items() if k != "shard"} for r in rows],
        [],
        local_target=False,
        onset=None,
    )
    per_shard = generator_check(rows, [], local_target=False, onset=None)
    assert merged_view.cpu_busy_longest_s >= 5  # what a naive merge would have concluded
    assert per_shard.cpu_busy_longest_s == 3
    assert not per_shard.saturated
