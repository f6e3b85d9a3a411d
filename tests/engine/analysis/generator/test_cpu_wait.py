"""The measured half of the generator rule: the proxy's and a local target's run-queue wait
(``pipstorm.engine.analysis.generator.cpu_wait``), on crafted ``host.jsonl`` rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipstorm.engine.analysis.generator.cpu_wait import MIN_COVERAGE, WAIT_PERCENT
from pipstorm.engine.analysis.generator.saturation import (
    CPU_SUSTAINED_S,
    GeneratorCheck,
    check_generator,
    host_samples,
)

T0 = 1_700_000_000.0


def group(
    wait_ms: float | None, *, cpu: float = 20.0, run_ms: float | None = None, **extra: Any
) -> dict[str, Any]:
    """One group's object as the sampler writes it (``run_ms`` defaults to its CPU)."""
    data: dict[str, Any] = {"cpu_percent": cpu, "rss_mb": 30.0, "processes": 1, **extra}
    if wait_ms is not None:
        data["runq_wait_ms"] = wait_ms
        data["runq_run_ms"] = cpu * 10.0 if run_ms is None else run_ms
        data["runq_threads"] = 1
        data["runq_threads_gone"] = 0
    return data


def rows(
    proxy: Sequence[dict[str, Any] | None],
    target: Sequence[dict[str, Any] | None] | None = None,
    *,
    host_cpu: float = 100.0,
    per_core: list[float] | None = None,
) -> list[dict[str, Any]]:
    """One row a second: a busy host, these proxy (and target) objects (``per_core``: the
    busy percent of each core, absent by default as in a row that predates it)."""
    targets = target if target is not None else [None] * len(proxy)
    extra = {} if per_core is None else {"host_cpu_per_core": per_core}
    return [
        {
            "ts": T0 + i,
            "interval_s": 1.0,
            "host_cpu_percent": host_cpu,
            "proxy": p,
            "target": t,
            "clients": {"cpu_percent": 180.0, "processes": 300},
            **extra,
        }
        for i, (p, t) in enumerate(zip(proxy, targets, strict=True))
    ]


def check(data: list[dict[str, Any]], *, local_target: bool) -> GeneratorCheck:
    return check_generator(host_samples(data), [], local_target=local_target)


N = 10  # seconds sampled: the host busy all along, past the CPU rule's 5 s


def test_a_busy_host_with_a_proxy_that_got_its_cpu_is_not_generator_bound() -> None:
    result = check(rows([group(1.0)] * N), local_target=False)
    assert not result.saturated, result.reasons
    assert not result.cpu_rule_applied
    assert result.notes and "a figure, not a verdict" in result.notes[0]
    assert result.cpu_busy_longest_s >= CPU_SUSTAINED_S  # still reported
    assert result.to_dict()["cpu_wait"]["measured"] is True


def test_a_starved_proxy_is_flagged_even_on_an_idle_looking_host() -> None:
    waited = 1000.0 * (WAIT_PERCENT + 1) / 100.0  # ms per 1 s sample, just above the limit
    result = check(rows([group(waited)] * N, host_cpu=50.0), local_target=False)
    assert result.saturated
    assert any(r.startswith("the proxy waited for a CPU") for r in result.reasons), result.reasons
    assert any("latency percentiles" in text for text in result.inflated)


def test_exactly_the_limit_is_not_above() -> None:
    at_limit = 1000.0 * WAIT_PERCENT / 100.0
    busy = 80.0  # a busy proxy: the wait stays a small share of its runnable time
    assert not check(rows([group(at_limit, cpu=busy)] * N), local_target=False).saturated


def test_four_waited_seconds_do_not_flag_five_do() -> None:
    # A busy proxy (800 ms run a second): only the streak rule can flag these.
    waited, fine = group(500.0, cpu=80.0), group(0.0, cpu=80.0)
    assert not check(rows([waited] * 4 + [fine] * 6), local_target=False).saturated
    assert check(rows([waited] * 5 + [fine] * 5), local_target=False).saturated


def test_a_local_target_waiting_while_others_hold_the_cores_is_flagged() -> None:
    # x170 before its clients shared their launchers' autogroups: the static index ran
    # 0.1-0.2 s a second and waited 1-3 s while 510 clients held both cores.
    starved = group(2000.0, cpu=15.0, run_ms=150.0)
    data = rows([group(0.0)] * N, [starved] * N, per_core=[100.0, 100.0])
    result = check(data, local_target=True)
    assert result.saturated
    assert any(r.startswith("the local target") for r in result.reasons), result.reasons
    assert not result.cpu_rule_applied  # judged by the wait: both groups measured
    figures = result.to_dict()["cpu_wait"]["groups"]["target"]
    assert figures["waited_all_s"] == 20.0 and figures["waited_s"] == 18.5  # others: 1.85 s


