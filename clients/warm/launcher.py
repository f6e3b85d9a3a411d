"""Warm launchers, seen from pipstorm: one long-lived process per client module and interpreter.

Why: a fresh pip process costs ~0.57 CPU-s here before its first byte (interpreter, imports,
its user agent), poetry ~1 CPU-s more than a forked one. A burst of 75 such processes on 2 cores
smears over 20 s instead of hitting the index at once. A launcher (``pipstorm.clients.warm.agent``,
running in the client's own interpreter) has imported the client once; each run is a forked
child that takes the run's environment, does the pre-network start-up, waits at a gate and then
runs the client's command line once. Each run stays one OS process with its own sockets,
caches and temp dirs.

This module starts one launcher and talks its line protocol (fork a gated child, open its gate,
signal it, read its events). The set of launchers a pool worker keeps, and a child's life as the
``Outcome`` record every client run gives, are ``pipstorm.clients.warm.launchers``.

Why launchers are spawned from one dedicated thread: ``PR_SET_PDEATHSIG`` fires when the
*thread* that forked the launcher exits, not the process; a run's short-lived thread would take
the launcher down with it. The spawner thread lives as long as this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from pipstorm.clients.environment import scrubbed_env
from pipstorm.clients.errors import ClientsError
from pipstorm.clients.process import (
    CLIENT_NICE,
    CLIENT_NICE_AFTER_SEND,
)

AGENT = Path(__file__).with_name("agent.py")
#: Seconds a launcher may take to import its client (poetry: ~1 CPU-s, more on a busy host).
READY_TIMEOUT_S = 120.0
#: Prefix of a launcher's private dir (its HOME, TMPDIR and template run dir).
ROOT_PREFIX = "pipstorm-launcher-"


T = TypeVar("T")


class LauncherError(ClientsError):
    """A launcher could not be started or died; the message is one line."""


@dataclass(frozen=True)
class WarmSpec:
    """What one warm run executes: ``python -m module args`` in its env (added to the
    scrubbed one) and work dir. ``env_for(work)`` gives a run's driver env for any work dir;
    the launcher's template uses it with its own dir, so paths captured at import can be
    mapped onto each run's."""

    module: str
    python: Path
    args: tuple[str, ...]
    env_for: Callable[[Path], Mapping[str, str]]
    client_version: str | None = None

    @property
    def argv(self) -> list[str]:
        """The command line the same run would have had as its own process."""
        return [str(self.python), "-m", self.module, *self.args]


@dataclass
class WarmChild:
    """One forked child's life as the launcher and the child report it."""

    run_id: str
    launcher: Launcher
    pid: int | None = None
    gated_mono: float | None = None
    cpu_ahead_s: float = 0.0
    #: Wall and CPU seconds the client's own start-up ran before its gate (0 at ``start``).
    startup_s: float = 0.0
    startup_cpu_s: float = 0.0
    #: Its environment's shared values (``pipstorm.clients.warm.shared``): ``computed`` for it,
    #: ``cached`` from an earlier run, ``failed`` (it computes its own), None (none to share).
    shared: str | None = None
    released_mono: float | None = None
    exit: dict[str, Any] | None = None
    left: list[str] = field(default_factory=list)
    forked: threading.Event = field(default_factory=threading.Event)
    gated: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)

    def open(self) -> None:
        """Release the child now, whatever its instant."""
        self.launcher.send({"op": "open", "id": self.run_id})

    def signal(self, sig: signal.Signals) -> None:
        """Signal the child's process group (through the launcher: no pid reuse race)."""
        self.launcher.send({"op": "signal", "id": self.run_id, "sig": int(sig)})


class _Spawner:
    """The one thread that starts launcher processes (see the module docstring)."""

    _instance: _Spawner | None = None
    _guard = threading.Lock()

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future[Any]]] = queue.Queue()
        threading.Thread(target=self._loop, name="pipstorm-launcher-spawner", daemon=True).start()

    @classmethod
    def run(cls, job: Callable[[], T]) -> T:
        with cls._guard:
            if cls._instance is None or cls._instance._pid != os.getpid():
                cls._instance = cls()
                cls._instance._pid = os.getpid()
        done: Future[T] = Future()
        cls._instance._jobs.put((job, done))
        return done.result()

    _pid = 0

    def _loop(self) -> None:
        while True:
            job, done = self._jobs.get()
            try:
                done.set_result(job())
            except BaseException as exc:
                done.set_exception(exc)


