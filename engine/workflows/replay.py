"""``pipstorm replay LOG...``: an incident replayed from the index's own access log, with the real
clients that made it.

The log (ALB or combined format; files, folders, ``s3://``) is read and grouped into client runs
(``pipstorm.engine.run.replay``); each becomes one planned run at its log instant divided by
``--speed``, with the client version its user agent names. The plan is played as an ordinary
pipstorm run (``execute_run`` with this plan instead of a profile's): same proxy, pool, records
and report, against an embedded target serving the releases the log names, or a remote index
that must have them. Then ``replay.json`` and ``replay.md`` set the replay beside the log, per
minute and per operation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipstorm.clients.drivers.registry import driver_for
from pipstorm.clients.process import redact
from pipstorm.engine.analysis import thresholds as thresholds_mod
from pipstorm.engine.analysis.replay import LogSample, ReplayComparison, compare_replay
from pipstorm.engine.errors import UsageError
from pipstorm.engine.report.replay import terminal_summary, write_replay
from pipstorm.engine.run.execute import RunOptions, RunResult, execute_run
from pipstorm.engine.run.live.dashboard import Dashboard
from pipstorm.engine.run.plan import capacity
from pipstorm.engine.run.plan.client_mix import ClientChoice
from pipstorm.engine.run.plan.load import LoadPlan
from pipstorm.engine.run.plan.profiles import Profile
from pipstorm.engine.run.plan.schedule import Timeline
from pipstorm.engine.run.progress import to_stderr
from pipstorm.engine.run.replay.group import DEFAULT_GAP_S
from pipstorm.engine.run.replay.logline import LoggedRequest
from pipstorm.engine.run.replay.read import S3Reader, read_logs
from pipstorm.engine.run.replay.schedule import (
    MINUTE_S,
    NothingToReplay,
    ReplayPlan,
    plan_replay,
)
from pipstorm.engine.run.target.opening import (
    CheckedTarget,
    Target,
    TargetSpec,
    check_target,
    open_target,
    preflight,
)
from pipstorm.engine.rundir.data import RunData
from pipstorm.infra.operations import classify


@dataclass(frozen=True)
class ReplayOptions:
    """What ``pipstorm replay`` can be told."""

    logs: tuple[str, ...]
    speed: float = 1.0
    start: str | None = None  # --from: ISO 8601 (a time without zone is UTC)
    end: str | None = None  # --to
    index_url: str | None = None
    terraform_dir: Path | None = None
    allow_remote_target: bool = False
    aws_role_arn: str | None = None
    raw: bool = False  # --raw: unexplained requests replayed as the synthetic http client
    gap_s: float = DEFAULT_GAP_S
    results_root: Path = Path("results")
    threshold_overrides: tuple[str, ...] = ()
    workers: int | None = None
    run_timeout_s: float = 120.0
    quiet: bool = False
    launch: str | None = None
    allow_generator_bound: bool = False  # --allow-generator-bound, as in ``pipstorm run``
    force: bool = False  # --force: play a replay this machine cannot prepare or hold
    dashboard: Dashboard | None = None  # --dashboard: the live page of the replayed run


@dataclass(frozen=True)
class ReplayResult:
    run: RunResult
    comparison: ReplayComparison


def run_replay(
    options: ReplayOptions, say: Callable[[str], None] | None = None, *, s3: S3Reader | None = None
) -> ReplayResult:
    """Read, group, play and compare; bad input (an unreadable source, nothing replayable) raises
    one-line errors before any load is sent."""
    emit = say or to_stderr
    # A refused target is said before the log is read.
    spec = TargetSpec(options.index_url, options.terraform_dir)
    checked = check_target(spec, allow_remote=options.allow_remote_target)
    low, high = _window(options.start, options.end)
    read = read_logs(options.logs, s3=s3, keep=lambda t: low <= t < high)
    warnings = [w for w in [read.warning()] if w is not None]
    window = read.requests
    try:
        plan = plan_replay(window, speed=options.speed, gap_s=options.gap_s, raw=options.raw)
    except NothingToReplay:
        for warning in warnings:  # else the run says them, with its own warnings
            emit(f"pipstorm: WARNING: {warning}")
        raise
    emit(
        f"pipstorm replay: {len(window) + read.outside} requests read from {read.files} files, "
        f"{plan.requests} in the window: {len(plan.runs)} client runs "
        f"({', '.join(f'{k} {n}' for k, n in plan.by_kind.items())}) over {plan.span_s:.0f} s "
        f"of log, played in {plan.duration_s:.0f} s"
    )
    if plan.unexplained:
        emit(
            f"pipstorm replay: {sum(plan.unexplained.values())} requests come from clients "
            f"pipstorm does not drive ({'replayed as http' if options.raw else 'not replayed'})"
        )
    run_options = RunOptions(
        profile=replay_profile(plan, options.logs),
        target=spec,
        allow_remote_target=options.allow_remote_target,
        aws_role_arn=options.aws_role_arn,
        results_root=options.results_root,
        threshold_overrides=options.threshold_overrides,
        workers=options.workers,
        run_timeout_s=options.run_timeout_s,
        corpus=plan.corpus,
        quiet=options.quiet,
        client_versions=dict(plan.versions),  # each run's own comes with it (PlannedRun)
        launch=options.launch,
        allow_generator_bound=options.allow_generator_bound,
        force=options.force,
    )
    load = load_plan(run_options, plan, options.logs, warnings)
    _warm_up(plan, emit)
    with ExitStack() as stack:
        target = _remote_target(checked, plan, stack, emit)
        result = execute_run(
            run_options, emit, target=target, load=load, dashboard=options.dashboard
        )
    samples = [_sample(r, plan.origin) for r in window]
    facts = _facts(read.unreadable, read.outside, plan)
    comparison = compare_replay(
        samples, RunData.load(result.run_dir), speed=plan.speed, log_runs=len(plan.runs),
        facts=facts,
    )  # fmt: skip
    write_replay(result.run_dir, comparison)
    emit(terminal_summary(comparison))
    emit(f"replay: {result.run_dir / 'replay.md'} (and replay.json)")
    return ReplayResult(run=result, comparison=comparison)


def replay_profile(plan: ReplayPlan, sources: Sequence[str]) -> Profile:
    """A profile describing the log: its busiest minute's runs a tick, one tick a log minute."""
    per_minute = Counter(run.tick for run in plan.runs)
    return Profile(
        name="replay",
        description=f"replay of {plan.requests} logged requests from {', '.join(sources)}"[:300],
        clients=max(per_minute.values()),
        duration_s=max(1.0, plan.span_s),
        tick_s=MINUTE_S,
        client=next(iter(plan.by_kind)),
    )


