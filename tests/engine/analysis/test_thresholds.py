"""Thresholds: defaults, overrides, merging and evaluation against hand-built statistics."""

from __future__ import annotations

import pytest

from pipstorm.engine.analysis.stats import RunStats, compute_stats
from pipstorm.engine.analysis.thresholds import (
    DEFAULTS,
    ThresholdError,
    ThresholdResult,
    evaluate,
    merge,
    parse_override,
    spec_for,
)
from pipstorm.engine.rundir.records import RequestRecord
from tests.engine.analysis.test_stats import req, run


def good_stats(n: int = 200) -> RunStats:
    requests: list[RequestRecord] = []
    for i in range(n):
        requests.append(req(i, "listing", 200, 100.0 + i))
        requests.append(req(i + 0.5, "download", 200, 200.0 + i))
    return compute_stats(requests, [run("r1")])


def by_key(results: list[ThresholdResult]) -> dict[str, ThresholdResult]:
    return {r.key: r for r in results}


def test_defaults_are_the_seeds() -> None:
    assert dict(DEFAULTS) == {
        "error_rate": 1.0,
        "p95_listing_ms": 2000.0,
        "p99_download_ms": 5000.0,
        "max_5xx": 0.0,
    }
    assert spec_for("error_rate").comparison == "<"
    assert spec_for("max_5xx").comparison == "<="


def test_a_healthy_run_passes_every_default() -> None:
    results = evaluate(DEFAULTS, good_stats())
    assert [r.key for r in results] == list(DEFAULTS)
    assert all(r.passed for r in results), results
    measured = by_key(results)
    assert measured["error_rate"].measured == 0.0
    assert measured["max_5xx"].measured == 0.0
    # listing latencies are 100..299: p95 at position 0.95 * 199 = 189.05
    assert measured["p95_listing_ms"].measured == pytest.approx(289.05)
    assert measured["p99_download_ms"].measured == pytest.approx(200.0 + 0.99 * 199)


def test_each_default_fails_when_its_metric_is_bad() -> None:
    requests = [req(i, "listing", 200, 2500.0) for i in range(98)]
    requests += [req(98, "listing", 500, 10.0), req(99, "download", 200, 6000.0)]
    results = by_key(evaluate(DEFAULTS, compute_stats(requests)))
    assert not results["p95_listing_ms"].passed
    assert results["p95_listing_ms"].measured == 2500.0
    assert not results["p99_download_ms"].passed
    assert results["p99_download_ms"].measured == 6000.0
    assert not results["max_5xx"].passed
    assert results["max_5xx"].measured == 1.0
    # 1 error in 100 requests is exactly 1 %: the seed's "< 1%" fails it
    assert results["error_rate"].measured == pytest.approx(1.0)
    assert not results["error_rate"].passed


def test_latency_threshold_without_samples_fails_with_a_note() -> None:
    stats = compute_stats([req(0, "listing")])
    result = by_key(evaluate(DEFAULTS, stats))["p99_download_ms"]
    assert result.measured is None
    assert not result.passed
    assert result.note is not None
    assert "no samples" in result.note


def test_a_run_without_requests_fails_error_rate() -> None:
    result = by_key(evaluate(DEFAULTS, compute_stats([])))["error_rate"]
    assert (result.measured, result.passed, result.note) == (None, False, "no requests")


def test_generic_operation_keys_and_run_error_rate() -> None:
    stats = compute_stats(
        [req(0, "metadata", 200, 40.0), req(1, "metadata", 200, 60.0)],
        [run("r1"), run("r2", "failed"), run("r3", "interrupted")],
    )
    results = by_key(
        evaluate({"p50_metadata_ms": 51.0, "max_metadata_ms": 60.0, "run_error_rate": 60}, stats)
    )
    assert results["p50_metadata_ms"].measured == pytest.approx(50.0)
    assert results["p50_metadata_ms"].passed
    assert not results["max_metadata_ms"].passed  # 60 is not < 60
    assert results["run_error_rate"].measured == pytest.approx(50.0)
    assert results["run_error_rate"].passed
    assert spec_for("p90_upload_ms").description == "P90 latency of upload requests (ms)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("error_rate=2.5", ("error_rate", 2.5)),
        (" p95_listing_ms = 1500 ", ("p95_listing_ms", 1500.0)),
        ("max_5xx=3", ("max_5xx", 3.0)),
        ("max_5xx=0", ("max_5xx", 0.0)),
        ("p99_download_ms=off", ("p99_download_ms", None)),
        ("run_error_rate=None", ("run_error_rate", None)),
    ],
)
def test_parse_override(text: str, expected: tuple[str, float | None]) -> None:
    assert parse_override(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("latency=5", "unknown threshold 'latency'"),
        ("p95_foo_ms=5", "unknown threshold 'p95_foo_ms'"),
        ("p95_listing_ms=fast", "p95_listing_ms: 'fast' is not a number"),
        ("error_rate", "must look like KEY=VALUE"),
        ("=3", "must look like KEY=VALUE"),
        ("error_rate=0", "can never pass"),
        ("error_rate=-1", "must be a number >= 0"),
        ("p95_listing_ms=nan", "must be a number >= 0"),
        ("p95_listing_ms=inf", "must be a number >= 0"),
    ],
)
def test_parse_override_errors_name_the_bad_part(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message) as info:
        parse_override(text)
    assert "\n" not in str(info.value)


def test_unknown_key_message_lists_known_keys() -> None:
    with pytest.raises(ThresholdError, match="known: error_rate, max_5xx, run_error_rate"):
        spec_for("p95")


def test_merge_layers_later_wins_and_none_switches_off() -> None:
    merged = merge(
        DEFAULTS,
        {"p95_listing_ms": 3000, "run_error_rate": 5.0},
        dict([parse_override("max_5xx=off"), parse_override("p95_listing_ms=2500")]),
    )
    assert merged == {
        "error_rate": 1.0,
        "p95_listing_ms": 2500.0,
        "p99_download_ms": 5000.0,
        "run_error_rate": 5.0,
    }
    assert merge(DEFAULTS) == dict(DEFAULTS)


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        ({"p95_lsting_ms": 1.0}, "unknown threshold 'p95_lsting_ms'"),
        ({"error_rate": "1"}, "error_rate: '1' is not a number"),
        ({"error_rate": True}, "error_rate: True is not a number"),
        ({"typo": None}, "unknown threshold 'typo'"),
    ],
)
def test_merge_validates_every_layer(layer: dict[str, object], message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        merge(DEFAULTS, layer)  # type: ignore[arg-type]


def test_all_requests_keys_measure_every_operation_together() -> None:
    """The seed module gates ``latency_p95`` over every request, not per operation."""
    stats = compute_stats([req(0, "listing", 200, 100.0), req(1, "download", 200, 300.0)])
    results = by_key(evaluate({"p95_all_ms": 15000.0, "max_all_ms": 300.0}, stats))
    assert results["p95_all_ms"].measured == pytest.approx(290.0)  # across both operations
    assert results["p95_all_ms"].passed
    assert not results["max_all_ms"].passed  # 300 is not < 300
    assert spec_for("p95_all_ms").description == "P95 latency of all requests (ms)"
    empty = by_key(evaluate({"p95_all_ms": 15000.0}, compute_stats([])))["p95_all_ms"]
    assert (empty.measured, empty.passed) == (None, False)
    assert empty.note is not None and "no samples" in empty.note
