"""One run spread over N generators (``pipstorm run --shards N [--cluster ADDRESS]``).

The coordinator builds the schedule exactly as a one-machine run does, opens the target, checks
the cluster (``pipstorm.engine.run.shards.cluster``), splits the schedule
(``pipstorm.engine.run.shards.split``) and submits one task per shard, pinned to one worker each,
``pure=False`` (two runs never share a result). Each shard plays its part from the shared start time
with its own proxy and pool (``pipstorm.engine.run.shards.worker``). While they play, the
coordinator pulls what each shard's streams gained into ONE results folder about once a second
(``pipstorm.engine.run.shards.stream``), which its progress line, ``--abort-on-fail`` and the live
page (``--dashboard``) read as a one-machine run's (``pipstorm.engine.run.shards.live``); at the
end each shard ships its streams whole, the coordinator appends what it lacked and puts the
folder in time order (``pipstorm.engine.rundir.merge``), and writes the same reports a
one-machine run writes, plus the per-shard table.

``--abort-on-fail`` is the coordinator's, judged over every shard's records (a shard alone sees
only its part): once a threshold can no longer pass, every shard is stopped as on Ctrl-C, and
the report of the part that ran says why.

A shard whose worker dies fails at once (``allowed-failures`` 0) and is recorded ``lost``, from
when and with its runs; it is never resubmitted, and a shard that would start after the start
time does not start at all. The run still ends with a report of what the other shards played.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.clients.drivers.twine import KIND as UPLOAD_KIND
from pipstorm.engine.report.terminal import terminal_summary
from pipstorm.engine.report.write import write_reports
from pipstorm.engine.run.execute import RunOptions, RunResult
from pipstorm.engine.run.lifecycle import UPLOADS_DIR
from pipstorm.engine.run.live.abort import AbortRun, aborted_record
from pipstorm.engine.run.live.dashboard import Dashboard
from pipstorm.engine.run.plan.client_mix import ClientChoice
from pipstorm.engine.run.plan.client_mix import warm_up as warm_up_clients
from pipstorm.engine.run.plan.load import initial_meta, plan_load
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline
from pipstorm.engine.run.progress import to_stderr
from pipstorm.engine.run.shards.cluster import check_cluster, open_cluster
from pipstorm.engine.run.shards.live import CoordinatorLive, follow
from pipstorm.engine.run.shards.split import Shard, ShardError, split, start_time
from pipstorm.engine.run.shards.stream import ShardFeed
from pipstorm.engine.run.shards.worker import (
    SHARD_RESOURCE,
    ShardJob,
    ShardResult,
    run_shard,
    stop_event_name,
)
from pipstorm.engine.run.signals import Terminated, terminate_as_interrupt
from pipstorm.engine.run.target.opening import CheckedTarget, Target, check_target, open_target
from pipstorm.engine.run.target.watch import observe_target
from pipstorm.engine.rundir.files import TARGET_LOG, make_run_dir
from pipstorm.engine.rundir.merge import put_in_time_order
from pipstorm.engine.rundir.meta import RunMeta, ShardMeta

#: After the planned end, how long the coordinator waits for shards beyond the run timeout.
FINISH_MARGIN_S = 60.0
#: After a stop was asked for, how long shards get to stop their clients and ship back.
STOP_GRACE_S = 30.0
DEFAULT_MAX_CLOCK_OFFSET_S = 0.020
#: How often the coordinator looks at its shards' futures (a lost shard shows within this).
POLL_S = 0.2


@dataclass(frozen=True)
class ShardedOptions:
    """What ``--shards``/``--cluster``/``--max-clock-offset`` add to a run."""

    shards: int
    cluster: str | None = None  # tcp://HOST:PORT of a running scheduler; None: a LocalCluster
    max_clock_offset_s: float = DEFAULT_MAX_CLOCK_OFFSET_S


@dataclass
class _Plan:
    """The run as planned by the coordinator, before any cluster is involved."""

    options: RunOptions
    sharding: ShardedOptions
    line: Timeline
    plan: list[PlannedRun]
    shards: list[Shard]
    choice: ClientChoice
    run_dir: Path
    meta: RunMeta
    emit: Callable[[str], None]
    checked: CheckedTarget  # the target, past the loopback gate
    uploads: Path | None  # the embedded target's uploads folder, when upload runs are planned
    tty: bool = False  # progress as one line rewritten in place on stderr
    results: dict[int, ShardResult] = field(default_factory=dict)
    live: CoordinatorLive | None = None  # pulls, progress and abort watch, once submitted
    feed: ShardFeed | None = None
    sent: bool = False
    stopped_by: str | None = None  # SIGINT or SIGTERM, once the run was interrupted


def execute_sharded_run(
    options: RunOptions,
    sharding: ShardedOptions,
    say: Callable[[str], None] | None = None,
    dashboard: Dashboard | None = None,
) -> RunResult:
    """Play ``options`` over ``sharding.shards`` generators and report it as one run.
    ``dashboard``: the live page (``--dashboard``), shown this run's folder once it exists."""
    run = _plan(options, sharding, say or to_stderr)
    run.tty = say is None and sys.stderr.isatty()
    if dashboard is not None:
        dashboard.attach(run.run_dir)
    try:
        _play(run)
    except Exception:
        if not run.sent:  # refused before any load: the folder would only hold run.json
            shutil.rmtree(run.run_dir, ignore_errors=True)
        raise
    finally:
        if run.run_dir.exists():
            run.meta.ended = time.time()
            run.meta.write(run.run_dir)
    report = write_reports(run.run_dir)
    run.emit(terminal_summary(report))
    run.emit(f"reports: {run.run_dir / 'report.md'} (and report.json)")
    return RunResult(
        run_dir=run.run_dir,
        report=report,
        interrupted=run.meta.interrupted,
        stopped_by=run.stopped_by,
    )


