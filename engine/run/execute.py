"""One load run, start to verdict: target -> proxy -> schedule -> pool -> reports.

Everything a run learns is appended to its JSONL streams as it happens; the reports are built
from those files afterwards. So an interrupted run (Ctrl-C, SIGTERM, a crash of a part) still
ends with a report of the part that ran, and the same report can be rebuilt later.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from pipstorm.clients.drivers.twine import KIND as UPLOAD_KIND
from pipstorm.clients.process import CLIENT_NICE
from pipstorm.clients.task import ClientTask
from pipstorm.engine.analysis import thresholds as thresholds_mod
from pipstorm.engine.report.model import Report, ReportError
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.run import reaper
from pipstorm.engine.run.disk_room import DiskFull, check_room
from pipstorm.engine.run.dispatch import (
    RunClock,
    client_recorder,
    dispatch_plan,
    wait_for_last_runs,
)
from pipstorm.engine.run.plan import capacity
from pipstorm.engine.run.plan.client_mix import ClientChoice, choose_clients
from pipstorm.engine.run.plan.client_mix import warm_up as warm_up_clients
from pipstorm.engine.run.plan.faults import RunFaults
from pipstorm.engine.run.plan.lead import (
    LeadPlan,
    default_budget_mb,
    kind_modes,
    measure_costs,
    plan_lead,
)
from pipstorm.engine.run.plan.profiles import Profile, load_profile
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline, build_schedule, timeline
from pipstorm.engine.run.pool import LAUNCH_MODES, ClientPool, PoolError
from pipstorm.engine.run.priority import ProxyGuard, protect_proxy
from pipstorm.engine.run.progress import LiveProgress, to_stderr
from pipstorm.engine.run.sampler import HostSampler
from pipstorm.engine.run.signals import Terminated, terminate_as_interrupt
from pipstorm.engine.run.target.cloudwatch import fetch_run_cloudwatch, stack_meta
from pipstorm.engine.run.target.opening import (
    Target,
    TargetSpec,
    check_allowed_origins,
    check_loopback,
    open_target,
    resolve_stack,
)
from pipstorm.engine.run.target.watch import observe_target
from pipstorm.engine.rundir.files import (
    CLIENTS_FILE,
    HOST_FILE,
    REQUESTS_FILE,
    TARGET_LOG,
    make_run_dir,
)
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.aws.stack import AwsStack
from pipstorm.infra.proxy.control import RecordingProxy
from pipstorm.infra.pypiserver.sizing import Sizing
from pipstorm.packages.spec import CorpusSpec

#: Where an embedded target writes what upload runs publish, inside the run's folder.
UPLOADS_DIR = "uploads"
#: The first tick comes this long after the pool starts, so tick 0 is not late by design.
START_MARGIN_S = 2.0
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: stopped the same way, reported as shells do (128 + 15)


@dataclass(frozen=True)
class RunOptions:
    """Everything ``pipstorm run`` can be told."""

    profile: str
    duration_s: float | None = None
    time_scale: float | None = None
    index_url: str | None = None
    allow_remote_target: bool = False
    # --allow-origin: other origins the proxy may forward to besides those the index links.
    allow_origins: tuple[str, ...] = ()
    results_root: Path = Path("results")
    threshold_overrides: tuple[str, ...] = ()
    seed: int = 1
    workers: int | None = None
    run_timeout_s: float = 120.0
    corpus: CorpusSpec = field(default_factory=CorpusSpec)
    quiet: bool = False
    proxy_priority: str = (
        "auto"  # pipstorm.engine.run.priority.protect_proxy's mode: auto, nice, none
    )
    client: str | None = None  # --client: every run this kind (else the profile's mix)
    mix: dict[str, float] | None = None  # --mix: kinds and shares
    client_versions: dict[str, str | None] = field(default_factory=dict)  # --pip-version ...
    faults: tuple[
        str, ...
    ] = ()  # --fault SPEC (pipstorm.infra.faults.spec), before the profile's [[faults]]
    count_injected: bool = False  # --count-injected: injected faults count as errors
    force: bool = (
        False  # --force: play a plan pipstorm.engine.run.plan.capacity refuses, with a warning
    )
    terraform_dir: Path | None = None  # --target terraform:DIR: a deployed AWS stack
    aws_role_arn: str | None = None  # --aws-role-arn (else AWS_ROLE_ARN): for CloudWatch
    sizing: Sizing | None = None  # --sizing and its knobs: the embedded target, confined
    allow_unconfined: bool = False  # --allow-unconfined: a sizing without cgroups runs anyway
    probe_listing: bool = False  # measure one listing's server CPU first (the sizing lab)
    launch: str | None = None  # --launch warm|exec (else the profile's, else warm)
    memory_budget_mb: float | None = None  # what prepared runs may hold (default: half free)
    # --allow-generator-bound: a generator-bound run keeps PASS/FAIL, not inconclusive
    allow_generator_bound: bool = False
    # A profile object played instead of loading ``profile`` by name (sizing-lab --scale).
    profile_override: Profile | None = None


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    report: Report
    interrupted: bool
    stopped_by: str | None = None  # the signal that interrupted the run (SIGINT, SIGTERM)

    @property
    def exit_code(self) -> int:
        """The verdict's code (0 pass, 1 fail, 3 inconclusive:
        ``pipstorm.engine.analysis.verdict``); 130 after Ctrl-C, 143 after SIGTERM (the report
        still written)."""
        if not self.interrupted:
            return self.report.exit_code
        return EXIT_TERMINATED if self.stopped_by == "SIGTERM" else EXIT_INTERRUPTED


@contextmanager
def _no_interrupts_while_cleaning(say: Callable[[str], None]) -> Iterator[None]:
    """A second Ctrl-C during clean-up would leave processes behind: acknowledge it instead."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_again(signum: int, frame: FrameType | None) -> None:
        say("stopping: cleaning up clients, proxy and target (a few seconds)")

    old_int = signal.signal(signal.SIGINT, on_again)
    old_term = signal.signal(signal.SIGTERM, on_again)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


