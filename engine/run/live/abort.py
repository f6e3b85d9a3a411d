"""``--abort-on-fail``: stop a run the moment one of its thresholds can no longer pass.

A CI job that gates a release on a 24-minute profile should not wait 20 minutes for a verdict
that was sealed in minute 2. The watch reads the run's own streams as they grow (the results
folder stays the single source of truth) and raises :class:`AbortRun` from the dispatch loop's
guard (called twice a second), which stops the run as Ctrl-C does: clients, proxy and target
stopped, the report written for the part that ran, ``run.json``'s ``aborted`` saying when and
why, and the verdict a failure (exit 1).

A threshold "can no longer pass" when:

* ``max_5xx``: more 5xx responses than the limit have been counted already;
* ``error_rate``: the errors so far are at least the limit's share of the requests the whole
  plan is expected to make (requests per finished client run so far x runs planned; an estimate,
  since retries make the total unknowable, and the larger the more runs are still in flight);
* ``run_error_rate``: the failed client runs so far are at least the limit's share of every
  planned run (exact: no run can be added);
* the embedded target died (``pipstorm.engine.run.target.watch`` records it in ``run.json``).

Injected faults count as the report counts them (``--count-injected``). Latency thresholds are
never grounds for aborting: a percentile can still come back under its limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.stats import counts_as_error
from pipstorm.engine.rundir.jsonl import JsonlTail, RecordError
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import RequestRecord, request_from_json


class AbortRun(Exception):
    """A threshold can no longer pass; the message says which and why."""


@dataclass
class AbortWatch:
    """Follows ``requests.jsonl`` and the run's state; :meth:`check` raises :class:`AbortRun`."""

    requests_path: Path
    meta: RunMeta
    runs_finished: Callable[[], tuple[int, int]]  # (finished, failed) client runs so far
    limits: Mapping[str, float] = field(default_factory=dict)
    requests: int = 0
    errors: int = 0
    errors_5xx: int = 0
    _tail: JsonlTail = field(init=False)

    def __post_init__(self) -> None:
        self._tail = JsonlTail(self.requests_path)
        if not self.limits:
            self.limits = dict(self.meta.thresholds or {})

    def check(self) -> None:
        """Raise :class:`AbortRun` if the run can no longer pass; else read on and return."""
        reason = self.reason()
        if reason is not None:
            raise AbortRun(reason)

    def reason(self) -> str | None:
        """Why the run can no longer pass, or None."""
        self._read()
        died = self.meta.target.get("died")
        if isinstance(died, dict):
            return f"the target died (exit code {died.get('exit_code')})"
        limit = self.limits.get("max_5xx")
        if limit is not None and self.errors_5xx > limit:
            return f"max_5xx: {self.errors_5xx} 5xx responses so far, the limit is {limit:g}"
        finished, failed = self.runs_finished()
        planned = self.meta.runs_planned
        limit = self.limits.get("error_rate")
        if limit is not None and finished > 0 and self.errors > 0 and planned > 0:
            expected = max(self.requests, self.requests * planned / finished)
            if self.errors >= limit / 100 * expected:
                return (
                    f"error_rate: {self.errors} failed requests so far, the whole run's budget "
                    f"is under {limit / 100 * expected:.0f} ({limit:g} % of the ~{expected:.0f} "
                    "requests the plan is expected to make)"
                )
        limit = self.limits.get("run_error_rate")
        if limit is not None and failed > 0 and planned > 0 and failed >= limit / 100 * planned:
            return (
                f"run_error_rate: {failed} failed client runs so far, the whole run's budget "
                f"is under {limit / 100 * planned:.1f} ({limit:g} % of {planned} planned runs)"
            )
        return None

    def _read(self) -> None:
        for line in self._tail.poll():
            try:
                record = request_from_json(line)
            except (RecordError, TypeError, ValueError):
                continue
            self._count(record)

    def _count(self, record: RequestRecord) -> None:
        judged = self.meta.count_injected or record.fault is None
        self.requests += 1
        self.errors += counts_as_error(record, count_injected=self.meta.count_injected)
        status = record.status
        self.errors_5xx += judged and status is not None and 500 <= status <= 599


def aborted_record(reason: str, meta: RunMeta) -> dict[str, Any]:
    """``run.json``'s ``aborted``: why, and when (epoch s and seconds into the run)."""
    now = time.time()
    at_s = None if meta.started is None else round(now - meta.started, 3)
    return {"reason": reason, "ts": now, "at_s": at_s}
