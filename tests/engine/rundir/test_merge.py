"""Shards' streams merged into one folder read exactly as the one-machine run they split."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipstorm.engine.report.write import write_reports
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import CLIENTS_FILE, HOST_FILE, REQUESTS_FILE, RUN_FILE
from pipstorm.engine.rundir.jsonl import RecordError, read_jsonl
from pipstorm.engine.rundir.merge import ShardStreams, merge_into, pack
from pipstorm.engine.rundir.meta import RunMeta, ShardMeta
from tests.engine.synthetic_run import write_run

#: report.json sections that must not change when a run's streams come from two shards.
SAME = ("error_rate", "latency_p95", "latency_p99", "status_code_counts", "operations", "clients")


def _split_into_shards(whole: Path, root: Path) -> list[Path]:
    """Deal the run's records to two shard folders by run id (odd/even), host rows alike."""
    dirs = [root / "s0", root / "s1"]
    for d in dirs:
        d.mkdir(parents=True)
    for name in (REQUESTS_FILE, CLIENTS_FILE, HOST_FILE):
        rows, _ = read_jsonl(whole / name)
        outs = [(d / name).open("w", encoding="utf-8") for d in dirs]
        for i, row in enumerate(rows):
            key = row.get("run_id")
            which = int(key[1:]) % 2 if isinstance(key, str) else i % 2
            outs[which].write(json.dumps(row) + "\n")
        for out in outs:
            out.close()
    with (dirs[1] / REQUESTS_FILE).open("a", encoding="utf-8") as out:
        out.write('{"ts": 1790000001.0, "op": "listing", "meth')  # a crash cut it short
    return dirs


def test_merged_shards_report_the_same_figures_as_the_run_they_were_split_from(
    tmp_path: Path,
) -> None:
    whole = write_run(tmp_path / "whole", duration_s=180)
    merged = tmp_path / "merged"
    merged.mkdir()
    shutil.copy(whole / RUN_FILE, merged / RUN_FILE)
    shard_dirs = _split_into_shards(whole, tmp_path / "shards")
    counts = merge_into(
        merged,
        [ShardStreams(i, f"gen-{i}", pack(d)) for i, d in enumerate(reversed(shard_dirs))],
    )
    one = json.loads(json.dumps(write_reports(whole).to_dict()))
    two = json.loads(json.dumps(write_reports(merged).to_dict()))
    assert set(one) == set(two)
    for key in SAME:  # percentiles from all samples, not per-shard averages
        assert two[key] == one[key], key
    assert two["skipped_lines"][REQUESTS_FILE] == 1  # the cut line is kept, skipped, counted
    data = RunData.load(merged)
    assert counts[REQUESTS_FILE] == len(data.requests) + 1
    stamps = [r.ts for r in data.requests]
    assert stamps == sorted(stamps)  # one time order over all shards
    rows, _ = read_jsonl(merged / CLIENTS_FILE)
    assert {(r["shard"], r["host"]) for r in rows} == {(0, "gen-0"), (1, "gen-1")}


def test_a_stream_no_shard_shipped_is_not_created(tmp_path: Path) -> None:
    shard = tmp_path / "s0"
    shard.mkdir()
    (shard / CLIENTS_FILE).write_text("", encoding="utf-8")
    merge_into(tmp_path, [ShardStreams(0, "h", pack(shard))])
    assert (tmp_path / CLIENTS_FILE).is_file()
    assert not (tmp_path / REQUESTS_FILE).exists()


def test_shards_round_trip_through_run_json_typed(tmp_path: Path) -> None:
    meta = RunMeta(
        profile={"name": "light_load"},
        shards=[
            ShardMeta(index=0, runs=["r00000"], status="ok", host="a", clock_offset_s=0.001),
            ShardMeta(index=1, runs=["r00001"], status="lost", lost_at=12.5, error="died"),
        ],
    )
    meta.write(tmp_path)
    back = RunMeta.read(tmp_path)
    assert back.shards == meta.shards
    assert isinstance(back.shards[1], ShardMeta)
    bad = json.loads((tmp_path / RUN_FILE).read_text(encoding="utf-8"))
    bad["shards"][0]["clock_offset_s"] = "soon"
    (tmp_path / RUN_FILE).write_text(json.dumps(bad), encoding="utf-8")
    with pytest.raises(RecordError, match="clock_offset_s"):
        RunMeta.read(tmp_path)
