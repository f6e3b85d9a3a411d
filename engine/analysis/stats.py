"""Statistics over a run's records: per operation, over all requests, and over client runs.

Percentiles are exact over every sample (no histogram buckets, no rounding before the report
renders them), so p99 can never exceed max: a known complaint about load testers that round or
bucket first.

What counts as an error (one definition, used by every number here and by the thresholds):

* an HTTP error: the upstream answered with status >= 400;
* a transport error: no complete upstream response: ``status`` null (refused, timeout, reset
  before the headers), or an ``error`` recorded after the status (reset mid-body).
  ``client_disconnected`` is the exception: the client went away, which says nothing about
  the index, so it is counted apart and never in an error rate.

A request no client run sent (``run_id`` null: a port scan, a malformed request the proxy
refused before reading a path, a connection it closed at its header timeout) says nothing about
the index either: it is left out of every number here and counted apart (``unattributed_count``,
and by status and error in ``unattributed``), so a scan during a run never raises its error rate.

An exchange shaped by an injected fault (``fault`` set, ``pipstorm run --fault``) is counted
apart as well: it says what the client does, not what the index does, so error counts,
``error_5xx_count`` and the transport errors hold genuine ones only, unless ``count_injected``
is asked for (``--count-injected``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import pairwise
from typing import Any

from pipstorm.engine.rundir.records import (
    CLIENT_DISCONNECTED,
    ClientRecord,
    RequestRecord,
    op_order,
)

TRANSPORT_BUCKET = "transport"  # status_code_counts key for requests without a status


class StatsError(ValueError):
    """Statistics were asked of input they are not defined for."""


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of ascending values, by linear interpolation.

    Same definition as numpy's default (``method="linear"``): position ``(n - 1) * q / 100``
    between the two neighbouring samples. The result is clamped to [min, max] so float
    rounding can never report a p99 above the maximum.
    """
    if not sorted_values:
        raise StatsError("percentile of no samples")
    if not 0.0 <= q <= 100.0:
        raise StatsError(f"percentile q must be within 0..100, got {q}")
    if any(b < a for a, b in pairwise(sorted_values)):
        raise StatsError("percentile needs values sorted in ascending order")
    position = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    lo_value, hi_value = sorted_values[low], sorted_values[high]
    value = lo_value + (position - low) * (hi_value - lo_value)
    return min(max(value, sorted_values[0]), sorted_values[-1])


@dataclass(frozen=True)
class Distribution:
    """Summary of one set of samples (milliseconds or seconds, as the field name says)."""

    count: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float


def distribution(values: Iterable[float]) -> Distribution | None:
    """Summarise samples; None when there are none (a report shows that as "-")."""
    ordered = sorted(values)
    if not ordered:
        return None
    return Distribution(
        count=len(ordered),
        min=ordered[0],
        mean=math.fsum(ordered) / len(ordered),
        p50=percentile(ordered, 50),
        p90=percentile(ordered, 90),
        p95=percentile(ordered, 95),
        p99=percentile(ordered, 99),
        max=ordered[-1],
    )


def rate_percent(part: int, whole: int) -> float | None:
    """``part`` as a percentage of ``whole``; None when there is nothing to divide by."""
    return None if whole == 0 else 100.0 * part / whole


def is_http_error(rec: RequestRecord) -> bool:
    """The upstream answered with an error status; an upload's 409 (the file exists) is the
    index refusing a duplicate, counted as a conflict, not as an error."""
    return rec.status is not None and rec.status >= 400 and not is_upload_conflict(rec)


def is_upload_conflict(rec: RequestRecord) -> bool:
    """An upload refused with 409 Conflict because the index already has the file."""
    return rec.op == "upload" and rec.status == 409


def transport_kind(rec: RequestRecord) -> str | None:
    """The kind of transport failure (``upstream_error: detail`` -> ``upstream_error``)."""
    if rec.error is None:
        # No status and no error recorded: still no response; name it rather than drop it.
        return "unknown" if rec.status is None else None
    return rec.error.split(":", 1)[0].strip() or "unknown"


def is_error(rec: RequestRecord) -> bool:
    """Counts against the error rate: an HTTP error or a transport error (not a disconnect)."""
    if is_http_error(rec):
        return True
    kind = transport_kind(rec)
    return kind is not None and kind != CLIENT_DISCONNECTED


def is_injected(rec: RequestRecord) -> bool:
    """The exchange was shaped by an injected fault rule (its id is in ``rec.fault``)."""
    return rec.fault is not None


def counts_as_error(rec: RequestRecord, *, count_injected: bool = False) -> bool:
    """An error for the error counts: genuine ones only unless ``count_injected``."""
    return is_error(rec) and (count_injected or not is_injected(rec))