def test_a_local_target_queueing_for_its_own_cores_is_not_flagged() -> None:
    # Both cores busy with the target's own threads: its 2 s of wait a second is its own queue.
    own = group(2000.0, cpu=195.0, run_ms=1950.0)
    data = rows([group(0.0)] * N, [own] * N, per_core=[100.0, 100.0])
    result = check(data, local_target=True)
    assert not result.saturated, result.reasons
    assert not result.cpu_rule_applied and result.notes  # the busy host is a figure
    figures = result.to_dict()["cpu_wait"]["groups"]["target"]
    assert figures["waited_all_s"] == 20.0 and figures["waited_s"] == 0.5


def test_a_pinned_target_counts_only_the_cpu_others_used_on_its_cores() -> None:
    # Pinned to core 0, which its own threads fill; core 1 busy with clients.
    pinned = group(2000.0, cpu=100.0, run_ms=1000.0, cpus=[0])
    data = rows([group(0.0)] * N, [pinned] * N, per_core=[100.0, 100.0])
    result = check(data, local_target=True)
    assert not any(r.startswith("the local target") for r in result.reasons), result.reasons
    assert result.to_dict()["cpu_wait"]["groups"]["target"]["waited_s"] == 0.0


def test_a_local_target_that_others_outweigh_a_little_is_not_flagged() -> None:
    # Others took 0.25 s of the 2 s the target wanted in each second: 12.5 %, under 25 %.
    busy = group(2000.0, cpu=175.0, run_ms=1750.0)
    data = rows([group(0.0)] * N, [busy] * N, per_core=[100.0, 100.0])
    assert not check(data, local_target=True).saturated


def test_a_long_wait_reported_when_it_ends_counts_the_cpu_others_used_while_it_lasted() -> None:
    # Linux adds a thread's wait to its schedstat when the thread gets a CPU: a static index
    # niced +19 beside a busy loop per core showed 11.5 s of wait in one second (CI, 2026-12-06)
    # after idling at 0 ms; capped by the 2 s others used in that second alone it counted 2.5 s
    # over the run and was not flagged. The wait spans the seconds before it.
    idle, late = group(0.0, cpu=0.0, run_ms=0.1), group(9000.0, cpu=0.5, run_ms=5.0)
    data = rows([group(0.0)] * N, [idle] * (N - 1) + [late], per_core=[100.0, 100.0])
    result = check(data, local_target=True)
    figures = result.to_dict()["cpu_wait"]["groups"]["target"]
    assert figures["waited_s"] == 9.0, figures
    assert any(r.startswith("the local target") for r in result.reasons), result.reasons


def test_a_wait_borrows_no_cpu_from_before_it_began_nor_any_ms_twice() -> None:
    idle, waited = group(0.0, cpu=0.0, run_ms=0.0), group(3000.0, cpu=0.0, run_ms=0.0)
    # Others busy for 6 s, then idle for 4 s: a 3 s wait ending at the last second began in
    # the idle stretch (the last row covers its last second), so nothing explains it.
    busy_then_idle = [
        {**row, "host_cpu_per_core": [100.0, 100.0] if i < 6 else [0.0, 0.0]}
        for i, row in enumerate(rows([group(0.0)] * N, [idle] * (N - 1) + [waited]))
    ]
    target = check(busy_then_idle, local_target=True).to_dict()["cpu_wait"]["groups"]["target"]
    assert target["waited_s"] == 0.0, target
    # Others used 0.5 s a second throughout: two 3 s waits back to back share what they used.
    half = rows([group(0.0)] * N, [idle] * (N - 2) + [waited] * 2, per_core=[25.0, 25.0])
    target = check(half, local_target=True).to_dict()["cpu_wait"]["groups"]["target"]
    assert target["waited_s"] == 2.0 + 0.5, target  # 4 s of others in the first's span, 0.5 s new


