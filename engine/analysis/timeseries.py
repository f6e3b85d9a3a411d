"""A run's streams as time series for the charts: requests bucketed in time, host samples.

A 24-minute run has thousands of requests; plotting them one by one makes slow, unreadable
charts. Requests are grouped into at most :data:`MAX_BUCKETS` buckets of a round width (1 s,
2 s, 5 s, ...) and each bucket gives a rate, latency percentiles and status counts. The
percentiles use :func:`pipstorm.engine.analysis.stats.percentile`, the report's own definition, so a
chart and a table never disagree on what "p95" means.

Times on every chart are seconds after the run's offset 0 (``run.json``'s ``started``), the
clock ``burst_ticks_s`` is written in, so burst ticks can be drawn on the same axis.

``host.jsonl`` rows come parsed from ``pipstorm.engine.rundir.host``; nested objects are flattened
to ``a_b`` names here, so an older or newer sampler never stops a report.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipstorm.engine.analysis.stats import TRANSPORT_BUCKET, percentile
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord, op_order

#: Round bucket widths, smallest first; the first that gives <= MAX_BUCKETS buckets is used.
BUCKET_WIDTHS_S: tuple[float, ...] = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
MAX_BUCKETS = 200
PERCENTILES: tuple[tuple[str, float], ...] = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0))
#: Status codes drawn one by one; the rarer ones are summed as "other".
MAX_STATUS_SERIES = 8
OTHER_STATUS = "other"


def bucket_width(span_s: float) -> float:
    """The smallest round width that covers ``span_s`` seconds in at most MAX_BUCKETS buckets."""
    for width in BUCKET_WIDTHS_S:
        if span_s / width <= MAX_BUCKETS:
            return width
    return math.ceil(span_s / MAX_BUCKETS)


def run_origin(
    run: RunMeta, requests: Sequence[RequestRecord], clients: Sequence[ClientRecord]
) -> float | None:
    """Epoch seconds of offset 0: run.json's ``started``, else the first thing recorded."""
    if run.started is not None:
        return run.started
    events = [r.ts for r in requests] + [c.intended for c in clients]
    return min(events) if events else None


@dataclass(frozen=True)
class RequestSeries:
    """Requests per time bucket. Index i covers offsets [starts[i], starts[i] + width_s)."""

    width_s: float
    starts: tuple[float, ...]
    rate_by_op: Mapping[str, tuple[float, ...]]  # requests/s that arrived in the bucket
    # op -> "p50"/"p95"/"p99" -> ms per bucket; None where the bucket had no request of the op
    latency_by_op: Mapping[str, Mapping[str, tuple[float | None, ...]]]
    status_counts: Mapping[str, tuple[int, ...]]  # "200", "404", "transport", "other" ...
    samples_by_op: Mapping[str, tuple[float, ...]]  # every total_ms, ascending, per op

    @property
    def empty(self) -> bool:
        """No request was recorded."""
        return not self.samples_by_op


def _status_key(rec: RequestRecord) -> str:
    return TRANSPORT_BUCKET if rec.status is None else str(rec.status)


