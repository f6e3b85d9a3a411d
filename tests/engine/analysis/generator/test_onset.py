"""Burst onset: intended instant -> first request at the proxy, per burst tick and base ticks."""

from __future__ import annotations

import dataclasses

from pipstorm.engine.analysis.generator.onset import ONSET_P95_S, burst_onset
from pipstorm.engine.analysis.generator.saturation import check_generator
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

T0 = 1_700_000_000.0


def client(run_id: str, tick: int, burst: bool) -> ClientRecord:
    intended = T0 + 10 * tick
    return ClientRecord(
        run_id=run_id,
        client="pip",
        project="p",
        version="1.0.0",
        tick=tick,
        burst=burst,
        intended=intended,
        started=intended - 5,
        launched=intended + 0.01,
        ended=intended + 30,
        lag_s=0.01,
        exit_code=0,
        outcome="ok",
    )


def first(run_id: str, at: float) -> list[RequestRecord]:
    """A run's listing at ``at`` and its download a little later (only the first counts)."""
    return [
        RequestRecord(ts=at, op="listing", method="GET", path="/simple/p/", status=200,
                      total_ms=5.0, run_id=run_id),
        RequestRecord(ts=at + 0.5, op="download", method="GET", path="/p.whl", status=200,
                      total_ms=5.0, run_id=run_id),
    ]  # fmt: skip


def test_onset_per_burst_tick_and_for_the_base_ticks() -> None:
    clients = [client(f"b{i}", 0, True) for i in range(4)] + [client("s1", 1, False)]
    requests = [r for i in range(3) for r in first(f"b{i}", T0 + 0.2 * (i + 1))]
    requests += first("s1", T0 + 10.05)  # b3 never sent a request: no onset
    onset = burst_onset(requests, clients, origin=T0)
    (burst,) = onset.bursts
    assert (burst.tick, burst.offset_s, burst.runs, burst.reached) == (0, 0.0, 4, 3)
    assert burst.onset_s is not None
    assert round(burst.onset_s.max, 3) == 0.6
    assert round(burst.onset_s.p50, 3) == 0.4
    assert burst.spread_s == 0.4
    assert onset.base is not None and onset.base.spread_s is None
    assert onset.base.onset_s is not None and round(onset.base.onset_s.max, 3) == 0.05
    assert set(onset.by_run) == {"b0", "b1", "b2", "s1"}
    assert not onset.late
    assert onset.to_dict()["worst_p95_s"] == burst.onset_s.p95


def test_a_late_burst_flags_the_generator_whatever_the_cpu() -> None:
    clients = [client(f"b{i}", 6, True) for i in range(10)]
    requests = [r for i in range(10) for r in first(f"b{i}", T0 + 60 + 2 + i)]
    onset = burst_onset(requests, clients, origin=T0)
    assert onset.late and onset.worst_p95_s is not None and onset.worst_p95_s > ONSET_P95_S
    assert onset.bursts[0].offset_s == 60.0
    check = check_generator([], clients, local_target=True, onset=onset)
    assert check.saturated
    assert any("burst onset p95" in r for r in check.reasons)
    assert not check_generator([], clients, local_target=True).saturated


def test_runs_gated_after_their_instant_say_the_preparation_was_late() -> None:
    """x170's late first burst on a fresh machine: the runs were released late because they
    reached their gates late (the lead too short for what preparing cost), which the report
    must tell from a slow way to the first request after an on-time release."""
    clients = [
        dataclasses.replace(
            client(f"b{i}", 6, True),
            gated=T0 + 60 + (1.5 if i < 3 else -4.0),  # three prepared 1.5 s after the instant
            cpu_gate_s=0.052 if i < 3 else 0.021,
        )
        for i in range(10)
    ]
    requests = [r for i in range(10) for r in first(f"b{i}", T0 + 60 + (1.6 if i < 3 else 0.1))]
    onset = burst_onset(requests, clients, origin=T0)
    (burst,) = onset.bursts
    assert burst.gated_late == 3 and onset.gated_late == 3
    assert burst.gate_cpu_s is not None and round(burst.gate_cpu_s.max, 3) == 0.052
    assert onset.to_dict()["gated_late"] == 3 and onset.late
    check = check_generator([], clients, local_target=True, onset=onset)
    assert any("3 runs gated after their instant: prepared late" in r for r in check.reasons)


def test_exec_runs_have_no_gate_and_say_nothing_of_it() -> None:
    clients = [client(f"b{i}", 6, True) for i in range(10)]
    requests = [r for i in range(10) for r in first(f"b{i}", T0 + 60 + 2 + i)]
    onset = burst_onset(requests, clients, origin=T0)
    assert onset.bursts[0].gated_late is None and onset.bursts[0].gate_cpu_s is None
    assert onset.gated_late is None
    check = check_generator([], clients, local_target=True, onset=onset)
    assert not any("gated" in r for r in check.reasons)