def test_threads_waiting_side_by_side_reach_back_as_far_as_the_longest_one() -> None:
    # Four threads waited 1.5 s each (6 s in all) after 3 s with others idle: no thread's wait
    # reaches back to the busy seconds before, so nothing explains it.
    idle = group(0.0, cpu=0.0, run_ms=0.0)
    side_by_side = group(6000.0, cpu=0.0, run_ms=0.0, runq_wait_max_ms=1500.0)
    data = [
        {**row, "host_cpu_per_core": [100.0, 100.0] if i < 6 else [0.0, 0.0]}
        for i, row in enumerate(rows([group(0.0)] * N, [idle] * (N - 1) + [side_by_side]))
    ]
    target = check(data, local_target=True).to_dict()["cpu_wait"]["groups"]["target"]
    assert target["waited_s"] == 0.0, target
    # One thread's 6 s wait would reach them (rows before the field: the sum bounds it).
    one = [
        {**row, "target": {**group(6000.0, cpu=0.0, run_ms=0.0)}} if i == N - 1 else row
        for i, row in enumerate(data)
    ]
    target = check(one, local_target=True).to_dict()["cpu_wait"]["groups"]["target"]
    assert target["waited_s"] == 6.0, target


def test_without_per_core_figures_all_of_a_local_targets_wait_counts() -> None:
    data = rows([group(0.0)] * N, [group(2000.0, cpu=10.0)] * N)
    result = check(data, local_target=True)
    assert any(r.startswith("the local target") for r in result.reasons), result.reasons


def test_an_unwatched_local_target_falls_back_to_the_cpu_rule() -> None:
    result = check(rows([group(0.0)] * N, [None] * N), local_target=True)
    assert result.cpu_rule_applied
    assert result.saturated
    assert any("host CPU above 90 %" in r for r in result.reasons), result.reasons
    groups = result.to_dict()["cpu_wait"]["groups"]
    assert groups["target"]["not_measured_because"] == "not sampled (not watched)"


def test_no_schedstat_falls_back_to_the_cpu_rule() -> None:
    result = check(rows([group(None)] * N), local_target=False)
    assert result.cpu_rule_applied and result.saturated


def test_a_remote_target_needs_only_the_proxy() -> None:
    result = check(rows([group(0.0)] * N, [None] * N), local_target=False)
    assert not result.saturated and not result.cpu_rule_applied


def test_threads_that_exit_unsampled_make_the_wait_unmeasured() -> None:
    cpu = 50.0  # 500 ms a second, of which the sampled threads ran only a tenth
    lossy = group(0.0, cpu=cpu, run_ms=cpu * 10.0 * (MIN_COVERAGE / 2))
    result = check(rows([group(0.0)] * N, [lossy] * N), local_target=True)
    assert result.cpu_rule_applied and result.saturated
    reason = result.to_dict()["cpu_wait"]["groups"]["target"]["not_measured_because"]
    assert reason is not None and "exited" in reason


def test_a_throttled_sized_targets_wait_is_the_index_s_own() -> None:
    throttled = group(3000.0, cpu=50.0, throttled_ms=400.0)
    result = check(rows([group(0.0)] * N, [throttled] * N, host_cpu=50.0), local_target=True)
    assert not result.saturated, result.reasons
    figures = result.to_dict()["cpu_wait"]["groups"]["target"]
    assert figures["throttled_s"] == 4.0 and figures["measured"] is True


def test_the_proxy_counts_even_while_the_target_is_throttled() -> None:
    throttled = group(3000.0, cpu=50.0, throttled_ms=400.0)
    result = check(rows([group(500.0)] * N, [throttled] * N), local_target=True)
    assert result.saturated
    assert any(r.startswith("the proxy waited") for r in result.reasons), result.reasons


def test_a_proxy_starved_only_in_the_few_seconds_with_requests_is_flagged() -> None:
    # A light run: requests in 3 seconds of 20, the proxy waiting nearly all of its runnable
    # time then (as measured in tests/e2e/test_generator_bound.py): no streak, no quarter.
    idle, starved = group(0.0, cpu=0.0, run_ms=0.1), group(460.0, cpu=1.0, run_ms=6.0)
    data = rows([idle] * 8 + [starved] * 3 + [idle] * 9, host_cpu=100.0)
    result = check(data, local_target=False)
    assert result.saturated
    assert any("of the time it had work" in r for r in result.reasons), result.reasons


def test_a_busy_proxy_that_rarely_waits_is_not_flagged_over_the_run() -> None:
    busy = group(8.0, cpu=60.0, run_ms=600.0)  # x170's proxy at SCHED_FIFO: ~1 % of its time
    assert not check(rows([busy] * N), local_target=False).saturated
