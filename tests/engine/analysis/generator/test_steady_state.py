"""The soak's judgement on recorded data: growth of memory and descriptors, records accounted."""

from __future__ import annotations

from pathlib import Path

from pipstorm.engine.analysis.generator.steady_state import steady_state
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

T0 = 1_700_000_000.0


def row(s: float, proxy_mb: float, engine_fds: int) -> dict[str, object]:
    group = {"cpu_percent": 1.0, "rss_mb": 40.0, "processes": 1, "fds": 10}
    return {
        "ts": T0 + s,
        "host_cpu_percent": 30.0,
        "engine": {**group, "fds": engine_fds},
        "proxy": {**group, "rss_mb": proxy_mb},
        "pool": group,
    }


def client(run_id: str) -> ClientRecord:
    return ClientRecord(
        run_id=run_id, client="pip", project="p", version="1", tick=0, burst=False,
        intended=T0, started=T0, launched=T0, ended=T0 + 1, lag_s=0.0, exit_code=0,
        outcome="ok",
    )  # fmt: skip


def test_growth_is_measured_after_warm_up_and_records_are_accounted(tmp_path: Path) -> None:
    # 10 minutes: the proxy grows 30 MB after warm-up, the engine leaks one descriptor a minute;
    # the first minute (warm-up) is left out whatever it holds.
    rows = [row(s, 200.0 if s < 60 else 50.0 + s / 20, 10 + int(s // 60)) for s in range(600)]
    requests = [
        RequestRecord(ts=T0, op="listing", method="GET", path="/", status=200, total_ms=1.0,
                      run_id=rid)
        for rid in ("r1", None)
    ]  # fmt: skip
    data = RunData(
        run_dir=tmp_path,
        meta=RunMeta(profile={"name": "soak"}),
        requests=tuple(requests),
        clients=(client("r1"), client("r2")),
        host=tuple(rows),
    )
    state = steady_state(data)
    by = {(g.group, g.figure): g for g in state.growth}
    assert round(by["proxy", "rss_mb"].growth) == 24  # ~56 MB at 1-2 min, ~80 MB at the end
    assert by["engine", "fds"].growth == 8
    assert by["pool", "rss_mb"].growth == 0
    assert state.worst("rss_mb") == by["proxy", "rss_mb"].growth
    assert state.ok_runs_without_requests == ("r2",)
    assert state.unattributed_requests == 1


def test_nothing_measured_is_no_growth_of_zero_and_failures_are_counted(tmp_path: Path) -> None:
    # No host samples at all: the soak must not read that as "flat".
    failed = ClientRecord.from_json({**client("r2").to_json(), "outcome": "failed"})
    requests = [
        RequestRecord(ts=T0, op="listing", method="GET", path="/", status=status, total_ms=1.0,
                      run_id="r1", error=error)
        for status, error in ((200, None), (503, None), (None, "upstream_reset"))
    ]  # fmt: skip
    data = RunData(
        run_dir=tmp_path,
        meta=RunMeta(profile={"name": "soak"}),
        requests=tuple(requests),
        clients=(client("r1"), failed),
    )
    state = steady_state(data)
    assert state.worst("rss_mb") is None
    assert ("proxy", "fds") in state.unmeasured and len(state.unmeasured) == 6
    assert state.failed_runs == ("r2",)
    assert state.request_errors == 2
