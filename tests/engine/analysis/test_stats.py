"""Statistics checked against values computed independently (by hand or by the stdlib)."""

from __future__ import annotations

import dataclasses
import json
import random
import statistics

import pytest

from pipstorm.engine.analysis.stats import StatsError, compute_stats, distribution, percentile
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

T0 = 1_764_040_000.0


def req(
    ts: float,
    op: str = "listing",
    status: int | None = 200,
    total_ms: float = 10.0,
    *,
    run_id: str | None = "r1",
    error: str | None = None,
    ttfb_ms: float | None = 1.0,
    nbytes: int = 100,
    path: str = "/simple/p/",
) -> RequestRecord:
    return RequestRecord(
        ts=T0 + ts,
        op=op,
        method="GET",
        path=path,
        status=status,
        total_ms=total_ms,
        run_id=run_id,
        bytes=nbytes,
        ttfb_ms=ttfb_ms,
        error=error,
    )


def run(
    run_id: str,
    outcome: str = "ok",
    *,
    client: str = "pip",
    intended: float = 0.0,
    lag: float = 0.0,
    setup: float = 1.0,
    work: float = 2.0,
    launched: bool = True,
) -> ClientRecord:
    started = T0 + intended + lag
    return ClientRecord(
        run_id=run_id,
        client=client,
        project="test-package-000",
        version="1.0.0",
        tick=0,
        burst=False,
        intended=T0 + intended,
        started=started,
        launched=started + setup if launched else None,
        ended=started + setup + work,
        lag_s=lag,
        exit_code=0 if outcome == "ok" else 1,
        outcome=outcome,
    )


# --- percentile ----------------------------------------------------------------------------


def test_percentile_hand_worked() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    # position (n-1)*q: 1.5 -> 2.5; 2.7 -> 3 + 0.7; 2.97 -> 3 + 0.97
    assert percentile(values, 50) == pytest.approx(2.5)
    assert percentile(values, 90) == pytest.approx(3.7)
    assert percentile(values, 99) == pytest.approx(3.97)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile([7.0], 99) == 7.0


def test_percentile_matches_stdlib_inclusive_quantiles() -> None:
    # statistics.quantiles(method="inclusive") is the same linear interpolation as numpy's
    # default, computed by other code: cut point k of n=100 is the k-th percentile.
    rng = random.Random(7)
    for size in (2, 3, 10, 101, 1000):
        values = sorted(rng.lognormvariate(3, 1) for _ in range(size))
        expected = statistics.quantiles(values, n=100, method="inclusive")
        for k in (1, 25, 50, 90, 95, 99):
            assert percentile(values, k) == pytest.approx(expected[k - 1], rel=1e-12)


def test_percentile_never_leaves_min_max() -> None:
    rng = random.Random(3)
    for _ in range(200):
        values = sorted(rng.choice([0.1, 0.2, 0.7, 1e-9, 1e9]) for _ in range(rng.randint(1, 9)))
        for q in (0, 1, 33.3, 50, 95, 99, 99.9, 100):
            assert values[0] <= percentile(values, q) <= values[-1]


@pytest.mark.parametrize(
    ("values", "q", "message"),
    [
        ([], 50, "no samples"),
        ([1.0], 101, "within 0..100"),
        ([1.0], -1, "within 0..100"),
        ([2.0, 1.0], 50, "sorted"),
    ],
)
def test_percentile_refuses_bad_input(values: list[float], q: float, message: str) -> None:
    with pytest.raises(StatsError, match=message):
        percentile(values, q)


def test_distribution() -> None:
    assert distribution([]) is None
    d = distribution([4.0, 1.0, 3.0, 2.0])
    assert d is not None
    assert (d.count, d.min, d.max, d.mean) == (4, 1.0, 4.0, 2.5)
    assert d.p50 == pytest.approx(2.5)
    assert d.p95 == pytest.approx(3.85)


# --- requests ------------------------------------------------------------------------------