class Launcher:
    """One warm launcher process: ``module`` imported in ``python``."""

    def __init__(
        self,
        module: str,
        python: Path,
        env_for: Callable[[Path], Mapping[str, str]],
        *,
        temp_root: Path | None = None,
    ) -> None:
        self.module = module
        #: Where children gate and whether they get shared values (``fork``; ``Launchers``).
        self.gate_at = "connect"
        self.share = True
        #: The ``cgroup.procs`` files children move into at their gate and after their first
        #: request (None: none).
        self.cgroup_ready: str | None = None
        self.cgroup_after_send: str | None = None
        self.python = python
        self.root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=temp_root))
        # The launcher's world is shaped like a run's, in its own ``work`` dir: what a client
        # captures from it at import is then found (and moved) by prefix in every child.
        (self.root / "work").mkdir()
        self.template = _run_env(self.root / "work", env_for(self.root / "work"))
        self.facts: dict[str, Any] = {}
        self._children: dict[str, WarmChild] = {}
        self._lock = threading.Lock()  # the children and their events
        self._write_lock = threading.Lock()  # one protocol line at a time to stdin
        self._ready = threading.Event()
        self._error: str | None = None
        self._closed = False
        self._log: IO[bytes] | None = None
        try:
            self._proc: subprocess.Popen[bytes] = _Spawner.run(self._spawn)
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self._reader = threading.Thread(
            target=self._read, name=f"launcher-{module}-{self._proc.pid}", daemon=True
        )
        self._reader.start()
        if not self._ready.wait(READY_TIMEOUT_S) or self._error:
            why = self._error or f"not ready after {READY_TIMEOUT_S:.0f} s"
            self.close()
            raise LauncherError(f"warm launcher for {module} ({python}): {why}")

    @property
    def pid(self) -> int:
        """The launcher process's id."""
        return self._proc.pid

    @property
    def alive(self) -> bool:
        """Whether the launcher process still runs (and can fork children)."""
        return self._proc.poll() is None and not self._closed

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._log = (self.root / "launcher.log").open("wb")
        try:
            return subprocess.Popen(
                [str(self.python), str(AGENT), self.module, str(self.root), str(os.getpid())],
                env=self.template,
                cwd=self.root / "work",
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._log,
                start_new_session=True,  # Ctrl-C on the terminal is pipstorm's, not the launcher's
            )
        except OSError as exc:
            raise LauncherError(f"cannot start a launcher with {self.python}: {exc}") from exc

    def _read(self) -> None:
        stream = self._proc.stdout
        if stream is None:  # pragma: no cover - PIPE always gives one
            return
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self._on_event(event)
        # EOF: the launcher and every child that held its stdout are gone.
        self._error = self._error or "the launcher exited"
        self._ready.set()
        with self._lock:
            orphans = [c for c in self._children.values() if not c.exited.is_set()]
        for child in orphans:
            child.exit = child.exit or {"status": None, "cpu_s": 0.0, "max_rss_kb": 0}
            for flag in (child.forked, child.gated, child.released, child.exited):
                flag.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "ready":
            self.facts = event
            self._ready.set()
            return
        if kind == "error":
            self._error = str(event.get("message"))
            self._ready.set()
            return
        with self._lock:
            child = self._children.get(str(event.get("id")))
        if child is None:
            return
        if kind == "forked":
            child.pid = int(event["pid"])
            child.shared = event.get("shared")
            child.forked.set()
        elif kind == "gated":
            child.gated_mono = float(event["mono"])
            child.cpu_ahead_s = float(event["cpu_s"])
            child.left = list(event.get("left") or [])
            child.startup_s = float(event.get("startup_s") or 0.0)
            child.startup_cpu_s = float(event.get("startup_cpu_s") or 0.0)
            child.gated.set()
        elif kind == "released":
            child.released_mono = float(event["mono"])
            child.released.set()
        elif kind == "exit":
            child.exit = event
            with self._lock:
                self._children.pop(child.run_id, None)
            for flag in (child.forked, child.gated, child.released, child.exited):
                flag.set()

    def send(self, message: Mapping[str, Any]) -> None:
        """One protocol line to the launcher; a dead launcher makes this a LauncherError."""
        stdin = self._proc.stdin
        if stdin is None or self._closed:
            raise LauncherError(f"warm launcher for {self.module} is closed")
        data = (json.dumps(message, separators=(",", ":")) + "\n").encode()
        try:
            # Not under ``_lock``: the event reader takes that one, and a write blocked on a
            # full stdin pipe (a burst's specs) while the launcher is blocked writing events
            # to a full stdout pipe nobody reads would deadlock both (seen at x170).
            with self._write_lock:
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError) as exc:
            raise LauncherError(f"warm launcher for {self.module} died: {exc}") from exc

    def fork(
        self,
        run_id: str,
        spec: WarmSpec,
        work: Path,
        *,
        extra_args: Sequence[str] = (),
        due_mono: float | None = None,
        nice: int = CLIENT_NICE,
        nice_after_send: int | None = CLIENT_NICE_AFTER_SEND,
        probe: Path | None = None,
        verify: bool = False,
        gate_at: str | None = None,
        share: bool | None = None,
    ) -> WarmChild:
        """Fork a child for one run, gated until ``due_mono`` (None: until ``open``).

        The run's environment is the scrubbed one with ``work/home`` as HOME and ``work/tmp``
        as TMPDIR, exactly as the exec path gives it; its output goes to ``work/stdout`` and
        ``work/stderr``. ``probe``: a file the child writes the modules it imported after its
        release to (what ``pipstorm.clients.warm.agent.PRELOAD`` should hold). ``verify``: the child
        looks for launcher paths left in its modules and reports them (``WarmChild.left``).
        ``gate_at``: where the child waits (``pipstorm.clients.warm.gate``: at its first connect,
        or at ``start``); ``share``: hand it the values every run of its environment computes
        the same (``pipstorm.clients.warm.shared``), else it computes them itself (None: the
        launcher's ``gate_at``/``share``). The old behaviour (``start``, no sharing) stays for
        benches to compare against. ``nice``: the child's until its first request is sent,
        ``nice_after_send`` after it (None: unchanged; ``pipstorm.clients.warm.gate``), and the
        launcher's ``cgroup_after_send`` joined then too; its ``cgroup_ready`` is joined at the
        gate.
        """
        env = _run_env(work, spec.env_for(work))
        child = WarmChild(run_id=run_id, launcher=self)
        with self._lock:
            if run_id in self._children:
                raise LauncherError(f"run {run_id} is already in this launcher")
            self._children[run_id] = child
        self.send(
            {
                "op": "run",
                "id": run_id,
                "module": self.module,
                "args": [*spec.args, *extra_args],
                "env": env,
                "cwd": str(work),
                "work": str(work),
                "stdout": str(work / "stdout"),
                "stderr": str(work / "stderr"),
                "nice": nice,
                "nice_after_send": nice_after_send,
                "cgroup_ready": self.cgroup_ready,
                "cgroup_after_send": self.cgroup_after_send,
                "due": due_mono,
                "moves": _moves(self.template, env, self.root, work),
                "probe": str(probe) if probe is not None else None,
                "verify": verify,
                "root": str(self.root),
                "gate_at": gate_at or self.gate_at,
                "share": self.share if share is None else share,
            }
        )
        return child

    def close(self, timeout_s: float = 5.0) -> None:
        """Stop the launcher (it kills and reaps its children) and remove its dir."""
        if not self._closed:
            with contextlib.suppress(LauncherError):
                self.send({"op": "quit"})
            self._closed = True
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._reader.join(timeout_s)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if self._log is not None:
            self._log.close()
        shutil.rmtree(self.root, ignore_errors=True)


def _run_env(work: Path, driver_env: Mapping[str, str]) -> dict[str, str]:
    """A run's environment: scrubbed, private HOME and TMPDIR in ``work``, the driver's vars.
    The same function shapes the exec path's environment (``pipstorm.clients.runner``)."""
    home, tmp = work / "home", work / "tmp"
    home.mkdir(exist_ok=True)
    tmp.mkdir(exist_ok=True)
    return scrubbed_env(home, {"TMPDIR": str(tmp), **driver_env})


def _moves(
    template: Mapping[str, str], env: Mapping[str, str], root: Path, work: Path
) -> list[tuple[str, str]]:
    """Launcher path -> run path, longest first: how a child rewrites captured paths."""
    pairs = {
        value: env[key]
        for key, value in template.items()
        if key in env and env[key] != value and str(root) in value
    }
    pairs.setdefault(str(root / "work"), str(work))
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))