@dataclass(frozen=True)
class LoadPlan:
    """A run's plan before anything starts: the profile, thresholds, client choice, schedule,
    and the capacity check's warnings (``--force``)."""

    profile: Profile
    limits: dict[str, float]
    choice: ClientChoice
    line: Timeline
    runs: list[PlannedRun]
    warnings: list[str]


def _profile(options: RunOptions) -> Profile:
    """The profile to play: the one given as an object, else the named or TOML one."""
    return options.profile_override or load_profile(options.profile)


def plan_load(options: RunOptions, *, clients_per_machine: int | None = None) -> LoadPlan:
    """Profile -> thresholds -> clients -> capacity check -> schedule, for one machine or for
    shards (``clients_per_machine``: each generator's share of a tick). The capacity check comes
    before the schedule is built: an absurd profile must not exhaust memory building it."""
    profile = _profile(options)
    limits = thresholds_mod.merge(
        thresholds_mod.DEFAULTS,
        profile.thresholds,
        dict(thresholds_mod.parse_override(text) for text in options.threshold_overrides),
    )
    choice = choose_clients(
        profile, client=options.client, mix=options.mix, versions=options.client_versions
    )
    line = timeline(profile, duration_s=options.duration_s, time_scale=options.time_scale)
    warnings = capacity.check(
        capacity.measure(
            line,
            clients_per_machine or profile.clients,
            profile.burst_multiplier,
            choice.mix,
            warm=(options.launch or profile.launch or "warm") == "warm",
        ),
        force=options.force,
    )
    line, runs = build_schedule(
        profile,
        options.corpus.releases(),
        seed=options.seed,
        duration_s=options.duration_s,
        time_scale=options.time_scale,
        mix=choice.mix,
        pins=choice.pins,
    )
    return LoadPlan(profile, limits, choice, line, runs, warnings)