def sample_requests() -> list[RequestRecord]:
    return [
        req(0.0, "listing", 200, 10.0, nbytes=1000),
        req(1.0, "listing", 200, 30.0, nbytes=1000),
        req(2.0, "listing", 404, 20.0, nbytes=50),
        req(3.0, "listing", 503, 40.0, nbytes=0),
        req(4.0, "download", 200, 100.0, nbytes=5000, path="/packages/p-1.0.whl"),
        # the proxy writes the elapsed time as ttfb when no response came
        req(5.0, "download", None, 3000.0, error="upstream_timeout", ttfb_ms=3000.0, nbytes=0),
        req(6.0, "download", None, 5.0, error="upstream_error: boom", ttfb_ms=None, nbytes=0),
        req(7.0, "download", 200, 50.0, error="client_disconnected", nbytes=10),
        req(8.0, "redirect", 303, 2.0, run_id="r2", nbytes=0),
        # The same listing again by the same run: a retry. Ends last: 9.5 + 0.5 s.
        req(9.5, "listing", 200, 500.0, nbytes=1000),
    ]


def test_operation_stats() -> None:
    stats = compute_stats(sample_requests())
    assert list(stats.operations) == ["listing", "download", "redirect"]
    listing = stats.operations["listing"]
    assert listing.count == 5
    assert listing.error_count == 2  # 404 and 503
    assert listing.error_rate == pytest.approx(40.0)
    assert listing.bytes == 3050
    assert listing.status_code_counts == {"200": 3, "404": 1, "503": 1}
    assert listing.total_ms is not None
    # sorted 10, 20, 30, 40, 500: p50 is 30; p95 at position 3.8 -> 40 + 0.8 * 460
    assert listing.total_ms.p50 == 30.0
    assert listing.total_ms.p95 == pytest.approx(408.0)
    assert listing.total_ms.max == 500.0
    assert listing.total_ms.mean == pytest.approx(120.0)
    download = stats.operations["download"]
    # timeout and upstream_error count; the disconnected client does not
    assert (download.count, download.error_count) == (4, 2)
    assert download.status_code_counts == {"200": 2, "transport": 2}
    assert download.ttfb_ms is not None
    assert download.ttfb_ms.count == 2  # transport errors have no first byte
    assert download.ttfb_ms.max == 1.0
    assert stats.op_count("metadata") == 0


def test_request_stats() -> None:
    overall = compute_stats(sample_requests()).requests
    assert overall.count == 10
    assert overall.error_count == 4  # 404, 503, timeout, upstream_error
    assert overall.error_rate == pytest.approx(40.0)
    assert overall.error_5xx_count == 1
    assert overall.status_code_counts == {
        "200": 5,
        "303": 1,
        "404": 1,
        "503": 1,
        "transport": 2,
    }
    assert overall.transport_errors == {
        "client_disconnected": 1,
        "upstream_error": 1,
        "upstream_timeout": 1,
    }
    assert overall.client_disconnected_count == 1
    assert overall.unattributed_count == 0  # see test_unattributed_requests_are_counted_apart
    assert overall.repeated_count == 7  # r1 asked GET /simple/p/ 8 times
    assert overall.window_s == pytest.approx(10.0)  # 0.0 .. 9.5 + 0.5
    assert overall.throughput_rps == pytest.approx(1.0)
    totals = sorted(r.total_ms for r in sample_requests())
    assert overall.latency_p95 == pytest.approx(percentile(totals, 95))
    assert overall.latency_p99 == pytest.approx(
        statistics.quantiles(totals, n=100, method="inclusive")[98]
    )


def test_empty_run() -> None:
    stats = compute_stats([], [])
    assert stats.requests.count == 0
    assert stats.requests.error_rate is None
    assert stats.requests.latency_p95 is None
    assert stats.requests.throughput_rps is None
    assert stats.operations == {}
    assert stats.clients.all.count == 0
    assert stats.clients.all.error_rate is None
    json.dumps(stats.to_dict())


# --- client runs ---------------------------------------------------------------------------


