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
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipstorm.clients.drivers.twine import KIND as UPLOAD_KIND
from pipstorm.clients.process import CLIENT_NICE, CLIENT_NICE_AFTER_SEND
from pipstorm.clients.task import ClientTask
from pipstorm.engine.report.model import Report, ReportError
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.run.disk_room import DiskFull, check_room
from pipstorm.engine.run.dispatch import (
    RunClock,
    client_recorder,
    dispatch_plan,
    wait_for_last_runs,
)
from pipstorm.engine.run.lifecycle import (
    RunParts,
    RunState,
    mark_started,
    no_interrupts_while_cleaning,
    note_interrupted,
    open_parts,
    write_start,
)
from pipstorm.engine.run.live.abort import AbortRun, AbortWatch, aborted_record
from pipstorm.engine.run.live.dashboard import Dashboard
from pipstorm.engine.run.options import RunOptions
from pipstorm.engine.run.plan.client_mix import warm_up as warm_up_clients
from pipstorm.engine.run.plan.faults import RunFaults
from pipstorm.engine.run.plan.lead import (
    LeadPlan,
    default_budget_mb,
    kind_modes,
    measure_costs,
    plan_lead,
    touch_cost,
)
from pipstorm.engine.run.plan.load import LoadPlan, initial_meta, plan_load
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline
from pipstorm.engine.run.pool import ClientGroups, ClientPool
from pipstorm.engine.run.priority import (
    ProxyGuard,
    clients_cgroup,
    protect_proxy,
    protect_target,
    release_first,
)
from pipstorm.engine.run.progress import LiveProgress, to_stderr
from pipstorm.engine.run.sampler import HostSampler
from pipstorm.engine.run.signals import Terminated
from pipstorm.engine.run.target.cloudwatch import fetch_run_cloudwatch
from pipstorm.engine.run.target.local import is_loopback_url, local_target_pid
from pipstorm.engine.run.target.opening import Target, check_target
from pipstorm.engine.run.target.watch import observe_target
from pipstorm.engine.rundir.files import HOST_FILE, REQUESTS_FILE, make_run_dir
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.client_cgroup import CLIENTS_SHARES, READY_SHARES, SENT_SHARES
from pipstorm.infra.pypiserver.counters import read_counters
from pipstorm.packages.cache import default_cache_root

__all__ = ["RunOptions", "RunResult", "drive_shard", "execute_run", "initial_meta", "plan_load"]

#: The first tick comes this long after the pool starts, so tick 0 is not late by design.
START_MARGIN_S = 2.0
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as shells report 128 + 2
EXIT_TERMINATED = 143  # SIGTERM: stopped the same way, reported as shells do (128 + 15)


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


def execute_run(
    options: RunOptions,
    say: Callable[[str], None] | None = None,
    target: Target | None = None,
    load: LoadPlan | None = None,
    dashboard: Dashboard | None = None,
) -> RunResult:
    """Run ``options`` and return the verdict. Raises the components' one-line errors for bad
    input or an unusable target before any load is sent.

    ``target``: an index already open (the pytest plugin's session target), used instead of
    opening one from ``options``; the caller keeps it up and stops it. ``load``: a plan made
    elsewhere (``pipstorm replay``'s, from a log) instead of the profile's. ``dashboard``: the
    live page (``--dashboard``, opened by the caller), shown this run's folder once it exists."""
    emit: Callable[[str], None] = say or to_stderr
    load = load or plan_load(options)
    # Read the stack and refuse a non-loopback target before anything else.
    checked = (
        None
        if target is not None
        else check_target(options.target, allow_remote=options.allow_remote_target)
    )
    faults = RunFaults.from_specs((*options.faults, *load.profile.faults), seed=options.seed)
    warm_up_clients(load.choice, emit)  # tool installs are the generator's cost: before any load
    lead = _lead_plan(options, load.runs, load.choice.kinds)
    state = RunState(
        meta=_start_meta(options, load, lead, faults, emit),
        run_dir=make_run_dir(options.results_root, load.profile.name),
        emit=emit,
        tty=say is None and sys.stderr.isatty(),
        target=target,
        checked=checked,
    )
    if dashboard is not None:
        dashboard.attach(state.run_dir)
    uploads = UPLOAD_KIND in load.choice.kinds and target is None
    write_start(state, load.runs, faults, load.line, uploads=uploads)
    _play(options, load.line, load.runs, state, lead)
    _fetch_cloudwatch(options, state)
    report = write_reports(state.run_dir)
    emit(terminal_summary(report))
    emit(f"reports: {state.run_dir / 'report.md'} (and report.json)")
    return RunResult(
        run_dir=state.run_dir,
        report=report,
        interrupted=state.meta.interrupted,
        stopped_by=state.stopped_by,
    )


