"""Bucketing requests in time and reading host samples defensively."""

from __future__ import annotations

from typing import Any

from pipstorm.engine.analysis.timeseries import (
    MAX_BUCKETS,
    bucket_width,
    host_series,
    request_series,
    run_origin,
)
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import RequestRecord
from tests.engine.synthetic_run import host_line


def req(
    ts: float, op: str = "listing", ms: float = 10.0, status: int | None = 200
) -> RequestRecord:
    return RequestRecord(ts=ts, op=op, method="GET", path="/x", status=status, total_ms=ms)


def test_bucket_width_is_round_and_keeps_the_bucket_count_bounded() -> None:
    assert bucket_width(45) == 1
    assert bucket_width(1440) == 10  # production_incident: 144 buckets
    for span in (1, 199, 201, 1440, 86_400, 10**6):
        assert span / bucket_width(span) <= MAX_BUCKETS


def test_request_series_rates_percentiles_and_status_per_bucket() -> None:
    records = [req(100.0 + i * 0.1, ms=float(i + 1)) for i in range(10)]  # bucket 0: 1..10 ms
    records += [req(103.5, op="download", ms=50, status=502), req(103.6, status=None, ms=7)]
    series = request_series(records, origin=100.0, span_s=5.0)
    assert series.width_s == 1
    assert series.starts == (0, 1, 2, 3, 4)
    assert series.rate_by_op["listing"] == (10.0, 0.0, 0.0, 1.0, 0.0)
    assert series.rate_by_op["download"] == (0.0, 0.0, 0.0, 1.0, 0.0)
    listing = series.latency_by_op["listing"]
    assert listing["p50"][0] == 5.5
    assert listing["p99"][0] is not None and 9.9 < listing["p99"][0] <= 10.0
    assert listing["p95"][1] is None  # an empty bucket is a gap, not a zero
    assert series.status_counts == {
        "200": (10, 0, 0, 0, 0),
        "502": (0, 0, 0, 1, 0),
        "transport": (0, 0, 0, 1, 0),
    }
    assert list(series.samples_by_op) == ["listing", "download"]


def test_requests_outside_the_span_are_kept() -> None:
    series = request_series([req(99.0), req(120.0)], origin=100.0, span_s=10.0)
    assert sum(series.rate_by_op["listing"]) * series.width_s == 2
    assert series.starts[-1] >= 19


def test_origin_from_run_json() -> None:
    assert run_origin(RunMeta(profile={}, started=5.0), [req(9.0)], []) == 5.0
    crashed_early = RunMeta(profile={}, started=None)
    assert run_origin(crashed_early, [req(9.0), req(7.0)], []) == 7.0
    assert run_origin(crashed_early, [], []) is None


def test_host_series_reads_the_sampler_shape_as_shares_of_the_machine() -> None:
    rows: list[dict[str, Any]] = [host_line(1001.0, 50.0), host_line(1002.0, 80.0)]
    rows[1]["target"] = None  # a remote target is not sampled
    host = host_series(rows, origin=1000.0)
    assert host.offsets == (1.0, 2.0)
    assert host.cores == 2
    assert host.cpu_percent["host"] == (50.0, 80.0)
    assert host.cpu_percent["clients"] == (25.0, 40.0)  # 100-per-core figures / 2 cores
    assert host.cpu_percent["target"] == (12.5, None)
    assert host.memory_percent == {"host": (41.5, 41.5)}
    assert set(host.memory_mb) == {"engine", "proxy", "target", "clients"}
    assert host.memory_mb["proxy"] == (45.0, 45.0)


def test_host_series_is_defensive() -> None:
    rows: list[dict[str, Any]] = [
        {"ts": "soon", "host_cpu_percent": 10},
        {"no_ts": 1},
        {"ts": 1005.0, "weird": {"thing": 3}, "flag": True},
        {"ts": 1006.0, "host_cpu_percent": 30, "proxy_rss_bytes": 2_000_000},
    ]
    host = host_series(rows, origin=1000.0)
    assert host.offsets == (5.0, 6.0)
    assert host.cores is None
    assert host.cpu_percent == {"host": (None, 30.0)}
    assert host.memory_mb == {"proxy": (None, 2.0)}
    assert host_series([{"ts": 1.0, "unknown": 3}], origin=0.0).empty