def initial_meta(
    options: RunOptions, profile: Profile, line: Timeline, planned: int, limits: dict[str, float]
) -> RunMeta:
    """``run.json`` as written before the run; the run fills in start, end and target."""
    return RunMeta(
        profile=profile.to_dict(),
        planned_duration_s=line.duration_s,
        time_scale=line.time_scale,
        tick_s=line.tick_s,
        burst_ticks_s=list(line.burst_ticks),
        seed=options.seed,
        runs_planned=planned,
        thresholds=limits,
        target={
            "kind": "embedded"
            if options.index_url is None and options.terraform_dir is None
            else "remote"
        },
        count_injected=options.count_injected,
        allow_generator_bound=options.allow_generator_bound or profile.allow_generator_bound,
    )


def execute_run(
    options: RunOptions,
    say: Callable[[str], None] | None = None,
    target: Target | None = None,
    load: LoadPlan | None = None,
) -> RunResult:
    """Run ``options`` and return the verdict. Raises the components' one-line errors for bad
    input or an unusable target before any load is sent.

    ``target``: an index already open (the pytest plugin's session target), used instead of
    opening one from ``options``; the caller keeps it up and stops it. ``load``: a plan made
    elsewhere (``pipstorm replay``'s, from a log) instead of the profile's."""
    emit: Callable[[str], None] = say or to_stderr
    load = load or plan_load(options)
    profile, limits, choice, line, plan = (
        load.profile,
        load.limits,
        load.choice,
        load.line,
        load.runs,
    )
    warnings = load.warnings
    stack: AwsStack | None = None
    if target is None:  # read the stack and refuse a non-loopback target before anything else
        stack = resolve_stack(TargetSpec(options.index_url, options.terraform_dir))
        remote_url = stack.index_url if stack is not None else options.index_url
        if remote_url is not None:
            check_loopback(remote_url, allow_remote=options.allow_remote_target)
    check_allowed_origins(options.allow_origins, allow_remote=options.allow_remote_target)
    faults = RunFaults.from_specs((*options.faults, *profile.faults), seed=options.seed)
    warm_up_clients(choice, emit)  # tool installs are the generator's cost: before any load
    lead = _lead_plan(options, profile, plan, choice.kinds)
    run_dir = make_run_dir(options.results_root, profile.name)
    meta = initial_meta(options, profile, line, len(plan), limits)
    meta.clients = choice.to_dict()
    # A lead-time problem is said before any load and recorded like the capacity warnings.
    meta.warnings = warnings = [*warnings, *lead.warnings()]
    for warning in warnings:
        emit(f"pipstorm: WARNING: {warning}")
    meta.launch = lead.to_dict()
    meta.faults = faults.meta() if faults is not None else []
    state = _RunState(
        meta=meta, run_dir=run_dir, emit=emit, tty=say is None and sys.stderr.isatty()
    )
    state.target = target
    state.stack = stack
    _write_start(state, plan, faults, line, uploads=UPLOAD_KIND in choice.kinds and target is None)
    _play(options, line, plan, state, lead)
    _fetch_cloudwatch(options, state)
    report = write_reports(run_dir)
    emit(terminal_summary(report))
    emit(f"reports: {run_dir / 'report.md'} (and report.json)")
    return RunResult(
        run_dir=run_dir, report=report, interrupted=meta.interrupted, stopped_by=state.stopped_by
    )


def _write_start(
    state: _RunState,
    plan: list[PlannedRun],
    faults: RunFaults | None,
    line: Timeline,
    *,
    uploads: bool,
) -> None:
    """The run folder's first files, before any load. A full or read-only disk shows here
    first: then no folder is left holding half a start."""
    run_dir = state.run_dir
    try:
        if uploads:  # the embedded target's uploads go here
            (run_dir / UPLOADS_DIR).mkdir()
        state.meta.write(run_dir)
        if faults is not None:
            kinds = {r.run_id: r.client for r in plan}
            state.faults_path = faults.write_plan(
                run_dir, kinds, tick_s=line.tick_s, burst_ticks_s=line.burst_ticks
            )
        check_room(run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)
        raise


