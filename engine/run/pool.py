"""The process pool that launches client runs on time.

Why processes and threads: a run spends ~0.15 CPU-s in Python making its venv and then only
waits for its client process. Worker processes spread the venv work over the cores (the GIL
would serialise it in one process); inside a worker, one thread per run waits, so any number
of runs can be in flight and no run ever waits for another to finish (open model).

Each run is handed to a worker ahead of its intended start (``pipstorm.engine.run.plan.lead`` says
how far); the worker prepares it at once and releases it at the intended moment (CLOCK_MONOTONIC is
shared by all processes on Linux). What preparing costs therefore shows up as lag only when the
generator cannot keep up, and then it is recorded, never hidden.

Two launch modes (``pipstorm.engine.run.plan.profiles.LAUNCH_MODES``, checked there): ``exec``
makes a throwaway venv (or project) and spawns the client process at its instant; ``warm``
forks the run from a launcher that has imported the client (``pipstorm.clients.warm.run``): the
child is gated at its instant with interpreter start, imports and the client's pre-network
start-up already behind it. Kinds without a warm launch (uv,
http) are exec'd in either mode. A worker's launchers die with it.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

from pipstorm.clients.errors import UnknownClientError
from pipstorm.clients.process import ProcessRegistry
from pipstorm.clients.runner import launch, prepared
from pipstorm.clients.task import ClientResult, ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import launch_warm, warm_capable, warm_prepared
from pipstorm.engine.errors import UsageError
from pipstorm.infra.client_cgroup import move_process
from pipstorm.infra.credentials import SECRET_ENV_VARS

#: How often an idle worker checks that its parent is still alive.
PARENT_CHECK_S = 1.0


class PoolError(UsageError):
    """The pool cannot go on (a worker died, a task no driver can run); one line."""


@dataclass(frozen=True)
class ClientGroups:
    """The ``cgroup.procs`` files of the clients' cpu cgroups (``pipstorm.infra.client_cgroup``;
    None: not made): ``clients`` the workers are put in as they start (everything they launch is
    born there), ``ready`` a warm run moves into when it reaches its gate (prepared, waiting for
    its instant), ``after_send`` the one it moves on to once its first request is sent."""

    clients: str | None = None
    ready: str | None = None
    after_send: str | None = None


@dataclass(frozen=True)
class Dispatch:
    """A task for a worker and the CLOCK_MONOTONIC moment it is due."""

    task: ClientTask
    due_mono: float


def _worker_main(
    index: int,
    inbox: Queue[Dispatch | None],
    outbox: Queue[tuple[str, Any]],
    temp_root: str | None,
    launch_mode: str = "exec",
    *,
    cgroup_ready: str | None = None,
    cgroup_after_send: str | None = None,
) -> None:
    """A worker: take dispatches until told to stop (None) or orphaned, then stop its clients."""
    # Ctrl-C on the terminal reaches the whole foreground process group; the parent decides how
    # to stop, so workers ignore SIGINT and treat SIGTERM as "stop now".
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    registry = ProcessRegistry()
    threads: list[threading.Thread] = []
    parent = os.getppid()
    root = Path(temp_root) if temp_root else None
    launchers = (
        Launchers(root, cgroup_ready=cgroup_ready, cgroup_after_send=cgroup_after_send)
        if launch_mode == "warm"
        else None
    )
    worker = _Worker(registry, stop, outbox, root, launchers)
    import virtualenv  # noqa: F401  # warm the import so the first run is not late

    while not stop.is_set():
        try:
            item = inbox.get(timeout=PARENT_CHECK_S)
        except queue.Empty:
            if os.getppid() != parent:
                # The parent died without telling us: clean up and go. Nobody reads the outbox
                # any more, so its feeder must not hold our exit until the pipe drains (a full
                # pipe mid-burst kept orphaned workers alive, tests/e2e/test_kill.py).
                outbox.cancel_join_thread()
                break
            continue
        if item is None:
            break
        thread = threading.Thread(
            target=_run_one,
            args=(item, worker),
            name=item.task.run_id,
            daemon=True,
        )
        thread.start()
        threads.append(thread)
        threads = [t for t in threads if t.is_alive()]
    stop.set()
    registry.stop_all()
    for thread in threads:
        thread.join(timeout=10)
    if launchers is not None:
        launchers.close()
    outbox.put(("exit", index))


@dataclass(frozen=True)
class _Worker:
    """What every run thread of a worker shares."""

    registry: ProcessRegistry
    stop: threading.Event
    outbox: Queue[tuple[str, Any]]
    temp_root: Path | None
    launchers: Launchers | None


def _run_one(item: Dispatch, worker: _Worker) -> None:
    if worker.launchers is not None and warm_capable(item.task.client):
        _run_warm(item, worker, worker.launchers)
        return
    try:
        with prepared(item.task, temp_root=worker.temp_root) as prep:
            if worker.stop.wait(max(0.0, item.due_mono - time.monotonic())):
                return  # stopped before it was due: the run never happened
            result = launch(prep, registry=worker.registry)
    except UnknownClientError as exc:
        worker.outbox.put(("fatal", str(exc)))
        return
    worker.outbox.put(("result", result))


def _run_warm(item: Dispatch, worker: _Worker, launchers: Launchers) -> None:
    """The run as a gated child that releases itself at its instant (the worker's stop ends
    it while gated: then, as in exec mode, the run never happened and sends no result)."""
    with warm_prepared(
        item.task,
        launchers=launchers,
        temp_root=worker.temp_root,
        due_mono=item.due_mono,
        registry=worker.registry,
    ) as prep:
        result = launch_warm(prep, registry=worker.registry)
    if worker.stop.is_set() and result.launched is None and result.outcome == "interrupted":
        return
    worker.outbox.put(("result", result))


@contextmanager
def _environ_without_secrets() -> Iterator[None]:
    """``os.environ`` less ``pipstorm.infra.credentials.SECRET_ENV_VARS`` for the block's
    duration."""
    saved = {k: os.environ.pop(k) for k in SECRET_ENV_VARS if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


class ClientPool:
    """Worker processes plus a collector thread that hands results to ``on_result``."""

    def __init__(
        self,
        on_result: Callable[[ClientResult], None],
        *,
        workers: int | None = None,
        temp_root: Path | None = None,
        launch: str = "exec",
        groups: ClientGroups = ClientGroups(),
    ) -> None:
        """``groups``: the clients' cpu cgroups (``priority.clients_cgroup``, in the engine)."""
        self._launch = launch
        self._groups = groups
        #: How many workers the clients' cgroup took (``run.json``'s ``priority``).
        self.workers_in_group = 0
        self._on_result = on_result
        self._count = max(1, workers or os.cpu_count() or 2)
        self._temp_root = temp_root
        ctx = multiprocessing.get_context("spawn")  # no inherited threads, sockets or locks
        self._ctx = ctx
        with _environ_without_secrets():  # the first queue starts multiprocessing's tracker
            self._outbox: Queue[tuple[str, Any]] = ctx.Queue()
        self._inboxes: list[Queue[Dispatch | None]] = []
        self._procs: list[SpawnProcess] = []
        self._in_flight = [0] * self._count
        self._owner: dict[str, int] = {}
        self._lock = threading.Lock()
        self._collector: threading.Thread | None = None
        self._exited: set[int] = set()
        self._stopped = False
        self.dispatched = 0
        self.completed = 0
        self.fatal: str | None = None
        self._all_done = threading.Condition(self._lock)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.pid is not None]

    def start(self) -> None:
        # The spawn start method hands a worker this process's os.environ: the user's
        # credentials are taken out of it while the workers start, so neither the workers nor
        # anything they start (launchers, clients) ever holds them.
        with _environ_without_secrets():
            for index in range(self._count):
                inbox: Queue[Dispatch | None] = self._ctx.Queue()
                proc = self._ctx.Process(
                    target=_worker_main,
                    args=(index, inbox, self._outbox, str(self._temp_root or ""), self._launch),
                    kwargs={
                        "cgroup_ready": self._groups.ready,
                        "cgroup_after_send": self._groups.after_send,
                    },
                    name=f"pipstorm-worker-{index}",
                    daemon=False,
                )
                proc.start()
                # Before its first dispatch: every launcher and client it starts is born in the
                # group (pipstorm.infra.client_cgroup), none has to move at a burst.
                if self._groups.clients is not None and proc.pid is not None:
                    self.workers_in_group += int(move_process(self._groups.clients, proc.pid))
                self._inboxes.append(inbox)
                self._procs.append(proc)
        self._collector = threading.Thread(target=self._collect, name="collector", daemon=True)
        self._collector.start()

    def submit(self, task: ClientTask, due_mono: float) -> None:
        """Hand ``task`` to the least busy worker; it launches the client at ``due_mono``."""
        with self._lock:
            index = min(range(self._count), key=self._in_flight.__getitem__)
            self._in_flight[index] += 1
            self._owner[task.run_id] = index
            self.dispatched += 1
        self._inboxes[index].put(Dispatch(task=task, due_mono=due_mono))

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self.dispatched - self.completed

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every dispatched run has reported; False if the timeout came first."""
        deadline = time.monotonic() + timeout_s
        with self._all_done:
            while self.completed < self.dispatched and self.fatal is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._all_done.wait(min(remaining, 0.5))
        return True

    def _collect(self) -> None:
        while True:
            try:
                kind, payload = self._outbox.get(timeout=0.5)
            except queue.Empty:
                self._check_workers()
                if len(self._exited) == len(self._procs) or not any(
                    p.is_alive() for p in self._procs
                ):
                    return
                continue
            except (EOFError, OSError):
                return
            if kind == "result":
                self._on_result(payload)
                with self._all_done:
                    self.completed += 1
                    index = self._owner.pop(payload.run_id, None)
                    if index is not None:
                        self._in_flight[index] -= 1
                    self._all_done.notify_all()
            elif kind == "fatal":
                with self._all_done:
                    self.fatal = payload
                    self._all_done.notify_all()
            elif kind == "exit":
                self._exited.add(payload)

    def _check_workers(self) -> None:
        """A worker that died unasked (killed, or crashed while starting: e.g. a script that
        starts a run without an ``if __name__ == "__main__":`` guard, which the spawn start
        method re-imports) would leave its runs unrun forever: make it the pool's fatal error."""
        if self._stopped or self.fatal is not None:
            return
        for index, proc in enumerate(self._procs):
            if index not in self._exited and proc.exitcode is not None:
                with self._all_done:
                    self.fatal = (
                        f"pool worker {index} exited unexpectedly (exit code {proc.exitcode}); "
                        "a script that starts a run needs an `if __name__ == '__main__':` guard"
                    )
                    self._all_done.notify_all()
                return

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop every worker: runs not yet due are dropped, running clients are stopped
        (SIGINT -> SIGTERM -> SIGKILL) and recorded as interrupted. Workers that do not exit
        in time are killed, so nothing is left behind either way. Safe to call twice.

        Bounded whatever state the pool is in: the queues' feeder threads may be blocked
        writing to a pipe whose reader (a worker) is gone, with thousands of dispatches still
        buffered; joining them would wait forever, so their buffers are abandoned instead
        (``cancel_join_thread``): what was not delivered was never going to run."""
        if self._stopped:
            return
        self._stopped = True
        for inbox in self._inboxes:
            inbox.cancel_join_thread()
            with contextlib.suppress(OSError, ValueError):
                inbox.put(None)
        deadline = time.monotonic() + timeout_s
        for proc in self._procs:
            proc.join(max(0.1, deadline - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.kill()
                proc.join(2)
        if self._collector is not None:
            self._collector.join(timeout=2)
        self._outbox.cancel_join_thread()
        self._outbox.close()
        for inbox in self._inboxes:
            inbox.close()