def _status_counts(records: Iterable[RequestRecord]) -> dict[str, int]:
    counts = Counter(TRANSPORT_BUCKET if r.status is None else str(r.status) for r in records)
    # Numeric codes ascending, the transport bucket last: the order people read them in.
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] == TRANSPORT_BUCKET, kv[0])))


@dataclass(frozen=True)
class OperationStats:
    """One operation class (listing, download, ...)."""

    op: str
    count: int
    total_ms: Distribution | None
    ttfb_ms: Distribution | None
    bytes: int
    error_count: int
    error_rate: float | None  # percent
    status_code_counts: Mapping[str, int]
    injected_count: int = 0  # requests shaped by an injected fault


def operation_stats(
    op: str, records: Sequence[RequestRecord], *, count_injected: bool = False
) -> OperationStats:
    """Latency (all requests of the op, failed ones too: that is what clients waited) etc."""
    errors = sum(1 for r in records if counts_as_error(r, count_injected=count_injected))
    return OperationStats(
        op=op,
        count=len(records),
        total_ms=distribution(r.total_ms for r in records),
        # Only responses have a first byte; the proxy writes the elapsed time for the others.
        ttfb_ms=distribution(
            r.ttfb_ms for r in records if r.status is not None and r.ttfb_ms is not None
        ),
        bytes=sum(r.bytes for r in records),
        error_count=errors,
        error_rate=rate_percent(errors, len(records)),
        status_code_counts=_status_counts(records),
        injected_count=sum(1 for r in records if is_injected(r)),
    )


@dataclass(frozen=True)
class RequestStats:
    """All requests of a run together."""

    count: int
    error_count: int
    error_rate: float | None  # percent of requests; None when there were none
    error_5xx_count: int
    status_code_counts: Mapping[str, int]
    transport_errors: Mapping[str, int]  # by kind, client_disconnected included (not an error)
    client_disconnected_count: int
    unattributed_count: int  # run_id null: the proxy could not tell which run sent it
    repeated_count: int  # same run, method and path seen again: retries, mostly
    bytes: int
    first_ts: float | None
    last_end: float | None
    window_s: float | None
    throughput_rps: float | None
    total_ms: Distribution | None
    injected_count: int = 0  # requests shaped by an injected fault (pipstorm run --fault)
    injected_by_rule: Mapping[str, int] = field(default_factory=dict)
    injected_error_count: int = 0  # of those, the ones that would count as errors
    #: The unattributed requests by status and error kind ("400 bad_request", "404",
    #: "client_header_timeout"), left out of every other number here.
    unattributed: Mapping[str, int] = field(default_factory=dict)
    #: Client connections that carried the run's requests, and connections the proxy opened to
    #: the index for them (records' ``conn``/``upstream_new``); None for records without them.
    client_connections: int | None = None
    upstream_connections: int | None = None

    @property
    def latency_p95(self) -> float | None:
        """The seed's overall ``latency_p95`` (ms)."""
        return None if self.total_ms is None else self.total_ms.p95

    @property
    def latency_p99(self) -> float | None:
        """The seed's overall ``latency_p99`` (ms)."""
        return None if self.total_ms is None else self.total_ms.p99


def _stray_kind(rec: RequestRecord) -> str:
    """An unattributed request's bucket: its status, with its error kind when it has one."""
    kind = None if rec.error is None else rec.error.split(":", 1)[0].strip()
    if rec.status is None:
        return kind or TRANSPORT_BUCKET
    return f"{rec.status} {kind}" if kind else str(rec.status)


def request_stats(
    records: Sequence[RequestRecord], *, count_injected: bool = False
) -> RequestStats:
    """Overall numbers of the requests client runs sent (the unattributed counted apart);
    throughput is over the measured window, first arrival to last end."""
    strays = [r for r in records if r.run_id is None]
    records = [r for r in records if r.run_id is not None]
    errors = sum(1 for r in records if counts_as_error(r, count_injected=count_injected))
    judged = [r for r in records if count_injected or not is_injected(r)]
    transport = Counter(kind for r in judged if (kind := transport_kind(r)) is not None)
    disconnected = sum(1 for r in records if transport_kind(r) == CLIENT_DISCONNECTED)
    seen: Counter[tuple[str, str, str]] = Counter(
        (r.run_id, r.method, r.path) for r in records if r.run_id is not None
    )
    first_ts = min((r.ts for r in records), default=None)
    last_end = max((r.end for r in records), default=None)
    window = None if first_ts is None or last_end is None else last_end - first_ts
    return RequestStats(
        count=len(records),
        error_count=errors,
        error_rate=rate_percent(errors, len(records)),
        error_5xx_count=sum(1 for r in judged if r.status is not None and 500 <= r.status <= 599),
        status_code_counts=_status_counts(records),
        transport_errors=dict(sorted(transport.items())),
        client_disconnected_count=disconnected,
        unattributed_count=len(strays),
        repeated_count=sum(n - 1 for n in seen.values()),
        bytes=sum(r.bytes for r in records),
        first_ts=first_ts,
        last_end=last_end,
        window_s=window,
        throughput_rps=len(records) / window if window else None,
        total_ms=distribution(r.total_ms for r in records),
        injected_count=sum(1 for r in records if is_injected(r)),
        injected_by_rule=dict(sorted(Counter(r.fault for r in records if r.fault).items())),
        injected_error_count=sum(1 for r in records if is_injected(r) and is_error(r)),
        unattributed=dict(Counter(_stray_kind(r) for r in strays).most_common()),
        client_connections=len(conns) if (conns := {r.conn for r in records} - {None}) else None,
        upstream_connections=None
        if all(r.upstream_new is None for r in records)
        else sum(1 for r in records if r.upstream_new),
    )


