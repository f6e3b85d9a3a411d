"""The parts every run starts and stops the same way, for ``pipstorm run`` and ``retry-lab``.

A run's folder is started (``write_start``), then its parts are opened in order on one
``ExitStack`` (``open_parts``): SIGTERM taken as Ctrl-C, a scratch folder a reaper removes if the
engine is SIGKILLed, the target, the recording proxy, the ``clients.jsonl`` writer. The stack
closes them in reverse: the proxy before the target it forwards to. Time zero is written once
known (``mark_started``), and an interruption is noted in ``run.json``, not raised.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from pipstorm.engine.run import reaper
from pipstorm.engine.run.disk_room import DiskFull, check_room
from pipstorm.engine.run.live.abort import AbortWatch
from pipstorm.engine.run.options import RunOptions
from pipstorm.engine.run.plan.faults import RunFaults
from pipstorm.engine.run.plan.schedule import PlannedRun, Timeline
from pipstorm.engine.run.signals import Terminated, terminate_as_interrupt
from pipstorm.engine.run.target.cloudwatch import stack_meta
from pipstorm.engine.run.target.opening import CheckedTarget, Target, open_target
from pipstorm.engine.rundir.files import CLIENTS_FILE, REQUESTS_FILE, TARGET_LOG
from pipstorm.engine.rundir.jsonl import JsonlWriter
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.proxy.control import RecordingProxy

#: Where an embedded target writes what upload runs publish, inside the run's folder.
UPLOADS_DIR = "uploads"


@dataclass
class RunState:
    """What one run knows as it goes, shared by its steps."""

    meta: RunMeta
    run_dir: Path
    emit: Callable[[str], None]
    tty: bool = False  # progress as one line rewritten in place on stderr
    target: Target | None = None  # an index already open (the pytest plugin's), else opened here
    checked: CheckedTarget | None = None  # the target to open, past the loopback gate
    #: The embedded target's uploads folder, made by ``write_start`` when upload runs are planned.
    uploads: Path | None = None
    faults_path: Path | None = None  # faults.json, handed to the proxy (engine.run.plan.faults)
    load_sent: bool = False
    stopped_by: str | None = None  # SIGINT or SIGTERM, once the run was interrupted
    start_at: float | None = None  # a shard's absolute offset 0 (engine.run.shards.worker)
    disk_full: DiskFull | None = None  # the run was stopped for want of disk space
    abort: AbortWatch | None = None  # --abort-on-fail's watch, checked with the disk guard


@dataclass(frozen=True)
class RunParts:
    """The parts ``open_parts`` started; they stop when its ``ExitStack`` closes."""

    scratch: Path  # the clients' and launchers' work folders
    target: Target
    proxy: RecordingProxy
    clients_log: JsonlWriter


def write_start(
    state: RunState,
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
            state.uploads = run_dir / UPLOADS_DIR
            state.uploads.mkdir()
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


def open_parts(stack: ExitStack, options: RunOptions, state: RunState) -> RunParts:
    """SIGTERM as Ctrl-C, the scratch folder, the target (unless one was given), the proxy and
    the clients log, each entered on ``stack``; what run.json says of the target is noted."""
    stack.enter_context(terminate_as_interrupt())
    # Removed last, or by a reaper if this process is SIGKILLed (pipstorm.engine.run.reaper).
    scratch = stack.enter_context(reaper.guarded_folder("pipstorm-run-"))
    target = state.target or stack.enter_context(
        open_target(
            state.checked or CheckedTarget(),
            corpus=options.corpus,
            log_path=state.run_dir / TARGET_LOG,
            upload_dir=state.uploads,
            sizing=options.sizing,
            allow_unconfined=options.allow_unconfined,
            probe_listing=options.probe_listing,
            temp_root=scratch,  # its htpasswd folder is reaped with pipstorm's
        )
    )
    state.target = target
    note_target(state.meta, target, state.emit)
    proxy = stack.enter_context(
        RecordingProxy(
            target.index_url,
            state.run_dir / REQUESTS_FILE,
            credentials=target.credentials,
            faults_path=state.faults_path,
            allow_origins=options.allow_origins,
            loopback_only=not options.allow_remote_target,
        )
    )
    clients_log = stack.enter_context(JsonlWriter(state.run_dir / CLIENTS_FILE))
    return RunParts(scratch=scratch, target=target, proxy=proxy, clients_log=clients_log)


def note_target(meta: RunMeta, target: Target, emit: Callable[[str], None]) -> None:
    """What run.json says of the target, and a warning if its sizing could not be applied."""
    meta.target = {"kind": target.kind, "index_url": target.index_url, **target.sizing_record()}
    if target.stack is not None:
        meta.target.update(stack_meta(target.stack))
    if target.server is not None and target.server.unconfined_reason is not None:
        why = target.server.unconfined_reason
        emit(f"pipstorm: WARNING: the target runs unconfined ({why})")


def mark_started(state: RunState, started: float) -> None:
    """Time zero is known: into run.json, and into the fault plan (after=, during=bursts)."""
    state.meta.started = started
    state.meta.write(state.run_dir)
    if state.faults_path is not None:
        RunFaults.set_origin(state.faults_path, started)


def note_interrupted(state: RunState, exc: BaseException) -> None:
    """Ctrl-C or SIGTERM: run.json says ``interrupted``, the result says which signal."""
    state.meta.interrupted = True
    if state.stopped_by is None:
        state.stopped_by = str(exc) if isinstance(exc, Terminated) else "SIGINT"


@contextmanager
def no_interrupts_while_cleaning(say: Callable[[str], None]) -> Iterator[None]:
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
