"""The sizing diagnosis: each cause from the figures that mean it, and nothing without them."""

from __future__ import annotations

from typing import Any

from pipstorm.engine.analysis.target.sizing import TargetSizing, diagnose, target_sizing
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.pypiserver.sizing import preset

BASELINE = preset("baseline").as_record()


def sized(
    counters: dict[str, Any] | None = None, listing_cost: dict[str, Any] | None = None
) -> TargetSizing:
    figures = {
        "cpu_s": 1.0,
        "periods": 100,
        "throttled_periods": 5,
        "throttled_s": 0.1,
        "memory_peak_mb": 50.0,
        "oom_kills": 0,
        "survived": True,
        "throttled_ratio": 0.05,
    }
    return TargetSizing(
        sizing=BASELINE,
        cgroup={"version": 1, "limits": {}},
        counters={**figures, **(counters or {})},
        unconfined_reason=None,
        listing_cost=listing_cost,
    )


def causes(target: TargetSizing, *, failed: bool = True, generator: bool = False) -> list[str]:
    return [d.cause for d in diagnose(target, failed=failed, generator_saturated=generator)]


def test_a_passing_sizing_has_no_diagnosis_unless_the_generator_was_bound() -> None:
    assert causes(sized({"throttled_ratio": 0.9}), failed=False) == []
    assert causes(sized(), failed=False, generator=True) == ["generator-bound"]
    # ...or unless the server was OOM-killed: it passed only because the load had ended.
    assert causes(sized({"oom_kills": 1, "survived": False}), failed=False) == ["OOM-killed"]


def test_throttling_is_named_with_its_share_and_the_quota() -> None:
    (found,) = diagnose(
        sized({"throttled_ratio": 0.63, "throttled_s": 6.4}),
        failed=True,
        generator_saturated=False,
    )
    assert found.cause == "CPU-throttled"
    assert "63 %" in found.detail
    assert "2 vCPU" in found.detail
    assert causes(sized({"throttled_ratio": 0.1})) == ["unexplained"]


def test_an_oom_kill_and_a_dead_server_come_before_throttling() -> None:
    dead = sized({"oom_kills": 2, "survived": False, "throttled_ratio": 0.5})
    assert causes(dead) == ["OOM-killed", "CPU-throttled"]
    (detail,) = [d.detail for d in diagnose(dead, failed=True, generator_saturated=False)][:1]
    assert "server died" in detail
    assert "256 MiB" in detail
    assert causes(sized({"survived": False})) == ["died"]


def test_the_auth_hash_and_file_hashing_are_named_from_the_listing_probe() -> None:
    bcrypt = {"as_sized": 0.207, "without_auth": 0.0006, "without_hashing": 0.2065}
    found = diagnose(
        sized({"throttled_ratio": 0.9}, bcrypt), failed=True, generator_saturated=False
    )
    assert [d.cause for d in found] == ["auth-hash-bound", "CPU-throttled"]
    assert "the hash, not the instance" in found[0].detail
    hashing = {"as_sized": 0.048, "without_auth": 0.047, "without_hashing": 0.003}
    assert causes(sized(listing_cost=hashing)) == ["hash-bound"]
    cheap = {"as_sized": 0.0009, "without_auth": 0.0006, "without_hashing": 0.0008}
    assert causes(sized(listing_cost=cheap)) == ["unexplained"]


def test_target_sizing_reads_run_json_and_ignores_unsized_runs() -> None:
    assert target_sizing(RunMeta(profile={}, target={"kind": "embedded"})) is None
    meta = RunMeta(
        profile={},
        target={"kind": "embedded", "sizing": BASELINE, "unconfined_reason": "no cgroups"},
    )
    found = target_sizing(meta)
    assert found is not None
    assert found.name == "baseline"
    assert found.unconfined_reason == "no cgroups"
    assert found.counters is None
    assert found.survived is None
    assert found.to_dict()["sizing"]["memory_mb"] == 256