def _plan(options: RunOptions, sharding: ShardedOptions, emit: Callable[[str], None]) -> _Plan:
    """Schedule, capacity check, split and run.json, exactly as a one-machine run plans."""
    if options.faults:
        raise ShardError("--fault is not supported with --shards yet")
    if options.target.terraform_dir is not None:
        raise ShardError("--target terraform: is not supported with --shards yet")
    if options.sizing is not None:
        raise ShardError("--sizing is not supported with --shards yet")
    # A LocalCluster's shards share this machine; remote shards each hold their share.
    per_machine = None
    if sharding.cluster is not None:
        per_machine = math.ceil(options.profile.clients / sharding.shards)
    load = plan_load(options, clients_per_machine=per_machine)
    profile, limits, choice, line, plan = (
        load.profile,
        load.limits,
        load.choice,
        load.line,
        load.runs,
    )
    warnings = load.warnings
    checked = check_target(options.target, allow_remote=options.allow_remote_target)
    shards = split(plan, sharding.shards)
    warm_up_clients(choice, emit)
    run_dir = make_run_dir(options.results_root, profile.name)
    uploads = None
    if UPLOAD_KIND in choice.kinds and options.target.embedded:
        uploads = run_dir / UPLOADS_DIR
        uploads.mkdir()
    meta = initial_meta(options, profile, line, len(plan), limits)
    meta.clients = choice.to_dict()
    meta.warnings = warnings
    meta.shards = [ShardMeta(index=s.index, runs=s.run_ids) for s in shards]
    for warning in warnings:
        emit(f"pipstorm: WARNING: {warning}")
    meta.write(run_dir)
    return _Plan(
        options, sharding, line, plan, shards, choice, run_dir, meta, emit, checked, uploads
    )


def _play(run: _Plan) -> None:
    """Target, cluster and checks, then the shards from one start time; their streams followed
    as they play and merged into the run's folder."""
    options, sharding, meta, emit = run.options, run.sharding, run.meta, run.emit
    token = secrets.token_hex(6)
    with ExitStack() as stack:
        stack.enter_context(terminate_as_interrupt())
        target = stack.enter_context(
            open_target(
                run.checked,
                corpus=options.corpus,
                log_path=run.run_dir / TARGET_LOG,
                upload_dir=run.uploads,
            )
        )
        meta.target = {"kind": target.kind, "index_url": target.index_url}
        client = stack.enter_context(open_cluster(sharding.shards, sharding.cluster))
        workers = check_cluster(
            client,
            sharding.shards,
            index_url=target.index_url,
            credentials=target.credentials,
            project=options.corpus.project_names()[0],
            max_clock_offset_s=sharding.max_clock_offset_s,
        )
        if sharding.cluster is not None:  # remote machines install their own tools
            client.run(warm_up_clients, run.choice, _quiet)
        # Its death is seen at once (--abort-on-fail stops on it); stopped before the target.
        stack.enter_context(observe_target(target, run.run_dir, meta, emit))
        t0 = start_time(run.shards)
        for shard, worker in zip(run.shards, workers, strict=True):
            entry = meta.shards[shard.index]
            entry.worker, entry.host = worker.address, worker.host
            entry.clock_offset_s, entry.clock_rtt_s = worker.clock_offset_s, worker.clock_rtt_s
        meta.started = t0
        meta.write(run.run_dir)
        emit(
            f"pipstorm: {meta.profile_name}: {len(run.plan)} client runs in "
            f"{run.line.duration_s:g} s over {sharding.shards} shards against "
            f"{target.index_url} -> {run.run_dir}"
        )
        submitted = time.time()
        futures = _submit(client, run, workers, target, t0=t0, token=token)
        run.feed = ShardFeed(
            run.run_dir,
            token,
            hosts={s.index: meta.shards[s.index].host or "?" for s in run.shards},
            workers={s.index: w.address for s, w in zip(run.shards, workers, strict=True)},
        )
        run.live = follow(
            run.feed,
            client,
            shards=run.shards,
            meta=meta,
            abort_on_fail=options.abort_on_fail,
            quiet=options.quiet,
            emit=emit,
            tty=run.tty,
        )
        deadline = t0 + run.line.duration_s + options.run_timeout_s + FINISH_MARGIN_S
        try:
            _collect(client, futures, run, deadline=deadline, token=token)
        finally:
            run.live.stop(played=not meta.interrupted and meta.aborted is None)
        for index, result in run.results.items():
            _record(meta.shards[index], result, submitted)
        meta.runs_dispatched = sum(r.runs_dispatched for r in run.results.values())
        put_in_time_order(run.run_dir)


