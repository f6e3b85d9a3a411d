"""Runs per tick and burst cadence of each built-in profile, with --duration and --time-scale."""

from __future__ import annotations

from collections import Counter

import pytest

from pipstorm.engine.run.plan.profiles import BUILTIN_PROFILES, Profile, ProfileError
from pipstorm.engine.run.plan.schedule import PlannedRun, build_schedule

RELEASES = [(f"test-package-{i:03d}", v) for i in range(100) for v in ("1.0.0", "1.1.0", "2.0.0")]


def runs_per_offset(runs: list[PlannedRun]) -> dict[float, int]:
    return dict(sorted(Counter(run.offset_s for run in runs).items()))


def test_light_load_is_three_runs_every_ten_seconds_for_five_minutes() -> None:
    line, runs = build_schedule(BUILTIN_PROFILES["light_load"], RELEASES, seed=1)
    per_tick = runs_per_offset(runs)
    assert list(per_tick) == [10.0 * i for i in range(30)]
    assert set(per_tick.values()) == {3}
    assert len(runs) == 90
    assert line.burst_ticks == []
    assert not any(run.burst for run in runs)


def test_production_incident_bursts_to_75_every_60_seconds() -> None:
    line, runs = build_schedule(BUILTIN_PROFILES["production_incident"], RELEASES, seed=1)
    per_tick = runs_per_offset(runs)
    assert len(per_tick) == 144  # 1440 s / 10 s
    bursts = [offset for offset, count in per_tick.items() if count == 75]
    assert bursts == [60.0 * i for i in range(24)]
    assert all(count == 3 for offset, count in per_tick.items() if offset not in bursts)
    assert line.burst_ticks == bursts
    assert len(runs) == 24 * 75 + 120 * 3


def test_heavy_load_bursts_x5_every_30_seconds() -> None:
    _, runs = build_schedule(BUILTIN_PROFILES["heavy_load"], RELEASES, seed=1)
    per_tick = runs_per_offset(runs)
    assert len(per_tick) == 60
    assert [o for o, c in per_tick.items() if c == 100] == [30.0 * i for i in range(20)]
    assert {c for o, c in per_tick.items() if o % 30} == {20}


def test_duration_keeps_real_rates_and_cadence() -> None:
    profile = BUILTIN_PROFILES["production_incident"]
    line, runs = build_schedule(profile, RELEASES, seed=1, duration_s=120)
    per_tick = runs_per_offset(runs)
    assert list(per_tick) == [10.0 * i for i in range(12)]
    assert [o for o, c in per_tick.items() if c == 75] == [0.0, 60.0]
    assert line.duration_s == 120
    assert line.tick_s == 10


def test_time_scale_compresses_ticks_and_bursts() -> None:
    profile = BUILTIN_PROFILES["production_incident"]
    line, runs = build_schedule(profile, RELEASES, seed=1, time_scale=24)
    per_tick = runs_per_offset(runs)
    assert len(per_tick) == 144  # every tick of the profile is kept...
    assert line.duration_s == pytest.approx(60)
    offsets = list(per_tick)
    assert offsets[1] == pytest.approx(10 / 24)  # ...24 times as often
    bursts = [o for o, c in per_tick.items() if c == 75]
    assert len(bursts) == 24
    assert bursts[1] == pytest.approx(60 / 24)


def test_duration_and_time_scale_are_exclusive() -> None:
    with pytest.raises(ProfileError, match="not both"):
        build_schedule(BUILTIN_PROFILES["light_load"], RELEASES, seed=1, duration_s=5, time_scale=2)


def test_the_seed_fixes_the_releases_and_run_ids_are_unique() -> None:
    profile = BUILTIN_PROFILES["light_load"]
    _, first = build_schedule(profile, RELEASES, seed=7)
    _, again = build_schedule(profile, RELEASES, seed=7)
    _, other = build_schedule(profile, RELEASES, seed=8)
    assert first == again
    assert [(r.project, r.version) for r in first] != [(r.project, r.version) for r in other]
    assert len({r.run_id for r in first}) == len(first)
    assert len({(r.project, r.version) for r in first}) > 30  # spread over the corpus


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clients": 0}, "clients must be >= 1"),
        ({"duration_s": 0}, "duration_s must be > 0"),
        ({"burst_every_s": 15}, "multiple of tick_s"),
        ({"burst_multiplier": 0}, "burst_multiplier"),
    ],
)
def test_bad_profiles_are_refused_with_a_reason(kwargs: dict[str, float], message: str) -> None:
    base: dict[str, object] = {"name": "x", "description": "", "clients": 1, "duration_s": 10}
    with pytest.raises(ProfileError, match=message):
        Profile(**{**base, **kwargs})  # type: ignore[arg-type]
