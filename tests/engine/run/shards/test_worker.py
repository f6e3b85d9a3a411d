"""A shard that reaches its worker at or after the start time never starts (no late replays)."""

from __future__ import annotations

import time
from pathlib import Path

from pipstorm.engine.run.execute import RunOptions
from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES, load_profile
from pipstorm.engine.run.plan.schedule import build_schedule
from pipstorm.engine.run.shards.split import split
from pipstorm.engine.run.shards.worker import ShardJob, reach_target, run_shard
from pipstorm.packages.spec import CorpusSpec


def test_a_shard_past_its_start_time_is_late_and_sends_nothing(tmp_path: Path) -> None:
    corpus = CorpusSpec()
    line, plan = build_schedule(
        BUILTIN_PROFILES["light_load"], corpus.releases(), seed=1, duration_s=10
    )
    shard = split(plan, 2)[1]
    job = ShardJob(
        shard=shard,
        start_at=time.time() - 0.5,  # a replay after its worker died would arrive like this
        clock_offset_s=0.0,
        options=RunOptions(profile=load_profile("light_load"), results_root=tmp_path),
        line=line,
        target_kind="remote",
        index_url="http://127.0.0.1:9/simple/",  # nothing listens: any load would fail loudly
        credentials=None,
        corpus=corpus,
        token="t",  # noqa: S106 - the run token names a Dask event, no secret
    )
    result = run_shard(job)
    assert result.status == "late"
    assert result.error is not None and "after the start time" in result.error
    assert result.packed == {} and result.runs_dispatched == 0
    assert list(tmp_path.iterdir()) == []


def test_a_target_a_worker_cannot_reach_is_one_line_from_that_worker() -> None:
    import socket

    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    why = reach_target(f"http://127.0.0.1:{port}/simple/", None, "test-package-000")
    assert why is not None and "\n" not in why
    assert f"127.0.0.1:{port}" in why
