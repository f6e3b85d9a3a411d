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

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from engine.analysis.client_usage import ClientKindUsage, client_kind_usage
from engine.analysis.saturation import (
    GeneratorCheck,
    HostSample,
    check_generator,
    load_host_samples,
)
from engine.analysis.stats import NOT_FAILED, RunStats, compute_stats
from engine.analysis.thresholds import DEFAULTS, ThresholdError, ThresholdResult, evaluate, merge
from engine.analysis.trace import build_trace, diagnose, fault_kinds
from engine.report.markdown import render_markdown, terminal_summary
from engine.run.sampler import HOST_FILE
from engine.rundir.records import (
    CLIENTS_FILE,
    REQUESTS_FILE,
    RUN_FILE,
    ClientRecord,
    RecordError,
    load_clients,
    load_requests,
    write_json_atomic,
    write_text_atomic,
)

__all__ = [
    "REPORT_JSON",
    "REPORT_MD",
    "SCHEMA",
    "Report",
    "ReportError",
    "build_report",
    "render_markdown",
    "terminal_summary",
    "write_reports",
]

SCHEMA = 1
REPORT_JSON = "report.json"
REPORT_MD = "report.md"
SUPPORTED_RUN_SCHEMAS = frozenset({1})
# A run that started this much later than planned means the load was lower than asked.
LATE_START_NOTE_S = 1.0
# Failed client runs listed with their reason in report.md (all are in clients.jsonl).
FAILED_RUNS_SHOWN = 10


class ReportError(RecordError):
    """A run directory cannot be reported on; the message names the file and the problem."""


@dataclass(frozen=True)
class Report:
    """Everything known about one run, judged against its thresholds."""

    run_dir: Path
    run: Mapping[str, Any]
    stats: RunStats
    thresholds: tuple[ThresholdResult, ...]
    skipped_lines: Mapping[str, int]
    incomplete: bool  # run.json has no end time: crashed, killed, or still going
    interrupted: bool  # the run was stopped early on purpose (Ctrl-C)
    notes: tuple[str, ...]
    failed_runs: tuple[ClientRecord, ...]  # not-ok client runs, first FAILED_RUNS_SHOWN
    duration_s: float | None  # run.json's end - start, or up to the last recorded event
    generated_at: str
    # Was the load generator the bottleneck? (host.jsonl + client lag; engine.analysis.saturation)
    generator: GeneratorCheck | None = None
    # run id -> why it failed, from its requests (engine.analysis.trace names injected faults)
    failure_reasons: Mapping[str, str] = field(default_factory=dict)
    # Per client kind: versions, user agents, requests per run (engine.analysis.client_usage)
    client_kinds: tuple[ClientKindUsage, ...] = ()

    @property
    def verdict(self) -> Literal["pass", "fail"]:
        """``pass`` when every threshold passed (also when none were set)."""
        return "pass" if all(t.passed for t in self.thresholds) else "fail"

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this report: 0 pass, 1 a threshold failed."""
        return 0 if self.verdict == "pass" else 1

    @property
    def profile_name(self) -> str:
        """The profile's name as run.json recorded it ("?" when absent)."""
        profile = self.run.get("profile")
        name = profile.get("name") if isinstance(profile, Mapping) else None
        return name if isinstance(name, str) else "?"

    def to_dict(self) -> dict[str, Any]:
        """The ``report.json`` document."""
        stats = self.stats.to_dict()
        requests = self.stats.requests
        return {
            "schema": SCHEMA,
            "generated_at": self.generated_at,
            "verdict": self.verdict,
            "profile": self.profile_name,
            "started": _number(self.run.get("started")),
            "ended": _number(self.run.get("ended")),
            "duration_s": self.duration_s,
            "incomplete": self.incomplete,
            "interrupted": self.interrupted,
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
            "run": dict(self.run),
            "run_dir": str(self.run_dir),
        }


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _duration(run: Mapping[str, Any], stats: RunStats, clients: list[ClientRecord]) -> float | None:
    started = _number(run.get("started"))
    if started is None:
        return None
    ended = _number(run.get("ended"))
    if ended is None:  # crashed: the last thing recorded is the best end we have
        events = [started, *(c.ended for c in clients)]
        if stats.requests.last_end is not None:
            events.append(stats.requests.last_end)
        ended = max(events)
    return ended - started


def _read_run_json(run_dir: Path) -> dict[str, Any]:
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    path = run_dir / RUN_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{run_dir}: no {RUN_FILE}, not a pipstorm run directory") from None
    except (ValueError, OSError) as exc:
        raise ReportError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path}: expected a JSON object")
    schema = data.get("schema")
    if schema not in SUPPORTED_RUN_SCHEMAS:
        raise ReportError(f"{path}: unsupported schema {schema!r} (this version reads 1)")
    return data


