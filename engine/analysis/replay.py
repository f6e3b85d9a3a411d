"""The replay against its original: per minute, per operation, and the runs' onset.

Both sides are put on the log's clock: a replay request ``t`` seconds after the run's start
happened, in log time, at ``t * speed`` after the log's origin; so minute 3 of the table is the
log's fourth minute on both sides, whatever ``--speed`` was. The log side is what the index's
access log showed (status, and latency where the log has it: ALB ``target_processing_time``,
nginx ``$request_time``); the replay side is what the proxy recorded of the real clients
(``total_ms``: the index's answer, whole). Onset is how late each run's first request reached
the proxy after its intended instant (the log's instant divided by the speed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipstorm.engine.analysis.stats import Distribution, distribution
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.records import OPERATIONS

#: The status column of a request that got no answer.
NO_ANSWER = "none"
MINUTE_S = 60.0


@dataclass(frozen=True)
class LogSample:
    """One request of the original log, reduced to what is compared."""

    offset_s: float  # log seconds after the replay's origin
    op: str
    status: int | None
    latency_ms: float | None = None


@dataclass(frozen=True)
class MinuteRow:
    minute: int
    log_requests: int
    replay_requests: int
    log_errors: int  # 5xx or no answer
    replay_errors: int


@dataclass(frozen=True)
class OperationRow:
    op: str
    log_requests: int
    replay_requests: int
    log_status: dict[str, int]
    replay_status: dict[str, int]
    log_latency_ms: Distribution | None
    replay_latency_ms: Distribution | None


@dataclass(frozen=True)
class ReplayComparison:
    """What ``replay.json`` holds (schema 1; fields only ever added)."""

    speed: float
    log_runs: int
    replay_runs: int
    replay_outcomes: dict[str, int]
    minutes: list[MinuteRow]
    operations: list[OperationRow]
    onset_s: Distribution | None  # replay seconds from intended instant to first request
    runs_without_requests: int
    facts: dict[str, Any] = field(default_factory=dict)  # what the log held beyond the runs

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``replay.json``)."""
        return {"schema": 1, **asdict(self)}


def _status_of(status: int | None) -> str:
    return NO_ANSWER if status is None else str(status)


def _is_error(status: int | None) -> bool:
    return status is None or status >= 500


def compare_replay(
    log: Sequence[LogSample],
    data: RunData,
    *,
    speed: float,
    log_runs: int,
    facts: dict[str, Any] | None = None,
) -> ReplayComparison:
    """The replay in ``data`` set against the ``log`` it replayed."""
    t0 = data.meta.started or 0.0
    replayed = [
        LogSample((r.ts - t0) * speed, r.op, r.status, r.total_ms)
        for r in data.requests
        if r.run_id is not None
    ]
    first_request: dict[str, float] = {}
    for record in data.requests:
        if record.run_id is not None:
            first_request[record.run_id] = min(
                first_request.get(record.run_id, record.ts), record.ts
            )
    onsets = [
        first_request[c.run_id] - c.intended for c in data.clients if c.run_id in first_request
    ]
    return ReplayComparison(
        speed=speed,
        log_runs=log_runs,
        replay_runs=len(data.clients),
        replay_outcomes=dict(Counter(c.outcome for c in data.clients)),
        minutes=_minutes(log, replayed),
        operations=_operations(log, replayed),
        onset_s=distribution(onsets),
        runs_without_requests=sum(1 for c in data.clients if c.run_id not in first_request),
        facts=dict(facts or {}),
    )


def _minutes(log: Sequence[LogSample], replayed: Sequence[LogSample]) -> list[MinuteRow]:
    def by_minute(samples: Iterable[LogSample]) -> tuple[Counter[int], Counter[int]]:
        counts: Counter[int] = Counter()
        errors: Counter[int] = Counter()
        for sample in samples:
            minute = int(max(0.0, sample.offset_s) // MINUTE_S)
            counts[minute] += 1
            errors[minute] += _is_error(sample.status)
        return counts, errors

    log_counts, log_errors = by_minute(log)
    rep_counts, rep_errors = by_minute(replayed)
    last = max([*log_counts, *rep_counts], default=-1)
    return [
        MinuteRow(m, log_counts[m], rep_counts[m], log_errors[m], rep_errors[m])
        for m in range(last + 1)
    ]


def _operations(log: Sequence[LogSample], replayed: Sequence[LogSample]) -> list[OperationRow]:
    seen = {s.op for s in log} | {s.op for s in replayed}
    ordered = [op for op in OPERATIONS if op in seen] + sorted(seen - set(OPERATIONS))
    rows = []
    for op in ordered:
        mine = [s for s in log if s.op == op]
        theirs = [s for s in replayed if s.op == op]
        rows.append(
            OperationRow(
                op=op,
                log_requests=len(mine),
                replay_requests=len(theirs),
                log_status=_statuses(mine),
                replay_status=_statuses(theirs),
                log_latency_ms=distribution(s.latency_ms for s in mine if s.latency_ms is not None),
                replay_latency_ms=distribution(
                    s.latency_ms for s in theirs if s.latency_ms is not None
                ),
            )
        )
    return rows


def _statuses(samples: Iterable[LogSample]) -> dict[str, int]:
    counts = Counter(_status_of(s.status) for s in samples)
    return dict(sorted(counts.items(), key=lambda kv: (kv[0] == NO_ANSWER, kv[0])))