def _play(
    options: RunOptions, line: Timeline, plan: list[PlannedRun], state: _RunState, lead: LeadPlan
) -> None:
    """``_drive`` the run, then close ``run.json``; a disk that filled is one DiskFull line."""
    meta, run_dir = state.meta, state.run_dir
    try:
        try:
            _drive(options, line, plan, state, lead)
        except Exception:
            if not state.load_sent:
                # Refused before any load was sent (unusable target, port in use): a results
                # folder holding nothing but run.json would only be noise.
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        finally:
            if run_dir.exists():
                meta.ended = time.time()
                meta.write(run_dir)
    except OSError as exc:
        if exc.errno != errno.ENOSPC or not state.load_sent:
            raise
        raise DiskFull(  # the disk filled faster than the guard could see it
            f"results folder {run_dir}: No space left on device during the run; its files may "
            "end in a torn line (skipped by `pipstorm report DIR`)"
        ) from None
    if state.disk_full is not None:
        _report_what_fits(run_dir, state.emit)
        ran = (meta.ended or time.time()) - (meta.started or time.time())
        raise DiskFull(
            f"{state.disk_full}: the run was stopped at {max(0.0, ran):.0f} s (run.json: "
            "interrupted); `pipstorm report DIR` writes the report once there is room"
        )


@dataclass
class _RunState:
    meta: RunMeta
    run_dir: Path
    emit: Callable[[str], None]
    tty: bool = False  # progress as one line rewritten in place on stderr
    target: Target | None = None
    faults_path: Path | None = (
        None  # faults.json, handed to the proxy (pipstorm.engine.run.plan.faults)
    )
    load_sent: bool = False
    stopped_by: str | None = None  # SIGINT or SIGTERM, once the run was interrupted
    stack: AwsStack | None = None  # --target terraform:DIR, read before the run
    start_at: float | None = None  # a shard's absolute offset 0 (pipstorm.engine.run.shards.worker)
    disk_full: DiskFull | None = None  # the run was stopped for want of disk space


def _interrupted(state: _RunState, exc: BaseException) -> None:
    state.meta.interrupted = True
    if state.stopped_by is None:
        state.stopped_by = str(exc) if isinstance(exc, Terminated) else "SIGINT"


def _fetch_cloudwatch(options: RunOptions, state: _RunState) -> None:
    """The server side of a run against an AWS stack, into cloudwatch.jsonl.

    Never fails the run: missing credentials, permissions or datapoints end up as one line in
    the report (and here), and writing the file failing is said, not raised."""
    stack = state.target.stack if state.target is not None else None
    if stack is None or state.meta.started is None:
        return
    state.emit("pipstorm: fetching the stack's CloudWatch series for the run's window")
    try:
        data = fetch_run_cloudwatch(
            state.run_dir, state.meta, role_arn=options.aws_role_arn, stack=stack
        )
    except OSError as exc:
        state.emit(f"pipstorm: CloudWatch series not written: {exc}")
        return
    summary = data.missing_summary()
    if summary is not None:
        state.emit(f"pipstorm: {summary}")


def _lead_plan(
    options: RunOptions,
    profile: Profile,
    plan: list[PlannedRun],
    kinds: Iterable[str],
) -> LeadPlan:
    """The launch mode, measured preparation costs and lead time (said once the target is
    open, before any load: bad input stays one ERROR line)."""
    mode = options.launch or profile.launch or "warm"
    if mode not in LAUNCH_MODES:
        raise PoolError(f"--launch must be one of {', '.join(LAUNCH_MODES)}, got {mode!r}")
    modes = kind_modes(mode, kinds)
    versions = {k: options.client_versions.get(k) for k in modes}
    costs = measure_costs(modes, versions)
    return plan_lead(
        [(run.offset_s, run.client) for run in plan],
        costs,
        mode=mode,
        cores=os.cpu_count() or 1,
        budget_mb=options.memory_budget_mb or default_budget_mb(),
        start_margin_s=START_MARGIN_S,
    )


