"""A schedule split into shards: each run exactly once, bursts spread, one start time ahead."""

from __future__ import annotations

from collections import Counter

import pytest

from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES
from pipstorm.engine.run.plan.schedule import build_schedule
from pipstorm.engine.run.shards.split import (
    MAX_LEAD_S,
    MIN_LEAD_S,
    ShardError,
    lead_s,
    split,
    start_time,
)

RELEASES = [(f"test-package-{i:03d}", v) for i in range(100) for v in ("1.0.0", "1.1.0", "2.0.0")]


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_every_run_lands_in_exactly_one_shard_in_start_order(count: int) -> None:
    _, plan = build_schedule(BUILTIN_PROFILES["production_incident"], RELEASES, seed=3)
    shards = split(plan, count)
    assert [s.index for s in shards] == list(range(count))
    ids = [run_id for s in shards for run_id in s.run_ids]
    assert sorted(ids) == sorted(r.run_id for r in plan)
    assert len(ids) == len(set(ids))
    for shard in shards:  # each shard's runs keep their order and their planned fields
        offsets = [r.offset_s for r in shard.runs]
        assert offsets == sorted(offsets)
        assert set(shard.runs) <= set(plan)


def test_a_burst_is_spread_evenly_over_the_shards() -> None:
    _, plan = build_schedule(BUILTIN_PROFILES["production_incident"], RELEASES, seed=1)
    shards = split(plan, 3)
    for tick in {r.tick for r in plan if r.burst}:
        per_shard = [sum(1 for r in s.runs if r.tick == tick) for s in shards]
        assert per_shard == [25, 25, 25]


def test_base_ticks_rotate_so_no_shard_carries_them_all() -> None:
    _, plan = build_schedule(BUILTIN_PROFILES["light_load"], RELEASES, seed=1)  # 3 a tick
    shards = split(plan, 2)
    assert [len(s.runs) for s in shards] == [45, 45]
    per_tick = Counter((i, r.tick) for i, s in enumerate(shards) for r in s.runs)
    assert per_tick[(0, 0)] == 2 and per_tick[(1, 0)] == 1
    assert per_tick[(0, 1)] == 1 and per_tick[(1, 1)] == 2


def test_the_split_is_deterministic() -> None:
    _, plan = build_schedule(BUILTIN_PROFILES["heavy_load"], RELEASES, seed=5)
    assert split(plan, 4) == split(list(plan), 4)


def test_more_shards_than_runs_leaves_some_empty_and_zero_shards_is_refused() -> None:
    _, plan = build_schedule(BUILTIN_PROFILES["light_load"], RELEASES, seed=1, duration_s=5)
    shards = split(plan, 5)
    assert [len(s.runs) for s in shards] == [1, 1, 1, 0, 0]
    with pytest.raises(ShardError, match="at least 1"):
        split(plan, 0)


def test_start_time_is_ahead_by_the_lead_and_the_lead_grows_with_the_first_burst() -> None:
    _, light = build_schedule(BUILTIN_PROFILES["light_load"], RELEASES, seed=1)
    _, incident = build_schedule(BUILTIN_PROFILES["production_incident"], RELEASES, seed=1)
    small, big = split(light, 2), split(incident, 2)
    assert MIN_LEAD_S <= lead_s(small) < lead_s(big) <= MAX_LEAD_S
    t = start_time(small, now=1000.0)
    assert t >= 1000.0 + lead_s(small)
    assert t - (1000.0 + lead_s(small)) < 0.1
    assert abs(round(t * 10) - t * 10) < 1e-6
