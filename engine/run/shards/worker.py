"""One shard, played on a Dask worker: its own proxy and pool, offset 0 at the shared instant.

This module is what the coordinator (``pipstorm.engine.run.shards.coordinator``) submits:
:func:`run_shard` runs in a worker's single task thread, plays :class:`ShardJob`'s runs exactly as a
one-machine run plays its schedule (``pipstorm.engine.run.execute.drive_shard``: proxy, pool, host
sampler, JSONL written locally), which the coordinator pulls as they grow
(``pipstorm.engine.run.shards.stream``), then ships the streams back whole, compressed, in
:class:`ShardResult`.

No replays: a shard that arrives at or after its start time never starts (``late``): Dask
re-runs a task whose worker died, or whose result was lost with a worker, and a replayed shard
would send its load late and call it a success (an upload shard would publish twice). The
coordinator also runs the scheduler with ``allowed-failures`` 0, so a dead worker's shard fails
at once; this guard holds against any scheduler.

Stopping: the coordinator sets a Dask ``Event`` (:func:`stop_event_name`); a watcher thread then
raises ``KeyboardInterrupt`` in the shard's thread, which unwinds exactly as Ctrl-C does in a
one-machine run: clients stopped and recorded as interrupted, streams shipped back.
"""

from __future__ import annotations

import ctypes
import platform
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from pipstorm.clients.process import redact
from pipstorm.engine.errors import UsageError
from pipstorm.engine.run.execute import RunOptions, drive_shard
from pipstorm.engine.run.plan.schedule import Timeline
from pipstorm.engine.run.shards.split import Shard
from pipstorm.engine.run.shards.stream import pulled_while_playing, shard_key
from pipstorm.engine.run.target.opening import Target, preflight
from pipstorm.engine.rundir.merge import pack
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.credentials import Credentials
from pipstorm.packages.spec import CorpusError, CorpusSpec

#: How often the stop watcher looks at the coordinator's stop event.
STOP_POLL_S = 0.5
#: The resource every pipstorm worker offers once: one shard per worker at a time.
SHARD_RESOURCE = "shard"


def stop_event_name(token: str) -> str:
    """The Dask ``Event`` that tells every shard of run ``token`` to stop."""
    return f"pipstorm-stop-{token}"


@dataclass(frozen=True)
class ShardJob:
    """Everything a shard needs, pickled to its worker. ``credentials`` travel to the worker
    (its proxy adds them upstream); they never reach argv, logs or the results."""

    shard: Shard
    start_at: float  # the shared offset 0, epoch seconds on the coordinator's clock
    clock_offset_s: float  # this worker's clock minus the coordinator's (measured before)
    options: RunOptions
    line: Timeline
    target_kind: str
    index_url: str
    credentials: Credentials | None
    corpus: CorpusSpec
    token: str


@dataclass(frozen=True)
class ShardResult:
    """What a shard ships back: how it went, its counters and its compressed streams."""

    index: int
    host: str
    status: str  # ok, late, interrupted, failed
    began: float  # when the task began on the worker (coordinator's clock)
    started: float | None = None
    ended: float | None = None
    runs_dispatched: int = 0
    packed: dict[str, bytes] = field(default_factory=dict)
    error: str | None = None