def _drive(
    options: RunOptions,
    line: Timeline,
    plan: list[PlannedRun],
    state: _RunState,
    lead: LeadPlan,
) -> None:
    """Start target, proxy and pool, play the schedule, then stop everything.

    Whatever happens, everything started here is stopped before this returns or raises; an
    interruption is noted in ``run.json`` (``interrupted``), not raised.
    """
    meta, run_dir, emit = state.meta, state.run_dir, state.emit
    pool: ClientPool | None = None
    clock = RunClock()  # offset 0, known once the pool is up
    try:
        with ExitStack() as stack:
            stack.enter_context(terminate_as_interrupt())
            # The clients' and launchers' work folders: removed last, or by a reaper if this
            # process is SIGKILLed (pipstorm.engine.run.reaper).
            scratch = stack.enter_context(reaper.guarded_folder("pipstorm-run-"))
            target = state.target or stack.enter_context(
                open_target(
                    options.index_url,
                    corpus=options.corpus,
                    allow_remote=options.allow_remote_target,
                    log_path=run_dir / TARGET_LOG,
                    upload_dir=uploads if (uploads := run_dir / UPLOADS_DIR).is_dir() else None,
                    stack=state.stack,
                    sizing=options.sizing,
                    allow_unconfined=options.allow_unconfined,
                    probe_listing=options.probe_listing,
                )
            )
            state.target = target
            _note_target(meta, target, emit)
            emit(
                f"pipstorm: {meta.profile_name}: {meta.runs_planned} client runs in "
                f"{line.duration_s:g} s against {target.index_url} -> {run_dir}"
            )
            emit(f"pipstorm: {lead.summary()}")
            proxy = stack.enter_context(
                RecordingProxy(
                    target.index_url,
                    run_dir / REQUESTS_FILE,
                    credentials=target.credentials,
                    faults_path=state.faults_path,
                    allow_origins=options.allow_origins,
                    loopback_only=not options.allow_remote_target,
                )
            )
            # The proxy outranks the clients (niced in pipstorm.clients.process) for the CPU.
            proxy_priority = protect_proxy(proxy.pid, mode=options.proxy_priority)
            meta.priority = {"clients_nice": CLIENT_NICE, "proxy": proxy_priority}
            clients_log = stack.enter_context(JsonlWriter(run_dir / CLIENTS_FILE))
            record = client_recorder(clients_log, {r.run_id: r for r in plan}, clock)
            pool = started = ClientPool(
                record, workers=options.workers, launch=lead.mode, temp_root=scratch
            )
            pool.start()
            state.load_sent = True
            # Late enough for the first instant's preparation (pipstorm.engine.run.plan.lead).
            clock.start(lead.start_margin_s, at=state.start_at)
            _mark_started(state, clock.t0_wall)
            # Entered last, so stopped first: before the proxy and the target it samples.
            stack.enter_context(
                HostSampler(
                    run_dir / HOST_FILE,
                    proxy_pid=proxy.pid,
                    target_pid=target.server_pid,
                    client_pids=lambda: started.pids,
                    on_sample=ProxyGuard(proxy.pid, proxy_priority),
                )
            )
            stack.enter_context(observe_target(target, run_dir, meta, emit))
            live = LiveProgress(
                run_dir / REQUESTS_FILE,
                planned_s=line.duration_s,
                t0_mono=clock.t0_mono,
                emit=emit,
                tty=sys.stderr if state.tty else None,
                quiet=options.quiet,
            )
            make_task = _task_maker(options, proxy.index_url_for)
            wait_s = options.run_timeout_s + 3 * lead.ahead_s
            _play_schedule(plan, make_task, wait_s, state, lead, pool, clock, live)
            with _no_interrupts_while_cleaning(emit):
                pool.stop()
                meta.runs_dispatched = pool.dispatched
                stack.close()  # proxy, then target: in reverse order of starting
    except (KeyboardInterrupt, Terminated) as exc:
        _interrupted(state, exc)  # during start-up or shut-down of a part
    finally:
        if pool is not None:
            pool.stop()  # idempotent; here for errors raised past the normal stop


