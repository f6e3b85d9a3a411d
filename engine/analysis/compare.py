"""``pipstorm compare A B [C ...]``: the key figures of several runs side by side.

The seed's users compared a baseline deployment with an optimised one by running ``jq`` over
two report.json files. Here the first run is the baseline and every other run gets, for each
figure, its value and its change against the baseline, marked ``better`` or ``worse`` where the
direction is obvious (lower latency and error counts are better).

Each argument is a run directory or a ``report.json``. A run directory without a report.json
(a run killed before it wrote one) is reported on in memory from its streams, without writing
anything, so comparing never changes a results folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipstorm.engine.analysis.verdict import decide, evidence_from_json
from pipstorm.engine.errors import UsageError

FORMATS = ("table", "md", "json")

Direction = Literal["lower", "higher", None]


class CompareError(UsageError, ValueError):
    """An argument is not a run or a report; the message names it and the problem."""


@dataclass(frozen=True)
class Metric:
    """One row of the comparison: how to read it from report.json and which way is better."""

    key: str
    label: str
    digits: int
    better: Direction
    read: Callable[[Mapping[str, Any]], float | None]
    optional: bool = False  # a row only when some run has it (CloudWatch; a sized target)


def _get(data: Any, *path: str) -> Any:  # noqa: ANN401 - walks untyped JSON
    for key in path:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _num(*path: str, scale: float = 1.0) -> Callable[[Mapping[str, Any]], float | None]:
    def read(report: Mapping[str, Any]) -> float | None:
        value = _get(report, *path)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value) * scale if math.isfinite(value) else None

    return read


def _failed_thresholds(report: Mapping[str, Any]) -> float | None:
    results = report.get("thresholds")
    if not isinstance(results, list):
        return None
    return float(sum(1 for r in results if isinstance(r, Mapping) and r.get("passed") is False))


_TARGET_COUNTERS: tuple[tuple[str, str, int, Direction], ...] = (
    ("cpu_s", "target CPU (s)", 2, None),
    ("throttled_ratio", "target throttled (share of periods)", 2, "lower"),
    ("throttled_s", "target throttled (s)", 2, "lower"),
    ("memory_peak_mb", "target memory peak (MiB)", 1, None),
    ("oom_kills", "target OOM kills", 0, "lower"),
)


def _survived(report: Mapping[str, Any]) -> float | None:
    survived = _get(report, "target", "counters", "survived")
    return float(survived) if isinstance(survived, bool) else None


METRICS: tuple[Metric, ...] = (
    Metric("thresholds_failed", "thresholds failed", 0, "lower", _failed_thresholds),
    Metric("requests", "requests", 0, None, _num("requests", "count")),
    Metric("throughput_rps", "throughput (req/s)", 2, None, _num("requests", "throughput_rps")),
    Metric("error_rate", "error rate (%)", 2, "lower", _num("error_rate")),
    Metric("error_5xx_count", "5xx responses", 0, "lower", _num("error_5xx_count")),
    Metric("latency_p95", "p95 all (ms)", 1, "lower", _num("latency_p95")),
    Metric("latency_p99", "p99 all (ms)", 1, "lower", _num("latency_p99")),
    Metric(
        "p95_listing_ms",
        "p95 listing (ms)",
        1,
        "lower",
        _num("operations", "listing", "total_ms", "p95"),
    ),
    Metric(
        "p99_listing_ms",
        "p99 listing (ms)",
        1,
        "lower",
        _num("operations", "listing", "total_ms", "p99"),
    ),
    Metric(
        "p95_download_ms",
        "p95 download (ms)",
        1,
        "lower",
        _num("operations", "download", "total_ms", "p95"),
    ),
    Metric(
        "p99_download_ms",
        "p99 download (ms)",
        1,
        "lower",
        _num("operations", "download", "total_ms", "p99"),
    ),
    Metric("client_runs", "client runs", 0, None, _num("clients", "all", "count")),
    Metric(
        "client_failed", "client runs failed", 0, "lower", _num("clients", "all", "failed_count")
    ),
    Metric(
        "client_error_rate", "run error rate (%)", 2, "lower", _num("clients", "all", "error_rate")
    ),
    Metric(
        "client_p95_s", "client run p95 (s)", 2, "lower", _num("clients", "all", "client_s", "p95")
    ),
    Metric("lag_p95_s", "lag p95 (s)", 3, "lower", _num("clients", "all", "lag_s", "p95")),
    Metric("lag_max_s", "lag max (s)", 3, "lower", _num("clients", "all", "lag_s", "max")),
    Metric("onset_p95_s", "onset p95, worst tick (s)", 2, "lower", _num("onset", "worst_p95_s")),
    Metric("duration_s", "duration (s)", 1, None, _num("duration_s")),
    *(
        Metric(key, label, digits, better, _num("target", "counters", key), optional=True)
        for key, label, digits, better in _TARGET_COUNTERS
    ),
    Metric("target_survived", "target survived (1 yes)", 0, "higher", _survived, optional=True),
)
# The server side, from report.json's ``cloudwatch`` (runs against an AWS stack only).
_CW = ("cloudwatch", "series")
METRICS += (
    Metric("cw_ecs_cpu_max", "ECS CPU max (%)", 1, "lower", _num(*_CW, "ecs_cpu", "max"), True),
    Metric(
        "cw_ecs_memory_max", "ECS memory max (%)", 1, "lower",
        _num(*_CW, "ecs_memory", "max"), True,
    ),
    Metric(
        "cw_efs_burst_credits_min", "EFS burst credits min (GiB)", 2, "higher",
        _num(*_CW, "efs_burst_credits", "min", scale=1 / 2**30), True,
    ),
    Metric(
        "cw_efs_io_limit_max", "EFS I/O limit max (%)", 1, "lower",
        _num(*_CW, "efs_percent_io_limit", "max"), True,
    ),
    Metric(
        "cw_alb_response_ms", "ALB target response mean (ms)", 1, "lower",
        _num(*_CW, "alb_target_response_time", "mean", scale=1000.0), True,
    ),
    Metric(
        "cw_alb_target_5xx", "ALB target 5xx", 0, "lower",
        _num(*_CW, "alb_target_5xx", "total"), True,
    ),
    Metric(
        "cw_alb_unhealthy_max", "ALB unhealthy targets max", 0, "lower",
        _num(*_CW, "alb_unhealthy_hosts", "max"), True,
    ),
)  # fmt: skip


@dataclass(frozen=True)
class RunSummary:
    """One compared run: where it came from and its report.json document."""

    label: str
    source: Path
    report: Mapping[str, Any]

    @property
    def verdict(self) -> str:
        """``pass``/``fail``/``inconclusive``, by the rule every verdict comes from
        (``pipstorm.engine.analysis.verdict``, applied to the report.json document, so a file
        written before the rule is judged by it too), with the flags a reader must see
        (interrupted, incomplete, generator-bound where the verdict does not already say it)."""
        decision = decide(evidence_from_json(self.report))
        flags = [
            name
            for name, on in (
                ("interrupted", self.report.get("interrupted") is True),
                ("incomplete", self.report.get("incomplete") is True),
                (
                    "generator-bound, allowed" if decision.allowed else "generator-bound",
                    decision.generator_bound and decision.verdict != "inconclusive",
                ),
            )
            if on
        ]
        return decision.verdict + (f" ({', '.join(flags)})" if flags else "")


@dataclass(frozen=True)
class Delta:
    """A value against the baseline's: absolute and relative change, and its direction."""

    value: float | None
    change: float | None
    change_percent: float | None
    judgement: Literal["better", "worse", "same"] | None


def delta(metric: Metric, baseline: float | None, value: float | None) -> Delta:
    """The change of ``value`` against ``baseline`` (None parts where it is undefined)."""
    if value is None or baseline is None:
        return Delta(value, None, None, None)
    change = value - baseline
    percent = None if baseline == 0 else 100.0 * change / abs(baseline)
    judgement: Literal["better", "worse", "same"] | None = None
    if metric.better is not None:
        if round(change, metric.digits) == 0:
            judgement = "same"
        else:
            lower = change < 0
            judgement = "better" if lower == (metric.better == "lower") else "worse"
    return Delta(value, change, percent, judgement)


def compare(runs: Sequence[RunSummary]) -> list[tuple[Metric, list[Delta]]]:
    """For each metric, every run's value and change against the first run."""
    rows = []
    for metric in METRICS:
        values = [metric.read(r.report) for r in runs]
        if metric.optional and all(v is None for v in values):
            continue
        rows.append((metric, [delta(metric, values[0], v) for v in values]))
    return rows