def request_series(
    requests: Sequence[RequestRecord], origin: float, span_s: float
) -> RequestSeries:
    """Bucket ``requests`` by arrival time (offsets from ``origin``) over ``[0, span_s]``.

    Requests before offset 0 (clock steps) fall in the first bucket and requests after the
    span extend it, so nothing recorded is dropped from a chart.
    """
    last = max((r.ts - origin for r in requests), default=0.0)
    span = max(span_s, last, 1.0)
    width = bucket_width(span)
    n = max(1, math.ceil(span / width))
    if (last - 0.0) / width >= n:  # a request exactly at the end of the span
        n += 1
    ops = sorted({r.op for r in requests}, key=op_order)
    per_bucket: dict[str, list[list[float]]] = {op: [[] for _ in range(n)] for op in ops}
    status = Counter(_status_key(r) for r in requests)
    shown = [code for code, _ in status.most_common(MAX_STATUS_SERIES)]
    if len(status) > MAX_STATUS_SERIES:
        shown = shown[: MAX_STATUS_SERIES - 1]
    status_buckets: dict[str, list[int]] = {code: [0] * n for code in shown}
    for rec in requests:
        i = min(n - 1, max(0, int((rec.ts - origin) // width)))
        per_bucket[rec.op][i].append(rec.total_ms)
        code = _status_key(rec)
        key = code if code in status_buckets else OTHER_STATUS
        status_buckets.setdefault(key, [0] * n)[i] += 1
    latency: dict[str, dict[str, tuple[float | None, ...]]] = {}
    for op, buckets in per_bucket.items():
        ordered = [sorted(b) for b in buckets]
        latency[op] = {
            name: tuple(percentile(b, q) if b else None for b in ordered) for name, q in PERCENTILES
        }
    return RequestSeries(
        width_s=width,
        starts=tuple(i * width for i in range(n)),
        rate_by_op={op: tuple(len(b) / width for b in per_bucket[op]) for op in ops},
        latency_by_op=latency,
        status_counts={
            code: tuple(counts)
            for code, counts in sorted(status_buckets.items(), key=lambda kv: _status_order(kv[0]))
        },
        samples_by_op={op: tuple(sorted(r.total_ms for r in requests if r.op == op)) for op in ops},
    )


def _status_order(code: str) -> tuple[int, str]:
    if code.isdigit():
        return (0, code)
    return (1 if code == TRANSPORT_BUCKET else 2, code)


@dataclass(frozen=True)
class HostSeries:
    """Host samples as named series over offsets (seconds after the run's offset 0).

    ``cpu_percent`` and ``memory_mb`` are keyed by who was measured (``host``, ``proxy``,
    ``target``, ``clients`` ...); ``memory_percent`` holds percentages of the host's memory.
    A value is None where a sample did not carry that series. When the samples say how many
    cores the host has (``host_cpu_per_core``), ``cores`` is set and every CPU figure is a
    percentage of the whole machine, so the parts can be read against the host's total; else
    a process's figure is as the sampler wrote it (100 per busy core, as ``top``).
    """

    offsets: tuple[float, ...]
    cores: int | None
    cpu_percent: Mapping[str, tuple[float | None, ...]]
    memory_mb: Mapping[str, tuple[float | None, ...]]
    memory_percent: Mapping[str, tuple[float | None, ...]]

    @property
    def empty(self) -> bool:
        """Nothing usable was sampled."""
        return not self.offsets or not (self.cpu_percent or self.memory_mb or self.memory_percent)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of nested objects as ``outer_inner`` names (booleans are not numbers)."""
    flat: dict[str, float] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}_"))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            flat[name] = float(value)
    return flat


# Name endings the sampler may use, and the factor to megabytes.
_MEMORY_UNITS: tuple[tuple[str, float], ...] = (
    ("_rss_bytes", 1e-6),
    ("_rss_kb", 1e-3),
    ("_rss_mb", 1.0),
    ("_rss", 1e-6),
)
_CPU_ENDINGS = ("_cpu_percent", "_cpu_pct", "_cpu")
_MEM_PERCENT_ENDINGS = ("_mem_percent", "_memory_percent", "_mem_pct")


def _classify(name: str) -> tuple[str, str, float] | None:
    """(kind, who, factor) for a flattened key, or None when it is not a series we chart."""
    for ending in _CPU_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return ("cpu", name[: -len(ending)], 1.0)
    for ending in _MEM_PERCENT_ENDINGS:
        if name.endswith(ending) and len(name) > len(ending):
            return ("mem_percent", name[: -len(ending)], 1.0)
    for ending, factor in _MEMORY_UNITS:
        if name.endswith(ending) and len(name) > len(ending):
            return ("mem_mb", name[: -len(ending)], factor)
    return None


def host_series(rows: Iterable[Mapping[str, Any]], origin: float) -> HostSeries:
    """Host samples (``host.jsonl`` objects) as series; rows without a numeric ``ts`` are
    skipped, unknown keys ignored."""
    samples: list[tuple[float, dict[str, float]]] = []
    rows_seen: list[Mapping[str, Any]] = []
    for row in rows:
        ts = row.get("ts")
        if isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            continue
        rows_seen.append(row)
        samples.append((float(ts) - origin, _flatten({k: v for k, v in row.items() if k != "ts"})))
    samples.sort(key=lambda s: s[0])
    cores = next(
        (
            len(per_core)
            for row in rows_seen
            if isinstance(per_core := row.get("host_cpu_per_core"), list) and per_core
        ),
        None,
    )
    # kind -> who -> (the flattened key carrying it, factor to the chart's unit); the first key
    # seen for a (kind, who) wins, so two units of one figure are never mixed in one line.
    found: dict[str, dict[str, tuple[str, float]]] = {"cpu": {}, "mem_percent": {}, "mem_mb": {}}
    for _, flat in samples:
        for name in flat:
            kind = _classify(name)
            if kind is not None:
                found[kind[0]].setdefault(kind[1], (name, kind[2]))

    def series(kind: str) -> dict[str, tuple[float | None, ...]]:
        return {
            who: tuple(None if (v := flat.get(name)) is None else v * factor for _, flat in samples)
            for who, (name, factor) in found[kind].items()
        }

    cpu = series("cpu")
    if cores:  # a process's 100 per busy core -> a share of the whole machine, like the host's
        cpu = {
            who: values if who.startswith("host") else tuple(_div(v, cores) for v in values)
            for who, values in cpu.items()
        }
    return HostSeries(
        offsets=tuple(s[0] for s in samples),
        cores=cores,
        cpu_percent=cpu,
        memory_mb=series("mem_mb"),
        memory_percent=series("mem_percent"),
    )


def _div(value: float | None, by: int) -> float | None:
    return None if value is None else value / by