def _note_target(meta: RunMeta, target: Target, emit: Callable[[str], None]) -> None:
    """What run.json says of the target, and a warning if its sizing could not be applied."""
    meta.target = {"kind": target.kind, "index_url": target.index_url, **target.sizing_record()}
    if target.stack is not None:
        meta.target.update(stack_meta(target.stack))
    if target.server is not None and target.server.unconfined_reason is not None:
        why = target.server.unconfined_reason
        emit(f"pipstorm: WARNING: the target runs unconfined ({why})")


def _play_schedule(  # noqa: PLR0917 - the parts of one run, from _drive
    plan: list[PlannedRun],
    make_task: Callable[[PlannedRun], ClientTask],
    wait_s: float,
    state: _RunState,
    lead: LeadPlan,
    pool: ClientPool,
    clock: RunClock,
    live: LiveProgress,
) -> None:
    """Hand out the plan and wait for its last runs; Ctrl-C, SIGTERM or a nearly full results
    disk stop it early, noted in ``run.json`` (``interrupted``) rather than raised."""
    meta, emit = state.meta, state.emit
    try:
        guard = functools.partial(check_room, state.run_dir)
        dispatch_plan(plan, pool, make_task, clock, live, ahead_s=lead.ahead_s, guard=guard)
        # Every run has been handed out; wait for the last ones (bounded by their timeout).
        wait_for_last_runs(pool, wait_s, live, clock, guard)
        live.update(clock.counts(), force=True)
        live.close()
    except (KeyboardInterrupt, Terminated) as exc:
        live.close()
        _interrupted(state, exc)
        emit("pipstorm: interrupted: stopping clients and writing the report")
    except DiskFull as exc:
        live.close()
        state.disk_full = exc
        meta.interrupted = True
        meta.warnings.append(f"stopped early: {exc}")
        emit("pipstorm: the results disk is nearly full: stopping clients")


def _report_what_fits(run_dir: Path, emit: Callable[[str], None]) -> None:
    """The reports of a run stopped for want of disk space, if they fit; else none at all (a
    half-written report would pass for a whole one)."""
    before = set(run_dir.iterdir())
    try:
        write_reports(run_dir)
    except (OSError, ReportError):  # ReportError: what write_reports makes of an OSError
        for path in set(run_dir.iterdir()) - before:
            path.unlink(missing_ok=True)
    else:
        emit(f"reports: {run_dir / 'report.md'} (and report.json)")


def _task_maker(
    options: RunOptions, index_url_for: Callable[[str], str]
) -> Callable[[PlannedRun], ClientTask]:
    """What a worker is told for each planned run: the run's own proxy prefix and the options."""

    def make(run: PlannedRun) -> ClientTask:
        return ClientTask(
            run_id=run.run_id,
            client=run.client,
            project=run.project,
            version=run.version,
            index_url=index_url_for(run.run_id),
            timeout_s=options.run_timeout_s,
            requirements=run.requirements,
            resolve_deps=options.corpus.has_dependencies,
            client_version=run.client_version or options.client_versions.get(run.client),
        )

    return make


def _mark_started(state: _RunState, started: float) -> None:
    """Time zero is known: into run.json, and into the fault plan (after=, during=bursts)."""
    state.meta.started = started
    state.meta.write(state.run_dir)
    if state.faults_path is not None:
        RunFaults.set_origin(state.faults_path, started)


def drive_shard(
    options: RunOptions,
    line: Timeline,
    plan: list[PlannedRun],
    *,
    meta: RunMeta,
    run_dir: Path,
    target: Target,
    start_at: float,
    emit: Callable[[str], None],
) -> None:
    """Play one shard's ``plan`` (``pipstorm.engine.run.shards.worker``): its own proxy and pool
    against a target opened elsewhere, offset 0 at the shared absolute ``start_at``; the streams
    land in ``run_dir`` and ``meta`` is filled in as for a whole run (no report is written here)."""
    state = _RunState(meta=meta, run_dir=run_dir, emit=emit, target=target, start_at=start_at)
    # Each generator measures its own preparation costs and hands its runs out accordingly.
    lead = _lead_plan(options, _profile(options), plan, {r.client for r in plan})
    meta.launch = lead.to_dict()
    _drive(options, line, plan, state, lead)