def _start_meta(
    options: RunOptions,
    load: LoadPlan,
    lead: LeadPlan,
    faults: RunFaults | None,
    emit: Callable[[str], None],
) -> RunMeta:
    """run.json before any load: the plan, the clients, the launch, the faults, and the
    warnings (capacity and lead time), each said once here too."""
    meta = initial_meta(options, load.profile, load.line, len(load.runs), load.limits)
    meta.clients = load.choice.to_dict()
    # A lead-time problem is said before any load and recorded like the capacity warnings.
    meta.warnings = [*load.warnings, *lead.warnings()]
    for warning in meta.warnings:
        emit(f"pipstorm: WARNING: {warning}")
    meta.launch = lead.to_dict()
    meta.faults = faults.meta() if faults is not None else []
    return meta


def _play(
    options: RunOptions, line: Timeline, plan: list[PlannedRun], state: RunState, lead: LeadPlan
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


def _fetch_cloudwatch(options: RunOptions, state: RunState) -> None:
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


def _lead_plan(options: RunOptions, plan: list[PlannedRun], kinds: Iterable[str]) -> LeadPlan:
    """The launch mode, measured preparation costs and lead time (said once the target is
    open, before any load)."""
    mode = options.launch_mode
    modes = kind_modes(mode, kinds)
    versions = {k: options.client_versions.get(k) for k in modes}
    costs = measure_costs(modes, versions)
    # Measured after the probes: what they freed is not what a burst will find.
    touch = touch_cost(default_cache_root()) if any(c.held_mb for c in costs) else 0.0
    return plan_lead(
        [(run.offset_s, run.client) for run in plan],
        costs,
        mode=mode,
        cores=os.cpu_count() or 1,
        budget_mb=options.memory_budget_mb or default_budget_mb(),
        start_margin_s=START_MARGIN_S,
        touch_ms_per_mb=touch,
    )


def _drive(
    options: RunOptions,
    line: Timeline,
    plan: list[PlannedRun],
    state: RunState,
    lead: LeadPlan,
) -> None:
    """Start target, proxy and pool, play the schedule, then stop everything.

    Whatever happens, everything started here is stopped before this returns or raises; an
    interruption is noted in ``run.json`` (``interrupted``), not raised.
    """
    pool: ClientPool | None = None
    try:
        with ExitStack() as stack:
            parts = open_parts(stack, options, state)
            _say_start(state, line, lead)
            clock = RunClock()  # offset 0, known once the pool is up
            wanted = lead.mode == "warm" and options.proxy_priority != "none"
            groups = _client_groups(stack, state, lead, wanted=wanted)
            pool = _start_pool(options, plan, state, lead, parts, clock, groups)
            # Stopped before the cgroups it runs in are removed (removal kills what is left).
            stack.callback(pool.stop)
            proxy_priority = state.meta.priority["proxy"]
            # Entered last, so stopped first: before the proxy and the target they watch.
            _watch(stack, state, parts, pool, proxy_priority)
            live = _live_progress(options, line, state, clock)
            make_task = _task_maker(options, parts.proxy.index_url_for)
            if options.abort_on_fail:
                state.abort = AbortWatch(
                    state.run_dir / REQUESTS_FILE,
                    state.meta,
                    lambda: (clock.finished, clock.failed),
                )
            wait_s = options.run_timeout_s + 3 * lead.ahead_s
            _play_schedule(plan, make_task, wait_s, state, lead, pool, clock, live)
            with no_interrupts_while_cleaning(state.emit):
                pool.stop()
                state.meta.runs_dispatched = pool.dispatched
                stack.close()  # proxy, then target: in reverse order of starting
    except (KeyboardInterrupt, Terminated) as exc:
        note_interrupted(state, exc)  # during start-up or shut-down of a part
    finally:
        if pool is not None:
            pool.stop()  # idempotent; here for errors raised past the normal stop


def _client_groups(
    stack: ExitStack, state: RunState, lead: LeadPlan, *, wanted: bool
) -> ClientGroups:
    """The clients' cpu cgroups (``pipstorm.infra.client_cgroup``), entered on ``stack``; each
    one's record in ``run.json``'s ``priority``. The ready group only where a burst's release
    is small enough to come first (``release_first``)."""

    def group(key: str, shares: int, *, wanted: bool = wanted) -> str | None:
        record = state.meta.priority.setdefault(key, {})
        return stack.enter_context(clients_cgroup(record, wanted=wanted, shares=shares))

    not_first = release_first(lead.largest_instant, len(os.sched_getaffinity(0)))
    if wanted and not_first is not None:
        state.meta.priority["clients_cgroup_ready"] = {"applied": False, "reason": not_first}
    return ClientGroups(
        clients=group("clients_cgroup", CLIENTS_SHARES),
        ready=group("clients_cgroup_ready", READY_SHARES, wanted=wanted and not_first is None),
        after_send=group("clients_cgroup_after_send", SENT_SHARES),
    )


def _say_start(state: RunState, line: Timeline, lead: LeadPlan) -> None:
    """The run's first lines: what it plays against what, and its launch plan."""
    meta, target = state.meta, state.target
    index_url = target.index_url if target is not None else "?"
    state.emit(
        f"pipstorm: {meta.profile_name}: {meta.runs_planned} client runs in "
        f"{line.duration_s:g} s against {index_url} -> {state.run_dir}"
    )
    state.emit(f"pipstorm: {lead.summary()}")


def _start_pool(  # noqa: PLR0917 - the parts of one run, from _drive
    options: RunOptions,
    plan: list[PlannedRun],
    state: RunState,
    lead: LeadPlan,
    parts: RunParts,
    clock: RunClock,
    groups: ClientGroups,
) -> ClientPool:
    """The proxy protected, the pool's workers started, then time zero (late enough for the
    first instant's preparation, pipstorm.engine.run.plan.lead) into run.json."""
    # The proxy and the embedded target outrank the clients (niced in pipstorm.clients.process,
    # lowered further once their first request is sent: CLIENT_NICE_AFTER_SEND) for the CPU.
    proxy_priority = protect_proxy(parts.proxy.pid, mode=options.proxy_priority)
    state.meta.priority |= {
        "clients_nice": CLIENT_NICE,
        "clients_nice_after_send": CLIENT_NICE_AFTER_SEND if lead.mode == "warm" else None,
        "proxy": proxy_priority,
    }
    if parts.target.server_pid is not None and options.proxy_priority != "none":
        state.meta.priority["target"] = protect_target(parts.target.server_pid)
    record = client_recorder(parts.clients_log, {r.run_id: r for r in plan}, clock)
    pool = ClientPool(
        record,
        workers=options.workers,
        launch=lead.mode,
        temp_root=parts.scratch,
        groups=groups,
    )
    pool.start()
    if groups.clients is not None:
        state.meta.priority["clients_cgroup"]["workers"] = pool.workers_in_group
    state.load_sent = True
    clock.start(lead.start_margin_s, at=state.start_at)
    mark_started(state, clock.t0_wall)
    return pool


def _watch(
    stack: ExitStack,
    state: RunState,
    parts: RunParts,
    pool: ClientPool,
    proxy_priority: dict[str, Any],
) -> None:
    """The host sampler (and the proxy's priority guard on it), the target's death watch and
    its cgroup, entered on ``stack``.

    A local target is sampled whether pipstorm started it (the embedded server) or not (the
    process listening on a loopback ``--index-url``: ``pipstorm.engine.run.target.local``);
    ``run.json``'s ``target.watched_pid`` says which process was, null when none was found."""
    target = parts.target
    target_pid = target.server_pid
    if target_pid is None and is_loopback_url(target.index_url):
        target_pid = local_target_pid(target.index_url)
        state.meta.target["local"] = True
        state.meta.target["watched_pid"] = target_pid
    cgroup = target.server.cgroup if target.server is not None else None
    throttled = None if cgroup is None else lambda: read_counters(cgroup).throttled_s
    stack.enter_context(
        HostSampler(
            state.run_dir / HOST_FILE,
            proxy_pid=parts.proxy.pid,
            target_pid=target_pid,
            client_pids=lambda: pool.pids,
            on_sample=ProxyGuard(parts.proxy.pid, proxy_priority),
            target_throttled_s=throttled,
        )
    )
    stack.enter_context(observe_target(parts.target, state.run_dir, state.meta, state.emit))


def _live_progress(
    options: RunOptions, line: Timeline, state: RunState, clock: RunClock
) -> LiveProgress:
    return LiveProgress(
        state.run_dir / REQUESTS_FILE,
        planned_s=line.duration_s,
        t0_mono=clock.t0_mono,
        emit=state.emit,
        tty=sys.stderr if state.tty else None,
        quiet=options.quiet,
    )


def _play_schedule(  # noqa: PLR0917 - the parts of one run, from _drive
    plan: list[PlannedRun],
    make_task: Callable[[PlannedRun], ClientTask],
    wait_s: float,
    state: RunState,
    lead: LeadPlan,
    pool: ClientPool,
    clock: RunClock,
    live: LiveProgress,
) -> None:
    """Hand out the plan and wait for its last runs; Ctrl-C, SIGTERM or a nearly full results
    disk stop it early, noted in ``run.json`` (``interrupted``) rather than raised."""
    meta, emit = state.meta, state.emit
    try:
        guard = functools.partial(_guard, state)
        dispatch_plan(plan, pool, make_task, clock, live, ahead_s=lead.ahead_s, guard=guard)
        # Every run has been handed out; wait for the last ones (bounded by their timeout).
        wait_for_last_runs(pool, wait_s, live, clock, guard)
        live.update(clock.counts(), force=True)
        live.close()
    except (KeyboardInterrupt, Terminated) as exc:
        live.close()
        note_interrupted(state, exc)
        emit("pipstorm: interrupted: stopping clients and writing the report")
    except AbortRun as exc:
        live.close()
        meta.aborted = aborted_record(str(exc), meta)
        emit(f"pipstorm: aborting (--abort-on-fail): {exc}; stopping clients")
    except DiskFull as exc:
        live.close()
        state.disk_full = exc
        meta.interrupted = True
        meta.warnings.append(f"stopped early: {exc}")
        emit("pipstorm: the results disk is nearly full: stopping clients")


def _guard(state: RunState) -> None:
    """Called twice a second while the run plays: room on the disk, then ``--abort-on-fail``."""
    check_room(state.run_dir)
    if state.abort is not None:
        state.abort.check()


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
    state = RunState(meta=meta, run_dir=run_dir, emit=emit, target=target, start_at=start_at)
    # Each generator measures its own preparation costs and hands its runs out accordingly.
    lead = _lead_plan(options, plan, {r.client for r in plan})
    meta.launch = lead.to_dict()
    _drive(options, line, plan, state, lead)
