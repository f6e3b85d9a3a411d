"""A run directory's streams -> statistics -> thresholds -> ``report.json`` and ``report.md``.

The report is rebuilt from the raw streams every time, so ``pipstorm report DIR`` gives the same
answer as the end of ``pipstorm run``, works on an interrupted or crashed run (marked as such),
and can re-judge an old run against other thresholds.

``report.json`` keeps the seed's top-level names (``error_rate``, ``latency_p95``,
``latency_p99``, ``status_code_counts``, ``error_5xx_count``, ``operations``) so the seed's
``jq '.latency_p95'`` comparisons keep working; it is versioned (``"schema": 1``) and written
atomically, like ``report.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.client_usage import ClientKindUsage, client_kind_usage
from pipstorm.engine.analysis.generator.onset import Onset, burst_onset
from pipstorm.engine.analysis.generator.saturation import GeneratorCheck
from pipstorm.engine.analysis.generator.shards import ShardRow, generator_check, shard_rows
from pipstorm.engine.analysis.stats import NOT_FAILED, RunStats, compute_stats
from pipstorm.engine.analysis.target.failure import TargetCause, target_causes, target_failed
from pipstorm.engine.analysis.target.server_series import cloudwatch_section, missing_note
from pipstorm.engine.analysis.target.sizing import (
    Diagnosis,
    TargetSizing,
    peak_in_flight,
    target_sizing,
)
from pipstorm.engine.analysis.target.sizing import diagnose as diagnose_sizing
from pipstorm.engine.analysis.thresholds import (
    DEFAULTS,
    ThresholdError,
    ThresholdResult,
    evaluate,
    merge,
)
from pipstorm.engine.analysis.trace import build_trace, diagnose, failure_reasons, fault_kinds
from pipstorm.engine.analysis.verdict import (
    STARVATION_ERRORS,
    Decision,
    Evidence,
    Verdict,
    decide,
)
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import RUN_FILE
from pipstorm.engine.rundir.jsonl import RecordError
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import ClientRecord, RequestRecord

SCHEMA = 1
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
# A run that started this much later than planned means the load was lower than asked.
LATE_START_NOTE_S = 1.0
# Failed client runs listed with their reason in report.md (all are in clients.jsonl).
FAILED_RUNS_SHOWN = 10


class ReportError(RecordError):
    """A run directory cannot be reported on; the message names the file and the problem."""


@dataclass(frozen=True)
class Report:
    """Everything known about one run, judged against its thresholds."""

    data: RunData
    stats: RunStats
    thresholds: tuple[ThresholdResult, ...]
    notes: tuple[str, ...]
    failed_runs: tuple[ClientRecord, ...]  # not-ok client runs, first FAILED_RUNS_SHOWN
    duration_s: float | None  # run.json's end - start, or up to the last recorded event
    generated_at: str
    # Was the load generator the bottleneck? (host.jsonl + client lag;
    # pipstorm.engine.analysis.generator.saturation)
    generator: GeneratorCheck | None = None
    # run id -> why it failed, from its requests (pipstorm.engine.analysis.trace names injected
    # faults)
    failure_reasons: Mapping[str, str] = field(default_factory=dict)
    # Per client kind: versions, user agents, requests per run
    # (pipstorm.engine.analysis.client_usage)
    client_kinds: tuple[ClientKindUsage, ...] = ()
    # How late runs reached the index, per burst tick and for the base ticks
    # (pipstorm.engine.analysis.generator.onset)
    onset: Onset | None = None
    # The embedded target's sizing and cgroup counters (--sizing), and why it failed
    # (pipstorm.engine.analysis.target.sizing)
    target: TargetSizing | None = None
    diagnosis: tuple[Diagnosis, ...] = ()
    # A run spread over generators: one row per shard (pipstorm.engine.analysis.generator.shards);
    # () otherwise
    shards: tuple[ShardRow, ...] = ()
    # How the target failed: died, stalled, refused, reset, timed out, 5xx
    # (pipstorm.engine.analysis.target.failure); what the verdict names when it fails
    target_failure: tuple[TargetCause, ...] = ()
    # Every failed run's reason with the details folded away -> how many runs
    failed_run_causes: Mapping[str, int] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.data.run_dir

    @property
    def run(self) -> RunMeta:
        """``run.json`` as read."""
        return self.data.meta

    @property
    def skipped_lines(self) -> Mapping[str, int]:
        return self.data.skipped

    @property
    def incomplete(self) -> bool:
        """run.json has no end time: crashed, killed, or still going."""
        return self.run.ended is None

    @property
    def interrupted(self) -> bool:
        """The run was stopped early on purpose (Ctrl-C, SIGTERM)."""
        return self.run.interrupted

    @cached_property
    def decision(self) -> Decision:
        """The verdict and its reason, from the one rule (``pipstorm.engine.analysis.verdict``):
        the thresholds, the generator check and the target's failure."""
        generator = self.generator
        requests = self.stats.requests
        return decide(
            Evidence(
                thresholds=self.thresholds,
                generator_reasons=generator.reasons
                if generator is not None and generator.saturated
                else (),
                target_causes=tuple(c.kind for c in self.target_failure),
                requests=requests.count,
                errors=requests.error_count,
                starvation_errors=sum(
                    n for k, n in requests.transport_errors.items() if k in STARVATION_ERRORS
                ),
                allow_generator_bound=self.run.allow_generator_bound,
                target_failed=None if self.target_failed is None else self.target_failed.text,
                aborted=self.aborted,
            )
        )

    @property
    def target_failed(self) -> TargetCause | None:
        """The target's failure that fails the run whatever the thresholds (it died, or
        answered nothing for longer than the run timeout); None when it did not."""
        return target_failed(self.target_failure)

    @property
    def aborted(self) -> str | None:
        """Why ``--abort-on-fail`` stopped the run (None: it was not aborted)."""
        aborted = self.run.aborted
        return None if aborted is None else str(aborted.get("reason") or "aborted")

    @property
    def verdict(self) -> Verdict:
        """``pass`` when every threshold passed (also when none were set), ``fail``, or
        ``inconclusive`` when the generator was the bottleneck (see :attr:`decision`)."""
        return self.decision.verdict

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this report: 0 pass, 1 fail, 3 inconclusive."""
        return self.decision.exit_code

    @property
    def profile_name(self) -> str:
        """The profile's name as run.json recorded it ("?" when absent)."""
        return self.run.profile_name

    def failure_reason(self, run: ClientRecord) -> str:
        """Why a failed run failed, as every rendering shows it: the diagnosis from its
        requests (injected faults named), else the client's own error."""
        return self.failure_reasons.get(run.run_id) or run.error or run.outcome

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` document."""
        stats = self.stats.to_dict()
        requests = self.stats.requests
        return {
            "schema": SCHEMA,
            "generated_at": self.generated_at,
            "verdict": self.verdict,
            "decision": self.decision.to_dict(),
            "profile": self.profile_name,
            "started": self.run.started,
            "ended": self.run.ended,
            "duration_s": self.duration_s,
            "incomplete": self.incomplete,
            "interrupted": self.interrupted,
            "aborted": self.run.aborted,
            "error_rate": requests.error_rate,
            "latency_p95": requests.latency_p95,
            "latency_p99": requests.latency_p99,
            "status_code_counts": dict(requests.status_code_counts),
            "error_5xx_count": requests.error_5xx_count,
            "operations": stats["operations"],
            "requests": stats["requests"],
            "thresholds": [t.to_dict() for t in self.thresholds],
            "clients": stats["clients"],
            "failed_runs": [
                {**asdict(r), "diagnosis": self.failure_reasons.get(r.run_id)}
                for r in self.failed_runs
            ],
            "client_kinds": [u.to_dict() for u in self.client_kinds],
            "skipped_lines": dict(self.skipped_lines),
            "notes": list(self.notes),
            "generator": None if self.generator is None else self.generator.to_dict(),
            "onset": None if self.onset is None else self.onset.to_dict(),
            "cloudwatch": cloudwatch_section(self.data.cloudwatch),
            "target": None
            if self.target is None
            else {**self.target.to_dict(), "diagnosis": [d.to_dict() for d in self.diagnosis]},
            "shards": [s.to_dict() for s in self.shards] or None,
            "target_failure": [c.to_dict() for c in self.target_failure],
            "target_failed": None if self.target_failed is None else self.target_failed.to_dict(),
            "failed_run_causes": dict(self.failed_run_causes),
            "run": self.run.to_json(),
            "run_dir": str(self.run_dir),
        }


def _duration(run: RunMeta, stats: RunStats, clients: Sequence[ClientRecord]) -> float | None:
    if run.started is None:
        return None
    ended = run.ended
    if ended is None:  # crashed: the last thing recorded is the best end we have
        events = [run.started, *(c.ended for c in clients)]
        if stats.requests.last_end is not None:
            events.append(stats.requests.last_end)
        ended = max(events)
    return ended - run.started


def _limits(run: RunMeta, thresholds: Mapping[str, float] | None, where: Path) -> dict[str, float]:
    """The thresholds to judge by: given ones, else run.json's, else the defaults."""
    try:
        if thresholds is not None:
            return merge(thresholds)
        return merge(DEFAULTS if run.thresholds is None else run.thresholds)
    except ThresholdError as exc:
        raise ReportError(f"{where}: {exc}" if thresholds is None else str(exc)) from None


def _notes(
    run: RunMeta,
    stats: RunStats,
    results: tuple[ThresholdResult, ...],
    skipped: Mapping[str, int],
    missing: Sequence[str],
) -> list[str]:
    notes: list[str] = [f"WARNING: {w}." for w in run.warnings]
    notes.extend(_aborted_note(run))
    if run.interrupted:
        notes.append("The run was interrupted: the numbers cover only the part that ran.")
    elif run.ended is None:
        notes.append(
            "run.json has no end time: the run crashed or is still going; "
            "this report covers what was recorded."
        )
    notes.extend(f"{name} is missing: read as empty." for name in missing)
    notes.extend(
        f"Skipped {n} malformed line(s) in {name} (a crash cuts the last line short)."
        for name, n in skipped.items()
        if n
    )
    notes.extend(
        f"Threshold {r.key}: {r.note}; it fails." for r in results if r.measured is None and r.note
    )
    req = stats.requests
    if req.unattributed_count:
        kinds = ", ".join(f"{k} {n}" for k, n in req.unattributed.items())
        notes.append(
            f"{req.unattributed_count} request(s) could not be attributed to a client run "
            f"(run_id null): counted apart, in no error rate ({kinds})."
        )
    errors = {k: n for k, n in req.transport_errors.items() if k != "client_disconnected"}
    if errors:
        detail = ", ".join(f"{k} {n}" for k, n in errors.items())
        notes.append(
            f"{sum(errors.values())} request(s) got no complete upstream response ({detail})."
        )
    if req.injected_count:
        rules = ", ".join(f"{k} {n}" for k, n in req.injected_by_rule.items())
        counted = (
            "they count as errors (--count-injected)"
            if run.count_injected
            else "they are not counted as errors (--count-injected counts them)"
        )
        notes.append(
            f"{req.injected_count} request(s) met an injected fault ({rules}), "
            f"{req.injected_error_count} of them failed; {counted}."
        )
    if req.client_disconnected_count:
        notes.append(
            f"{req.client_disconnected_count} request(s) ended with the client disconnecting; "
            "they are not counted as errors."
        )
    if req.repeated_count:
        notes.append(
            f"{req.repeated_count} request(s) repeated an earlier request of the same client "
            "run (same method and path): retries, mostly."
        )
    for shard in run.shards:
        if shard.status != "ok":
            why = f": {shard.error}" if shard.error else ""
            notes.append(
                f"Shard {shard.index} ({len(shard.runs)} planned runs) was {shard.status}{why}; "
                "its runs were not replayed."
            )
    runs = stats.clients.all
    if runs.count < run.runs_planned:
        notes.append(f"{runs.count} of {run.runs_planned} planned client runs were recorded.")
    if runs.by_outcome.get("interrupted"):
        notes.append(
            f"{runs.by_outcome['interrupted']} client run(s) were interrupted; "
            "they are left out of the run error rate."
        )
    if runs.lag_s is not None and runs.lag_s.max > LATE_START_NOTE_S:
        notes.append(
            f"Some client runs started late (max lag {runs.lag_s.max:.1f} s, "
            f"p95 {runs.lag_s.p95:.1f} s): the load was lower than planned at those times."
        )
    return notes


def _aborted_note(run: RunMeta) -> list[str]:
    """Why ``--abort-on-fail`` stopped the run, and when (none for a run played out)."""
    if run.aborted is None:
        return []
    at = run.aborted.get("at_s")
    when = f" at t={at:.0f} s" if isinstance(at, int | float) else ""
    return [
        f"The run was aborted{when} (--abort-on-fail): {run.aborted.get('reason')}; "
        "the numbers cover only the part that ran."
    ]


def _aws_notes(data: RunData) -> list[str]:
    """The one line naming missing CloudWatch series and why (runs against an AWS stack)."""
    if data.cloudwatch is None:
        return []
    note = missing_note(data.cloudwatch)
    return [] if note is None else [note]


def build_report(source: Path | RunData, thresholds: Mapping[str, float] | None = None) -> Report:
    """Judge a results folder (read once, or already read).

    ``thresholds`` replaces the ones recorded in run.json (to re-judge an old run); by default
    the recorded ones are used, or the defaults if run.json has none.
    """
    data = source if isinstance(source, RunData) else _load(source)
    run = data.meta
    limits = _limits(run, thresholds, data.run_dir / RUN_FILE)
    requests, clients = data.requests, data.clients
    stats = compute_stats(requests, clients, count_injected=run.count_injected)
    results = tuple(evaluate(limits, stats))
    onset = burst_onset(requests, clients, run.started)
    sized = target_sizing(run)
    generator = generator_check(data.host, clients, local_target=run.local_target, onset=onset)
    failed = sorted(
        (c for c in clients if c.outcome not in {*NOT_FAILED, "interrupted"}),
        key=lambda c: c.started,
    )
    kinds = fault_kinds(run.faults)
    by_run: dict[str, list[RequestRecord]] = {}
    for rec in requests:
        if rec.run_id is not None:
            by_run.setdefault(rec.run_id, []).append(rec)
    traces = [build_trace(c.run_id, by_run.get(c.run_id, []), c, kinds) for c in failed]
    return Report(
        data=data,
        stats=stats,
        thresholds=results,
        notes=tuple(_notes(run, stats, results, data.skipped, data.missing) + _aws_notes(data)),
        failed_runs=tuple(failed[:FAILED_RUNS_SHOWN]),
        duration_s=_duration(run, stats, clients),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        generator=generator,
        failure_reasons={t.run_id: diagnose(t) for t in traces[:FAILED_RUNS_SHOWN]},
        client_kinds=client_kind_usage(requests, clients),
        onset=onset,
        target=sized,
        diagnosis=()
        if sized is None
        else diagnose_sizing(
            sized,
            failed=not all(r.passed for r in results),
            generator_saturated=generator.saturated,
            peak_in_flight=peak_in_flight(requests),
        ),
        shards=shard_rows(run.shards, clients, data.host, onset.by_run, run.started),
        target_failure=target_causes(
            requests,
            run.target,
            run.started,
            count_injected=run.count_injected,
            events=data.events,
            run_timeout_s=run.run_timeout_s,
        ),
        failed_run_causes=dict(failure_reasons(traces).most_common()),
    )


def _load(run_dir: Path) -> RunData:
    try:
        return RunData.load(run_dir)
    except RecordError as exc:
        raise ReportError(str(exc)) from None
