"""The one place for thresholds: their keys, defaults, overrides and evaluation.

A threshold is a key (``p95_listing_ms``), a limit (2000) and, from the key, a description, a
comparison and how the measured value is taken from
:class:`pipstorm.engine.analysis.stats.RunStats`. A set of thresholds is a plain ``{key: limit}``
mapping, which is what ``run.json`` stores.

Keys:

* ``error_rate``: failed requests, percent (< limit);
* ``max_5xx``: responses with a 5xx status (<= limit);
* ``run_error_rate``: client runs not ok, percent (< limit; off by default);
* ``p<50|90|95|99>_<op>_ms`` and ``max_<op>_ms``: latency of one operation, ms (< limit);
* ``p<50|90|95|99>_all_ms`` and ``max_all_ms``: latency over ALL requests, ms (< limit): the
  seed module's own gate (``latency_p95 < 15000`` in its tests/test_stress.py) is over every
  request, whatever its operation.

A latency threshold on an operation that had no requests at all fails with "no samples": a
load test meant to check downloads that made none has not shown that downloads are fast.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pipstorm.engine.analysis.stats import RunStats
from pipstorm.engine.errors import UsageError
from pipstorm.engine.rundir.records import OPERATIONS

Comparison = Literal["<", "<="]

# The seed's success criteria.
DEFAULTS: Mapping[str, float] = {
    "error_rate": 1.0,
    "p95_listing_ms": 2000.0,
    "p99_download_ms": 5000.0,
    "max_5xx": 0.0,
}

# Words accepted as the value of an override to switch a threshold off.
OFF_WORDS = frozenset({"off", "none", "disabled"})

_LATENCY_KEY = re.compile(r"^(p50|p90|p95|p99|max)_([a-z]+)_ms$")


class ThresholdError(UsageError, ValueError):
    """A threshold key or value is not valid; the message names the bad part."""


@dataclass(frozen=True)
class Measurement:
    """A measured value, or None with a note saying why there is none."""

    value: float | None
    note: str | None = None


@dataclass(frozen=True)
class ThresholdSpec:
    """What a key means: description, comparison, unit, and how to measure it."""

    key: str
    description: str
    comparison: Comparison
    unit: str
    measure: Callable[[RunStats], Measurement]


@dataclass(frozen=True)
class ThresholdResult:
    """One threshold checked against a run."""

    key: str
    description: str
    comparison: Comparison
    limit: float
    unit: str
    measured: float | None
    passed: bool
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the report's ``thresholds`` list items)."""
        return asdict(self)


def _measure_error_rate(stats: RunStats) -> Measurement:
    if stats.requests.count == 0:
        return Measurement(None, "no requests")
    return Measurement(stats.requests.error_rate)


def _measure_5xx(stats: RunStats) -> Measurement:
    return Measurement(float(stats.requests.error_5xx_count))


def _measure_run_error_rate(stats: RunStats) -> Measurement:
    rate = stats.clients.all.error_rate
    return Measurement(None, "no client runs") if rate is None else Measurement(rate)


def _latency_measure(stat: str, op: str) -> Callable[[RunStats], Measurement]:
    def measure(stats: RunStats) -> Measurement:
        op_stats = stats.operations.get(op)
        if op_stats is None or op_stats.total_ms is None:
            return Measurement(None, f"no samples: no {op} requests were made")
        return Measurement(float(getattr(op_stats.total_ms, stat)))

    return measure


_FIXED: dict[str, ThresholdSpec] = {
    spec.key: spec
    for spec in (
        ThresholdSpec("error_rate", "Error rate of requests (%)", "<", "%", _measure_error_rate),
        ThresholdSpec("max_5xx", "5xx responses", "<=", "", _measure_5xx),
        ThresholdSpec(
            "run_error_rate", "Client runs not ok (%)", "<", "%", _measure_run_error_rate
        ),
    )
}


#: The ``<op>`` of a latency key that means every request, of whatever operation.
ALL_REQUESTS = "all"


