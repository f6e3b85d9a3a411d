"""``--abort-on-fail``'s watch: when each threshold can no longer pass, read from a growing
``requests.jsonl`` written by the engine's own writer (the e2e test runs it for real)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pipstorm.engine.run.live.abort import AbortRun, AbortWatch, aborted_record
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import RequestRecord
from tests.engine.analysis.test_stats import req


def _watch(
    path: Path,
    limits: dict[str, float],
    *,
    planned: int = 100,
    runs: tuple[int, int] = (0, 0),
    count_injected: bool = False,
) -> tuple[AbortWatch, RunMeta]:
    meta = RunMeta(
        profile={"name": "t"},
        runs_planned=planned,
        thresholds=limits,
        count_injected=count_injected,
        started=1.0,
    )
    return AbortWatch(path, meta, lambda: runs), meta


def _append(path: Path, *records: RequestRecord) -> None:
    with JsonlWriter(path) as out:
        for record in records:
            out.write(record)


def test_max_5xx_aborts_once_exceeded_not_before(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    watch, _ = _watch(path, {"max_5xx": 1.0})
    watch.check()  # no file yet
    _append(path, req(0, status=200), req(1, status=503))
    watch.check()  # 1 is still within "<= 1"
    _append(path, req(2, status=502))
    with pytest.raises(AbortRun, match=r"max_5xx: 2 5xx responses so far, the limit is 1"):
        watch.check()


def test_injected_5xx_count_only_with_count_injected(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    injected = dataclasses.replace(req(0, status=503), fault="f1")
    _append(path, injected)
    watch, _ = _watch(path, {"max_5xx": 0.0})
    watch.check()
    counted, _ = _watch(path, {"max_5xx": 0.0}, count_injected=True)
    with pytest.raises(AbortRun, match="max_5xx"):
        counted.check()


def test_error_budget_of_the_whole_planned_run(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    # 10 of 100 planned runs finished with 20 requests: ~200 expected; 1 % of it is 2 errors.
    _append(path, *(req(i, status=200) for i in range(19)), req(19, status=404))
    watch, _ = _watch(path, {"error_rate": 1.0}, runs=(10, 0))
    watch.check()  # 1 error: under the budget of 2
    _append(path, req(20, status=None, error="upstream_timeout: read"))
    watch.check()  # 2 errors of ~210 expected: under 1 % (2.1), it can still pass
    _append(path, req(21, status=500))
    with pytest.raises(AbortRun, match=r"error_rate: 3 failed requests so far.*~220 requests"):
        watch.check()


def test_run_error_budget_and_a_dead_target(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    watch, _ = _watch(path, {"run_error_rate": 5.0}, planned=40, runs=(3, 2))
    with pytest.raises(AbortRun, match=r"run_error_rate: 2 failed client runs.*40 planned"):
        watch.check()
    alive, meta = _watch(path, {})
    alive.check()
    meta.target["died"] = {"ts": 5.0, "exit_code": -9}
    with pytest.raises(AbortRun, match=r"the target died \(exit code -9\)"):
        alive.check()
    record = aborted_record("why", meta)
    assert record["reason"] == "why"
    assert record["at_s"] == pytest.approx(record["ts"] - 1.0)


def test_latency_never_aborts(tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    _append(path, *(req(i, total_ms=99_000.0) for i in range(50)))
    watch, _ = _watch(path, {"p95_listing_ms": 10.0, "max_listing_ms": 10.0}, runs=(50, 0))
    watch.check()
