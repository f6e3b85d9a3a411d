"""What the live page shows beside the index's figures: a sharded run's per-generator figures,
and an AWS stack's CloudWatch series (fetched from moto for the run's window, as a run does
once its load has ended), in the feed and in a real headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from moto import mock_aws

from pipstorm.engine.report.live.feed import LiveFeed
from pipstorm.engine.run.live.dashboard import Dashboard
from pipstorm.engine.run.target.cloudwatch import fetch_run_cloudwatch
from pipstorm.engine.rundir.files import CLIENTS_FILE, RUN_FILE
from pipstorm.engine.rundir.jsonl import read_jsonl
from pipstorm.engine.rundir.merge import ShardStreams, merge_into, pack
from pipstorm.engine.rundir.meta import RunMeta, ShardMeta
from tests.engine.chromium_shot import needs_chromium
from tests.engine.report.test_report_cloudwatch import aws_run, put_run_series
from tests.engine.run.live.test_dashboard import dump_dom
from tests.engine.rundir.test_merge import _split_into_shards
from tests.engine.synthetic_run import write_run
from tests.infra.aws.support import REGION, isolate_aws

HOSTILE_HOST = '<img src=x onerror="document.title=1">'


def _sharded_run(root: Path) -> Path:
    """A synthetic run dealt to two shards and merged, as the coordinator leaves it."""
    whole = write_run(root / "whole", duration_s=120)
    merged = root / "merged"
    merged.mkdir()
    shutil.copy(whole / RUN_FILE, merged / RUN_FILE)
    shard_dirs = _split_into_shards(whole, root / "shards")
    hosts = ["gen-0", HOSTILE_HOST]
    merge_into(merged, [ShardStreams(i, hosts[i], pack(d)) for i, d in enumerate(shard_dirs)])
    rows, _ = read_jsonl(merged / CLIENTS_FILE)
    meta = RunMeta.read(merged)
    meta.shards = [
        ShardMeta(
            index=i,
            runs=[str(r["run_id"]) for r in rows if r["shard"] == i],
            status="ok",
            host=hosts[i],
            clock_offset_s=0.0004 * (i + 1),
        )
        for i in (0, 1)
    ]
    meta.write(merged)
    return merged


def test_a_sharded_run_shows_each_generator(tmp_path: Path) -> None:
    run_dir = _sharded_run(tmp_path)
    state = LiveFeed(run_dir).snapshot()
    shards = state["shards"]
    assert [s["index"] for s in shards] == [0, 1]
    assert [s["clock_offset_ms"] for s in shards] == [0.4, 0.8]
    meta = RunMeta.read(run_dir)
    assert [s["planned"] for s in shards] == [len(m.runs) for m in meta.shards]
    assert [s["finished"] for s in shards] == [len(m.runs) for m in meta.shards]  # it ended
    assert sum(s["finished"] for s in shards) == state["runs"]["finished"]  # whole = parts
    assert all(s["in_flight"] == 0 and s["cpu_percent"] is not None for s in shards)
    by_shard = state["cpu_by_shard"]
    assert by_shard["shards"] == [0, 1]
    assert len(by_shard["cpu"]) == 2 and len(by_shard["cpu"][0]) == len(by_shard["t"]) > 0
    generators = state["shard_generators"]
    assert [g["index"] for g in generators] == [0, 1]
    assert all(g["saturated"] is not None for g in generators)


def test_a_one_machine_run_has_no_shard_figures(tmp_path: Path) -> None:
    state = LiveFeed(write_run(tmp_path / "run", duration_s=60)).snapshot()
    assert state["shards"] == [] and state["shard_generators"] == []
    assert state["cpu_by_shard"]["shards"] == []
    assert state["cloudwatch"] is None  # no stack, no CloudWatch


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    isolate_aws(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_REGION", REGION)
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_a_stacks_cloudwatch_series_are_shown_once_fetched(tmp_path: Path) -> None:
    run_dir = aws_run(tmp_path / "run")
    feed = LiveFeed(run_dir)
    assert feed.snapshot()["cloudwatch"] is None  # during the load: nothing fetched yet
    put_run_series(memory_peak=97.5)
    fetch_run_cloudwatch(run_dir, RunMeta.read(run_dir))  # what the run does after its load
    shown = feed.snapshot()["cloudwatch"]
    assert shown is not None
    rows = {row[0]: row for row in shown["rows"]}
    assert rows["ecs_memory"][5] == "97.5"  # its highest value
    assert rows["ecs_memory"][4] == "6"  # six datapoints of a minute
    chart = shown["chart"]
    assert "ecs_memory (Average)" in chart["labels"]  # the percent series share one chart
    assert "alb_request_count (Sum)" not in chart["labels"]  # a count is in the table only
    assert all(len(values) == len(chart["t"]) for values in chart["values"])
    assert shown["missing"] == []


@needs_chromium
@pytest.mark.usefixtures("aws")
def test_chromium_shows_shards_and_cloudwatch_escaped_without_js_errors(tmp_path: Path) -> None:
    sharded = _sharded_run(tmp_path / "sharded")
    with Dashboard("127.0.0.1", 0) as board:
        board.attach(sharded)
        dom = dump_dom(board.url, tmp_path / "chromium-1")
    assert 'id="js-errors">0<' in dom
    assert '<section id="shards">' in dom  # shown (it is hidden on a one-machine run)
    assert "<td>gen-0</td>" in dom
    assert "&lt;img src=x" in dom and "<img src=x" not in dom  # a host name is text
    assert "shard 1 host CPU %" in dom  # each generator's CPU, one line each
    run_dir = aws_run(tmp_path / "aws")
    put_run_series(memory_peak=97.5)
    fetch_run_cloudwatch(run_dir, RunMeta.read(run_dir))
    with Dashboard("127.0.0.1", 0) as board:
        board.attach(run_dir)
        dom = dump_dom(board.url, tmp_path / "chromium-2")
    assert 'id="js-errors">0<' in dom
    assert '<div id="cloudwatch">' in dom and "<td>ecs_memory</td>" in dom
    assert "<td>97.5</td>" in dom
    assert "ecs_memory (Average)" in dom  # the chart's legend