def _thresholds_of(run: Mapping[str, Any], path: Path) -> dict[str, float]:
    recorded = run.get("thresholds", DEFAULTS)
    if not isinstance(recorded, Mapping):
        raise ReportError(f"{path}: 'thresholds' must be an object of KEY: limit")
    try:
        return merge(recorded)
    except ThresholdError as exc:
        raise ReportError(f"{path}: {exc}") from None


def _notes(
    run: Mapping[str, Any],
    stats: RunStats,
    results: tuple[ThresholdResult, ...],
    skipped: Mapping[str, int],
    missing: list[str],
) -> list[str]:
    notes: list[str] = []
    if run.get("interrupted"):
        notes.append("The run was interrupted: the numbers cover only the part that ran.")
    elif run.get("ended") is None:
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
        notes.append(
            f"{req.unattributed_count} request(s) could not be attributed to a client run "
            "(run_id null)."
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
            if run.get("count_injected")
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
    runs = stats.clients.all
    planned = run.get("runs_planned")
    if isinstance(planned, int) and not isinstance(planned, bool) and runs.count < planned:
        notes.append(f"{runs.count} of {planned} planned client runs were recorded.")
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


def build_report(run_dir: Path, thresholds: Mapping[str, float] | None = None) -> Report:
    """Read a run directory and judge it.

    ``thresholds`` replaces the ones recorded in run.json (to re-judge an old run); by default
    the recorded ones are used, or the defaults if run.json has none.
    """
    run = _read_run_json(run_dir)
    if thresholds is None:
        limits = _thresholds_of(run, run_dir / RUN_FILE)
    else:
        try:
            limits = merge(thresholds)
        except ThresholdError as exc:
            raise ReportError(str(exc)) from None
    missing = [n for n in (REQUESTS_FILE, CLIENTS_FILE) if not (run_dir / n).is_file()]
    try:
        requests, skipped_requests = (
            ([], 0) if REQUESTS_FILE in missing else load_requests(run_dir / REQUESTS_FILE)
        )
        clients, skipped_clients = (
            ([], 0) if CLIENTS_FILE in missing else load_clients(run_dir / CLIENTS_FILE)
        )
    except OSError as exc:
        raise ReportError(f"{run_dir}: cannot read a stream ({exc})") from None
    stats = compute_stats(requests, clients, count_injected=bool(run.get("count_injected")))
    results = tuple(evaluate(limits, stats))
    skipped = {REQUESTS_FILE: skipped_requests, CLIENTS_FILE: skipped_clients}
    host: list[HostSample] = []
    if (run_dir / HOST_FILE).is_file():  # absent before host sampling: no CPU figures then
        try:
            host, skipped[HOST_FILE] = load_host_samples(run_dir / HOST_FILE)
        except OSError:
            host = []
    target = run.get("target")
    local = isinstance(target, Mapping) and target.get("kind") == "embedded"
    generator = check_generator(host, clients, local_target=local)
    failed = sorted(
        (c for c in clients if c.outcome not in {*NOT_FAILED, "interrupted"}),
        key=lambda c: c.started,
    )
    return Report(
        run_dir=run_dir,
        run=run,
        stats=stats,
        thresholds=results,
        skipped_lines=skipped,
        incomplete=run.get("ended") is None,
        interrupted=bool(run.get("interrupted")),
        notes=tuple(_notes(run, stats, results, skipped, missing)),
        failed_runs=tuple(failed[:FAILED_RUNS_SHOWN]),
        duration_s=_duration(run, stats, clients),
        generated_at=datetime.now(UTC).isoformat(timespec="seconds"),
        generator=generator,
        failure_reasons={
            c.run_id: diagnose(build_trace(c.run_id, requests, c, fault_kinds(run)))
            for c in failed[:FAILED_RUNS_SHOWN]
        },
        client_kinds=client_kind_usage(requests, clients),
    )


def write_reports(run_dir: Path, thresholds: Mapping[str, float] | None = None) -> Report:
    """Build the report and write ``report.json``, the chart PNGs, ``report.md`` and the
    self-contained ``report.html`` (each atomically)."""
    # Imported here: matplotlib is slow to import and only reports need it, not every command.
    from engine.report.chart_files import build_charts, write_chart_files
    from engine.report.html import REPORT_HTML, render_html

    report = build_report(run_dir, thresholds)
    try:
        write_json_atomic(run_dir / REPORT_JSON, report.to_dict())
        charts = build_charts(report)
        write_chart_files(run_dir, charts)
        write_text_atomic(run_dir / REPORT_MD, render_markdown(report, charts.links))
        write_text_atomic(run_dir / REPORT_HTML, render_html(report, charts))
    except OSError as exc:
        raise ReportError(f"{run_dir}: cannot write the report ({exc})") from None
    return report
