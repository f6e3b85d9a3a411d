"""What spreading a run over Dask workers costs the coordinator: dispatch and merge.

- Dispatch overhead per shard: a LocalCluster of N single-thread worker processes on loopback
  (as ``--shards N`` starts it), then N pinned, ``pure=False`` submissions with the shard
  resource, timed from submit to the task running on its worker and to its result being back.
  The cluster's start-up and the clock check (per worker, lowest of 5 round trips) are printed
  too: all of it happens before the shared start time, inside
  ``pipstorm.engine.run.shards.split.lead_s``.
- Merge time for 100k requests: synthetic requests.jsonl lines (the proxy's record shape) split
  over 4 shards, packed as a shard ships them, merged into one folder; compared with reading
  the merged folder back (``RunData.load``), which every report does anyway.

Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import random
import statistics
import time
from pathlib import Path

import pytest

from pipstorm.engine.run.shards.cluster import measure_clock, open_cluster
from pipstorm.engine.run.shards.worker import SHARD_RESOURCE
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import REQUESTS_FILE
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.merge import ShardStreams, merge_into, pack
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.proxy.log import RequestRecord

REQUESTS = 100_000
SHARDS = 4


def _began() -> float:
    return time.time()


@pytest.mark.bench
@pytest.mark.parametrize("shards", [1, 2, 4])
def test_dispatch_overhead_per_shard(shards: int) -> None:
    t = time.perf_counter()
    with open_cluster(shards, None) as client:
        up = time.perf_counter() - t
        info = client.scheduler_info(n_workers=-1)
        workers = sorted(info["workers"])
        t = time.perf_counter()
        offsets = [measure_clock(client, w, "bench") for w in workers]
        clock_s = time.perf_counter() - t
        rounds: list[float] = []
        results: list[float] = []
        for _ in range(5):
            sent = time.time()
            futures = [
                client.submit(
                    _began,
                    pure=False,
                    resources={SHARD_RESOURCE: 1},
                    workers=[w],
                    allow_other_workers=False,
                )
                for w in workers
            ]
            began = client.gather(futures)
            back = time.time()
            rounds += [b - sent for b in began]
            results.append(back - sent)
    print(
        f"\n{shards} shard(s): cluster up {up:.2f} s, clock check {clock_s * 1000:.0f} ms "
        f"(rtt {min(o.clock_rtt_s for o in offsets) * 1000:.2f} ms), submit->running "
        f"median {statistics.median(rounds) * 1000:.1f} ms max {max(rounds) * 1000:.1f} ms, "
        f"submit->all results {statistics.median(results) * 1000:.1f} ms "
        f"({statistics.median(results) * 1000 / shards:.1f} ms per shard)"
    )


@pytest.mark.bench
def test_merge_time_for_100k_requests(tmp_path: Path) -> None:
    rng = random.Random(1)
    shard_dirs = [tmp_path / f"s{i}" for i in range(SHARDS)]
    t0 = 1_790_000_000.0
    for i, d in enumerate(shard_dirs):
        d.mkdir()
        with JsonlWriter(d / REQUESTS_FILE) as out:
            for n in range(REQUESTS // SHARDS):
                out.write(
                    RequestRecord(
                        ts=t0 + n * 0.01 + i * 0.001,
                        op=rng.choice(("listing", "download", "redirect")),
                        method="GET",
                        path=f"/simple/p{n % 100}/",
                        status=200,
                        total_ms=rng.lognormvariate(3.5, 0.6),
                        run_id=f"r{n // 3:05d}",
                        bytes=1200,
                        ttfb_ms=20.0,
                        user_agent="pip/25.3",
                    )
                )
    t = time.perf_counter()
    packed = [pack(d) for d in shard_dirs]
    pack_s = time.perf_counter() - t
    raw = sum((d / REQUESTS_FILE).stat().st_size for d in shard_dirs)
    shipped = sum(len(p[REQUESTS_FILE]) for p in packed)
    run_dir = tmp_path / "merged"
    run_dir.mkdir()
    RunMeta(profile={"name": "bench"}).write(run_dir)
    t = time.perf_counter()
    merge_into(run_dir, [ShardStreams(i, f"h{i}", p) for i, p in enumerate(packed)])
    merge_s = time.perf_counter() - t
    t = time.perf_counter()
    data = RunData.load(run_dir)
    load_s = time.perf_counter() - t
    assert len(data.requests) == REQUESTS
    print(
        f"\nmerge of {REQUESTS} requests from {SHARDS} shards: pack {pack_s:.2f} s "
        f"({raw / 1e6:.1f} MB -> {shipped / 1e6:.1f} MB shipped), merge {merge_s:.2f} s, "
        f"reading the merged folder back {load_s:.2f} s (merge/read {merge_s / load_s:.2f}x)"
    )