def test_client_stats() -> None:
    runs = [
        run("r1", lag=0.1, work=2.0),
        run("r2", lag=0.3, work=4.0),
        run("r3", "failed", lag=0.2, work=6.0),
        run("r4", "interrupted", lag=0.0, work=1.0),
        run("r5", "timeout", client="poetry", lag=2.0, work=10.0, launched=False),
    ]
    clients = compute_stats([], runs).clients
    all_runs = clients.all
    assert all_runs.count == 5
    assert all_runs.by_outcome == {"failed": 1, "interrupted": 1, "ok": 2, "timeout": 1}
    # interrupted runs are left out: 2 of the 4 judged runs failed
    assert all_runs.failed_count == 2
    assert all_runs.error_rate == pytest.approx(50.0)
    assert all_runs.lag_s is not None
    assert all_runs.lag_s.max == 2.0
    assert all_runs.lag_s.p50 == pytest.approx(0.2)
    assert all_runs.cpu_s is None  # no record carried CPU figures
    assert all_runs.client_s is not None
    assert all_runs.client_s.count == 4  # r5 never launched
    assert all_runs.client_s.max == pytest.approx(6.0)
    assert all_runs.from_intended_s is not None
    assert all_runs.from_intended_s.max == pytest.approx(13.0)  # lag 2 + 1 + 10
    assert list(clients.by_client) == ["pip", "poetry"]
    assert clients.by_client["pip"].error_rate == pytest.approx(100 / 3)
    assert clients.by_client["poetry"].by_outcome == {"timeout": 1}


def test_to_dict_is_json_and_carries_the_seed_names() -> None:
    data = compute_stats(sample_requests(), [run("r1")]).to_dict()
    text = json.dumps(data, allow_nan=False)
    back = json.loads(text)
    assert back["requests"]["latency_p95"] == pytest.approx(
        compute_stats(sample_requests()).requests.latency_p95
    )
    assert back["operations"]["listing"]["total_ms"]["p50"] == 30.0
    assert back["clients"]["all"]["count"] == 1


def test_unattributed_requests_are_counted_apart_and_never_in_the_error_rate() -> None:
    attributed = [req(float(i), "listing", 200, 10.0) for i in range(10)]
    strays = [
        req(1.5, "other", 400, 0.0, run_id=None, error="bad_request: BadStatusLine", path=""),
        req(2.5, "other", 400, 0.0, run_id=None, error="bad_request: LineTooLong", path=""),
        req(3.5, "other", 404, 1.0, run_id=None, path="/"),  # a scanner's GET /
        req(4.5, "other", None, 60000.0, run_id=None, error="client_header_timeout", path=""),
    ]
    stats = compute_stats([*attributed, *strays])
    overall = stats.requests
    assert (overall.count, overall.error_count, overall.error_rate) == (10, 0, 0.0)
    assert overall.status_code_counts == {"200": 10}
    assert overall.transport_errors == {}
    assert overall.unattributed_count == 4
    assert overall.unattributed == {"400 bad_request": 2, "404": 1, "client_header_timeout": 1}
    assert list(stats.operations) == ["listing"]
    assert overall.total_ms is not None and overall.total_ms.max == 10.0


def test_connections_opened_by_clients_and_to_the_index_are_counted() -> None:
    records = [
        dataclasses.replace(req(float(i), run_id=f"r{i // 3}"), conn=i // 3 + 1, upstream_new=new)
        for i, new in enumerate([True, False, False, True, False, True, False, False, False])
    ]
    stray = dataclasses.replace(req(9.0, run_id=None, status=None), conn=4, upstream_new=None)
    overall = compute_stats([*records, stray]).requests
    assert overall.client_connections == 3  # the stray's connection is not a run's
    assert overall.upstream_connections == 3


def test_records_without_connection_fields_give_no_connection_counts() -> None:
    overall = compute_stats(sample_requests()).requests
    assert (overall.client_connections, overall.upstream_connections) == (None, None)