def load_plan(
    options: RunOptions, plan: ReplayPlan, sources: Sequence[str], warnings: list[str]
) -> LoadPlan:
    """The plan ``execute_run`` plays: a profile describing the log, the default thresholds
    (and ``--threshold``), the kinds' shares and versions, one tick a log minute."""
    profile = options.profile
    limits = thresholds_mod.merge(
        thresholds_mod.DEFAULTS,
        {},
        dict(thresholds_mod.parse_override(text) for text in options.threshold_overrides),
    )
    total = sum(plan.by_kind.values())
    choice = ClientChoice(
        mix={kind: count / total for kind, count in plan.by_kind.items()},
        versions={k: v for k, v in options.client_versions.items() if v is not None},
    )
    line = Timeline(
        duration_s=plan.duration_s,
        tick_s=MINUTE_S / plan.speed,
        burst_every_s=None,
        time_scale=plan.speed,
    )
    warned = capacity.check(_capacity(plan, choice.mix, options), force=options.force)
    return LoadPlan(profile, limits, choice, line, plan.runs, [*warnings, *warned])


def _capacity(plan: ReplayPlan, mix: dict[str, float], options: RunOptions) -> capacity.Capacity:
    """The replay's busiest 10 s (replay time) against this machine, priced as ``run`` prices a
    profile's tick: a log at a high ``--speed`` is refused like an absurd profile (``--force``)."""
    window = 10.0
    peak = max(Counter(int(run.offset_s // window) for run in plan.runs).values())
    line = Timeline(duration_s=window, tick_s=window, burst_every_s=None, time_scale=1.0)
    measured = capacity.measure(line, peak, 1, mix, warm=(options.launch or "warm") == "warm")
    return replace(measured, planned_runs=len(plan.runs))


def _warm_up(plan: ReplayPlan, emit: Callable[[str], None]) -> None:
    """Every client version the log names beyond each kind's usual one (``execute_run`` warms
    those), installed before any load: the generator's cost, not the index's."""
    usual = set(plan.versions.items())
    pairs = {(r.client, r.client_version) for r in plan.runs if r.client_version is not None}
    for kind, version in sorted(pairs - usual):
        emit(f"pipstorm: preparing {kind} {version} (cached after the first time)")
        driver_for(kind).warm_up(version)


def _remote_target(
    checked: CheckedTarget, plan: ReplayPlan, stack: ExitStack, emit: Callable[[str], None]
) -> Target | None:
    """A remote index, opened here so that every project the log names is checked first: its
    listing must show the files the log shows of it (the embedded target is opened by the run
    itself, serving exactly those releases)."""
    if checked.index_url is None and checked.stack is None:
        return None
    target = stack.enter_context(
        open_target(checked, corpus=plan.corpus, log_path=None, remote_files=plan.files_of)
    )
    projects = plan.corpus.project_names()
    emit(f"pipstorm replay: checking the index has the log's {len(projects)} projects")
    for project in projects[1:]:  # the first one was checked on opening
        preflight(target.index_url, target.credentials, project, plan.files_of(project))
    return target


def _window(start: str | None, end: str | None) -> tuple[float, float]:
    """``[--from, --to)`` as epoch seconds (open ends when not given)."""
    low = _instant(start, "--from") if start else float("-inf")
    high = _instant(end, "--to") if end else float("inf")
    if not low < high:
        raise UsageError(f"--from ({start}) must be before --to ({end})")
    return low, high


def _instant(text: str, option: str) -> float:
    """ISO 8601; a time without a zone is UTC (ALB logs are)."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"{option}: {text!r} is not an ISO 8601 time (2026-12-06T05:13:00Z)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _sample(request: LoggedRequest, origin: float) -> LogSample:
    return LogSample(
        offset_s=request.time - origin,
        op=classify(request.method, request.path, request.status),
        status=request.status,
        latency_ms=request.latency_ms,
    )


def _facts(unreadable: int, outside: int, plan: ReplayPlan) -> dict[str, Any]:
    """What the log held beyond the replayed runs, for the comparison (user agents redacted:
    a logged header may carry a token)."""
    return {
        "requests": plan.requests,
        "unreadable_lines": unreadable,
        "outside_window": outside,
        "unexplained_requests": sum(plan.unexplained.values()),
        "unexplained_agents": {
            redact(agent)[:200]: n for agent, n in plan.unexplained.most_common()
        },
        "unreplayable": dict(plan.unreplayable),
        "odd_versions": dict(plan.odd_versions),
        "origin": plan.origin,
        "by_kind": dict(plan.by_kind),
    }
