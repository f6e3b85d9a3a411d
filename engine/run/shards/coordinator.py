"""One run spread over N generators (``pipstorm run --shards N [--cluster ADDRESS]``).

The coordinator builds the schedule exactly as a one-machine run does, opens the target, checks
the cluster (``pipstorm.engine.run.shards.cluster``), splits the schedule
(``pipstorm.engine.run.shards.split``) and submits one task per shard, pinned to one worker each,
``pure=False`` (two runs never share a result). Each shard plays its part from the shared start time
with its own proxy and pool (``pipstorm.engine.run.shards.worker``) and ships its streams back; the
coordinator merges them into ONE results folder (``pipstorm.engine.rundir.merge``) and writes the
same reports a one-machine run writes, plus the per-shard table.

A shard whose worker dies fails at once (``allowed-failures`` 0) and is recorded ``lost``, from
when and with its runs; it is never resubmitted, and a shard that would start after the start
time does not start at all. The run still ends with a report of what the other shards played.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import shutil
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
from pipstorm.engine.run.plan.client_mix import ClientChoice
from pipstorm.engine.run.plan.client_mix import warm_up as warm_up_clients
from pipstorm.engine.run.plan.load import initial_meta, plan_load
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline
from pipstorm.engine.run.progress import to_stderr
from pipstorm.engine.run.shards.cluster import check_cluster, open_cluster
from pipstorm.engine.run.shards.split import Shard, ShardError, split, start_time
from pipstorm.engine.run.shards.worker import (
    SHARD_RESOURCE,
    ShardJob,
    ShardResult,
    run_shard,
    stop_event_name,
)
from pipstorm.engine.run.signals import Terminated, terminate_as_interrupt
from pipstorm.engine.run.target.opening import CheckedTarget, check_target, open_target
from pipstorm.engine.rundir.files import TARGET_LOG, make_run_dir
from pipstorm.engine.rundir.merge import ShardStreams, merge_into
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
    results: dict[int, ShardResult] = field(default_factory=dict)
    sent: bool = False
    stopped_by: str | None = None  # SIGINT or SIGTERM, once the run was interrupted


def execute_sharded_run(
    options: RunOptions, sharding: ShardedOptions, say: Callable[[str], None] | None = None
) -> RunResult:
    """Play ``options`` over ``sharding.shards`` generators and report it as one run."""
    run = _plan(options, sharding, say or to_stderr)
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
    """Target, cluster and checks, then the shards from one start time; merged streams."""
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
        futures = {
            client.submit(
                run_shard,
                ShardJob(
                    shard=shard,
                    start_at=t0,
                    clock_offset_s=worker.clock_offset_s,
                    options=options,
                    line=run.line,
                    target_kind=target.kind,
                    index_url=target.index_url,
                    credentials=target.credentials,
                    corpus=options.corpus,
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
        deadline = t0 + run.line.duration_s + options.run_timeout_s + FINISH_MARGIN_S
        _collect(client, futures, run, deadline=deadline, token=token)
        for index, result in run.results.items():
            _record(meta.shards[index], result, submitted)
        meta.runs_dispatched = sum(r.runs_dispatched for r in run.results.values())
        streams = [ShardStreams(r.index, r.host, r.packed) for r in run.results.values()]
        merge_into(run.run_dir, streams)


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
    """Wait for every shard; a lost one is marked the moment the scheduler says so. Ctrl-C,
    SIGTERM or the deadline stops every shard, which then ships back what it played."""
    from distributed import Event

    results, meta, emit = run.results, run.meta, run.emit
    pending = dict(futures)
    try:
        while pending:
            for future in [f for f in pending if f.status != "pending"]:
                _settle(future, pending.pop(future), results, meta, emit)
            if time.time() > deadline:
                raise TimeoutError
            time.sleep(POLL_S)
    except (KeyboardInterrupt, Terminated, TimeoutError) as exc:
        meta.interrupted = not isinstance(exc, TimeoutError)
        if meta.interrupted:
            run.stopped_by = str(exc) if isinstance(exc, Terminated) else "SIGINT"
        emit("pipstorm: stopping every shard: their clients are stopped and their records shipped")
        Event(stop_event_name(token), client=client).set()  # type: ignore[no-untyped-call]
        stop_at = time.time() + STOP_GRACE_S
        for future, index in pending.items():
            with contextlib.suppress(Exception):  # settled just below, with its reason
                future.result(timeout=max(0.1, stop_at - time.time()))
            _settle(future, index, results, meta, emit)


def _settle(
    future: Any,  # noqa: ANN401 - distributed.Future
    index: int,
    results: dict[int, ShardResult],
    meta: RunMeta,
    emit: Callable[[str], None],
) -> None:
    """Record how shard ``index`` ended: its result, or lost (its worker died)."""
    entry = meta.shards[index]
    if future.status == "finished":
        result: ShardResult = future.result()
        results[index] = result
        entry.status = result.status
        emit(f"pipstorm: shard {index} on {entry.host}: {result.status}")
        return
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