def _submit(
    client: Any,  # noqa: ANN401 - distributed.Client
    run: _Plan,
    workers: list[Any],
    target: Target,
    *,
    t0: float,
    token: str,
) -> dict[Any, int]:
    """One task per shard, pinned to its worker, never retried; the futures by shard index."""
    futures = {
        client.submit(
            run_shard,
            ShardJob(
                shard=shard,
                start_at=t0,
                clock_offset_s=worker.clock_offset_s,
                options=run.options,
                line=run.line,
                target_kind=target.kind,
                index_url=target.index_url,
                credentials=target.credentials,
                corpus=run.options.corpus,
                token=token,
            ),
            key=f"pipstorm-shard-{token}-{shard.index}",
            pure=False,
            retries=0,
            resources={SHARD_RESOURCE: 1},
            workers=[worker.address],
            allow_other_workers=False,
        ): shard.index
        for shard, worker in zip(run.shards, workers, strict=True)
    }
    run.sent = True
    return futures


def lost_shards(meta: RunMeta) -> list[ShardMeta]:
    """The shards that did not play their part (lost, late, failed)."""
    return [s for s in meta.shards if s.status not in {"ok", "interrupted"}]


def _quiet(line: str) -> None:
    """A worker's warm-up says nothing: the coordinator already said it."""


def _collect(
    client: Any,  # noqa: ANN401 - distributed.Client
    futures: dict[Any, int],
    run: _Plan,
    *,
    deadline: float,
    token: str,
) -> None:
    """Wait for every shard, following their streams; a lost one is marked the moment the
    scheduler says so. Ctrl-C, SIGTERM, ``--abort-on-fail`` or the deadline stops every shard,
    which then ships back what it played."""
    from distributed import Event

    meta, emit, live = run.meta, run.emit, run.live
    pending = dict(futures)
    try:
        while pending:
            for future in [f for f in pending if f.status != "pending"]:
                _settle(future, pending.pop(future), run)
            if time.time() > deadline:
                raise TimeoutError
            if live is not None and pending:
                live.tick()
            time.sleep(POLL_S)
    except (KeyboardInterrupt, Terminated, TimeoutError, AbortRun) as exc:
        if live is not None:
            live.end_line()
        if isinstance(exc, AbortRun):
            meta.aborted = aborted_record(str(exc), meta)
            meta.write(run.run_dir)  # the live page says it while the shards stop
            emit(f"pipstorm: aborting (--abort-on-fail): {exc}; stopping every shard")
        else:
            meta.interrupted = not isinstance(exc, TimeoutError)
            if meta.interrupted:
                run.stopped_by = str(exc) if isinstance(exc, Terminated) else "SIGINT"
            emit(
                "pipstorm: stopping every shard: their clients are stopped and their records "
                "shipped"
            )
        Event(stop_event_name(token), client=client).set()  # type: ignore[no-untyped-call]
        stop_at = time.time() + STOP_GRACE_S
        for future, index in pending.items():
            with contextlib.suppress(Exception):  # settled just below, with its reason
                future.result(timeout=max(0.1, stop_at - time.time()))
            _settle(future, index, run)


def _settle(
    future: Any,  # noqa: ANN401 - distributed.Future
    index: int,
    run: _Plan,
) -> None:
    """Record how shard ``index`` ended: its result (the rest of its streams appended to the
    run's), or lost (its worker died: what was pulled before stays)."""
    entry, emit = run.meta.shards[index], run.emit
    if future.status == "finished":
        result: ShardResult = future.result()
        run.results[index] = result
        if run.feed is not None:
            run.feed.close(index, result.packed)
        entry.status = result.status
        if run.live is not None:
            run.live.end_line()
        emit(f"pipstorm: shard {index} on {entry.host}: {result.status}")
        return
    if run.feed is not None:
        run.feed.lose(index)
    if run.live is not None:
        run.live.end_line()
    if future.status in {"error", "cancelled", "lost"}:
        exc = future.exception() if future.status == "error" else None
        entry.status = "lost"
        entry.lost_at = time.time()
        entry.error = (
            f"its worker {entry.worker} died ({type(exc).__name__})"
            if exc is not None
            else f"its task was {future.status}"
        )
        emit(f"pipstorm: shard {index} LOST: {entry.error}; its runs are not replayed")
        return
    entry.status = "failed"
    entry.error = "did not finish in time"
    future.cancel()


def _record(entry: ShardMeta, result: ShardResult, submitted: float) -> None:
    entry.started, entry.ended = result.started, result.ended
    entry.runs_dispatched = result.runs_dispatched
    entry.dispatch_s = result.began - submitted
    if result.error:
        entry.error = result.error