def _overall_measure(stat: str) -> Callable[[RunStats], Measurement]:
    def measure(stats: RunStats) -> Measurement:
        if stats.requests.total_ms is None:
            return Measurement(None, "no samples: no requests were made")
        return Measurement(float(getattr(stats.requests.total_ms, stat)))

    return measure


def known_keys_hint() -> str:
    """The accepted keys, for error messages and ``--help``."""
    fixed = ", ".join(_FIXED)
    ops = ", ".join((*OPERATIONS, ALL_REQUESTS))
    return f"{fixed}, p50|p90|p95|p99|max_<op>_ms with <op> one of {ops}"


def spec_for(key: str) -> ThresholdSpec:
    """The meaning of a key; ThresholdError for a key this version does not know."""
    if key in _FIXED:
        return _FIXED[key]
    match = _LATENCY_KEY.match(key)
    if match is None or match.group(2) not in (*OPERATIONS, ALL_REQUESTS):
        raise ThresholdError(f"unknown threshold {key!r} (known: {known_keys_hint()})")
    stat, op = match.groups()
    label = "Max" if stat == "max" else stat.upper()
    if op == ALL_REQUESTS:
        return ThresholdSpec(
            key, f"{label} latency of all requests (ms)", "<", "ms", _overall_measure(stat)
        )
    description = f"{label} latency of {op} requests (ms)"
    return ThresholdSpec(key, description, "<", "ms", _latency_measure(stat, op))


def check_limit(key: str, limit: float) -> float:
    """Validate a limit for a key; a limit that can never pass is refused, not evaluated."""
    spec = spec_for(key)
    if not math.isfinite(limit) or limit < 0:
        raise ThresholdError(f"threshold {key}={limit}: the limit must be a number >= 0")
    if spec.comparison == "<" and limit == 0:
        raise ThresholdError(
            f"threshold {key}=0 can never pass (measured < 0); use a small positive limit"
        )
    return float(limit)


def parse_override(text: str) -> tuple[str, float | None]:
    """``"KEY=VALUE"`` -> (key, limit); VALUE ``off``/``none`` -> (key, None) to switch it off."""
    key, sep, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not sep or not key:
        raise ThresholdError(f"threshold override {text!r} must look like KEY=VALUE")
    spec_for(key)
    if value.lower() in OFF_WORDS:
        return key, None
    try:
        limit = float(value)
    except ValueError:
        raise ThresholdError(f"threshold {key}: {value!r} is not a number (or 'off')") from None
    return key, check_limit(key, limit)


def merge(
    defaults: Mapping[str, float],
    *overrides: Mapping[str, float | None],
) -> dict[str, float]:
    """Later mappings win; a None value removes the key (switches the threshold off).

    Typically ``merge(DEFAULTS, profile_thresholds, cli_overrides)``. Every key and limit is
    validated, so a typo in a profile fails before the run, not after it.
    """
    merged: dict[str, float] = {}
    for layer in (defaults, *overrides):
        for key, limit in layer.items():
            if limit is None:
                spec_for(key)
                merged.pop(key, None)
                continue
            if isinstance(limit, bool) or not isinstance(limit, int | float):
                raise ThresholdError(f"threshold {key}: {limit!r} is not a number")
            merged[key] = check_limit(key, float(limit))
    return merged


def _passes(comparison: Comparison, measured: float, limit: float) -> bool:
    return measured < limit if comparison == "<" else measured <= limit


def evaluate(thresholds: Mapping[str, float], stats: RunStats) -> list[ThresholdResult]:
    """Check every threshold; a threshold with nothing to measure fails, with a note why."""
    results: list[ThresholdResult] = []
    for key, limit in thresholds.items():
        spec = spec_for(key)
        measurement = spec.measure(stats)
        passed = measurement.value is not None and _passes(
            spec.comparison, measurement.value, limit
        )
        results.append(
            ThresholdResult(
                key=key,
                description=spec.description,
                comparison=spec.comparison,
                limit=float(limit),
                unit=spec.unit,
                measured=measurement.value,
                passed=passed,
                note=measurement.note,
            )
        )
    return results