@dataclass(frozen=True)
class ClientGroupStats:
    """Client runs of one kind (or of all kinds).

    ``client_s`` is ended - launched (the client process alone: the run's wall time; its venv
    is made ahead of the intended start, so ended - started would mostly measure waiting),
    ``from_intended_s`` ended - intended: what a user who wanted the job at its scheduled time
    waited, so a late start is not hidden (coordinated omission). ``cpu_s`` is the CPU the
    client process tree used on the generator.
    """

    count: int
    by_outcome: Mapping[str, int]
    failed_count: int
    error_rate: float | None  # percent of runs not ok, interrupted runs left out
    client_s: Distribution | None
    cpu_s: Distribution | None
    from_intended_s: Distribution | None
    lag_s: Distribution | None


# An interrupted run was stopped by us (Ctrl-C, end of a cut-short run), so it says nothing
# about the index: it is neither a success nor a failure in the run error rate.
_NOT_JUDGED = frozenset({"interrupted"})
# A conflict (an upload refused because the index has the file: pypiserver's 409) is the index
# answering correctly: counted apart in ``by_outcome``, never as a failure.
NOT_FAILED = frozenset({"ok", "conflict"})


def client_group_stats(records: Sequence[ClientRecord]) -> ClientGroupStats:
    """Outcomes, error rate and time distributions of a group of client runs."""
    outcomes = Counter(r.outcome for r in records)
    judged = [r for r in records if r.outcome not in _NOT_JUDGED]
    failed = sum(1 for r in judged if r.outcome not in NOT_FAILED)
    return ClientGroupStats(
        count=len(records),
        by_outcome=dict(sorted(outcomes.items())),
        failed_count=failed,
        error_rate=rate_percent(failed, len(judged)),
        client_s=distribution(r.ended - r.launched for r in records if r.launched is not None),
        cpu_s=distribution(r.cpu_s for r in records if r.cpu_s is not None),
        from_intended_s=distribution(r.ended - r.intended for r in records),
        lag_s=distribution(r.lag_s for r in records),
    )


@dataclass(frozen=True)
class ClientStats:
    """All client runs, and the same numbers per client kind (pip, poetry, ...)."""

    all: ClientGroupStats
    by_client: Mapping[str, ClientGroupStats]


def client_stats(records: Sequence[ClientRecord]) -> ClientStats:
    """Client-run statistics overall and per client kind."""
    kinds = sorted({r.client for r in records})
    return ClientStats(
        all=client_group_stats(records),
        by_client={k: client_group_stats([r for r in records if r.client == k]) for k in kinds},
    )


@dataclass(frozen=True)
class RunStats:
    """Everything the thresholds and the reports need, as one tree."""

    requests: RequestStats
    operations: Mapping[str, OperationStats]  # only operations that had requests
    clients: ClientStats

    def op_count(self, op: str) -> int:
        """Requests of one operation (0 when none were seen)."""
        stats = self.operations.get(op)
        return 0 if stats is None else stats.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready nested dicts (None stays null)."""
        requests = asdict(self.requests)
        requests["latency_p95"] = self.requests.latency_p95
        requests["latency_p99"] = self.requests.latency_p99
        return {
            "requests": requests,
            "operations": {op: asdict(s) for op, s in self.operations.items()},
            "clients": asdict(self.clients),
        }


def compute_stats(
    requests: Sequence[RequestRecord],
    clients: Sequence[ClientRecord] = (),
    *,
    count_injected: bool = False,
) -> RunStats:
    """The statistics of a run from its records (in any order); injected faults count as
    errors only with ``count_injected``."""
    by_op: dict[str, list[RequestRecord]] = {}
    for rec in requests:
        if rec.run_id is None:
            continue  # counted apart in request_stats, in no operation
        by_op.setdefault(rec.op, []).append(rec)
    return RunStats(
        requests=request_stats(requests, count_injected=count_injected),
        operations={
            op: operation_stats(op, by_op[op], count_injected=count_injected)
            for op in sorted(by_op, key=op_order)
        },
        clients=client_stats(clients),
    )