def worker_facts() -> dict[str, Any]:
    """What the coordinator checks before submitting: versions and host (``client.run``)."""
    versions: dict[str, str] = {}
    # virtualenv decides the pip a fresh venv gets: a different one is a different client.
    for dist in ("pipstorm", "distributed", "virtualenv"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "missing"
    versions["python"] = platform.python_version()
    return {"host": socket.gethostname(), "versions": versions}


def reach_target(index_url: str, credentials: Credentials | None, project: str) -> str | None:
    """Whether this worker can load the target: None, or the one-line reason it cannot."""
    try:
        preflight(index_url, credentials, project)
    except (UsageError, CorpusError) as exc:  # the preflight's own one-line errors
        return str(exc)
    return None


def run_shard(job: ShardJob) -> ShardResult:
    """Play one shard (in a Dask worker's task thread); never raises, never starts late."""
    offset = job.clock_offset_s
    began = time.time() - offset
    host = socket.gethostname()
    if began >= job.start_at:
        return ShardResult(
            index=job.shard.index,
            host=host,
            status="late",
            began=began,
            error=f"reached its worker {began - job.start_at:.1f} s after the start time",
        )
    meta = RunMeta(
        profile={"name": f"shard-{job.shard.index}"},
        planned_duration_s=job.line.duration_s,
        runs_planned=len(job.shard.runs),
    )
    target = Target(
        kind=job.target_kind,
        index_url=job.index_url,
        credentials=job.credentials,
        corpus=job.corpus,
    )
    status, error = "ok", None
    stopper = _StopWatcher(stop_event_name(job.token))
    with tempfile.TemporaryDirectory(prefix="pipstorm-shard-", dir=_scratch()) as tmp:
        shard_dir = Path(tmp)
        try:
            stopper.start()
            with pulled_while_playing(shard_key(job.token, job.shard.index), shard_dir):
                _drive(job, meta, shard_dir, target, offset)
        except KeyboardInterrupt:
            meta.interrupted = True
        except Exception as exc:  # shipped back as the shard's error, one line
            status, error = "failed", _one_line(exc)
        finally:
            try:
                stopper.stop()
            except KeyboardInterrupt:  # fired just before the shard ended on its own
                meta.interrupted = True
        if stopper.fired or meta.interrupted:
            status = "interrupted" if status == "ok" else status
        packed = pack(shard_dir)
    return ShardResult(
        index=job.shard.index,
        host=host,
        status=status,
        began=began,
        started=None if meta.started is None else meta.started - offset,
        ended=time.time() - offset,
        runs_dispatched=meta.runs_dispatched,
        packed=packed,
        error=error,
    )


def _drive(job: ShardJob, meta: RunMeta, shard_dir: Path, target: Target, offset: float) -> None:
    """The shard's part; ``--abort-on-fail`` is the coordinator's, judged over every shard."""
    drive_shard(
        replace(job.options, quiet=True, abort_on_fail=False),
        job.line,
        list(job.shard.runs),
        meta=meta,
        run_dir=shard_dir,
        target=target,
        start_at=job.start_at + offset,  # the same instant on this worker's clock
        emit=lambda _line: None,
    )


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, UsageError):
        text = f"{type(exc).__name__}: {text} ({traceback.format_exc(limit=1).splitlines()[-1]})"
    return " ".join(redact(text).split())  # a message may quote a URL with its password


def _scratch() -> str | None:
    """The worker's own scratch folder (Dask purges an abandoned one), else the temp dir."""
    try:
        from distributed import get_worker

        return str(get_worker().local_directory)
    except ValueError:  # not in a worker (tests call run_shard directly)
        return None


class _StopWatcher:
    """Raise KeyboardInterrupt in the shard's thread once the coordinator's stop event is set."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._target = threading.get_ident()
        self._done = threading.Event()
        self._lock = threading.Lock()  # firing and stopping exclude each other
        self._thread: threading.Thread | None = None
        self.fired = False

    def start(self) -> None:
        try:
            from distributed import Event, get_client

            event = Event(self._name, client=get_client())  # type: ignore[no-untyped-call]
        except ValueError:  # not in a worker: nothing to watch
            return
        self._thread = threading.Thread(
            target=self._watch, args=(event,), name="shard-stop", daemon=True
        )
        self._thread.start()

    def _watch(self, event: Any) -> None:  # noqa: ANN401 - distributed.Event
        while not self._done.is_set():
            try:
                if event.wait(STOP_POLL_S):
                    break
            except Exception:  # scheduler gone: the worker is going too
                time.sleep(STOP_POLL_S)
        else:
            return
        with self._lock:
            if self._done.is_set():
                return
            self.fired = True
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(self._target), ctypes.py_object(KeyboardInterrupt)
            )

    def stop(self) -> None:
        """No interrupt is raised after this returns (one fired just before is raised here)."""
        with self._lock:
            self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * STOP_POLL_S + 1)
