"""The one subprocess wrapper every client run goes through.

Why not ``subprocess.run``: a load generator must (a) stop a whole client process tree on
Ctrl-C or a timeout, escalating SIGINT -> SIGTERM -> SIGKILL like tox does, (b) know the CPU the
client used (``os.wait4`` gives the child's rusage, ``Popen.wait`` throws it away), and (c) never
write a secret it was handed into a record. Each client runs in its own session, so a Ctrl-C on
the terminal reaches only pipstorm, which then stops the clients in order.

Its own session also means a SIGKILL of pipstorm's process group (``timeout -s KILL``, a cancelled
CI job) does not reach it: each client is therefore started under ``setpriv --pdeathsig KILL``
(util-linux), which sets the parent-death signal and execs the client, so the kernel kills it
when the thread that started it (the run's thread in a pool worker) dies. ``preexec_fn`` could
do the same in-process, but it is unsafe in a threaded process (a pool worker runs a thread a run).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path

from pipstorm.clients.warm.nice import set_nice

#: How long each escalation step waits for the process group to exit before the next signal.
ESCALATION_STEP_S = 2.0
#: Bytes of stdout/stderr kept per run: enough for pip's final error message, not its progress.
TAIL_BYTES = 4096
#: Clients run at this nice value, so the recording proxy (and the pool launching runs on time)
#: win the CPU when clients saturate the cores: the proxy's timings then stay the index's.
CLIENT_NICE = 10
#: A warm child lowers itself to this nice once its first request is sent
#: (``pipstorm.clients.warm.gate.NiceAfterSend``): the runs of a burst still on their way to the
#: index then go first. An exec'd client keeps ``CLIENT_NICE`` (nothing inside it could tell).
CLIENT_NICE_AFTER_SEND = 19

#: ``setpriv`` (util-linux) sets the parent-death signal of a process, then execs the command.
_SETPRIV = shutil.which("setpriv")

_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask URL credentials (``scheme://user:pass@``) and every given secret in ``text``."""
    text = _URL_USERINFO.sub(r"\g<scheme>***@", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class Outcome:
    """What one client process did; the same shape for every client kind."""

    argv: tuple[str, ...]
    exit_code: int | None  # None: it never started
    started: float  # wall clock, epoch seconds, when the process was spawned
    ended: float
    duration_s: float  # monotonic
    cpu_s: float  # user + system CPU of the process and the children it waited for
    max_rss_kb: int
    stdout_tail: str
    stderr_tail: str
    timed_out: bool = False
    interrupted: bool = False
    # A warm run's gate (wall clock, epoch seconds) and its CPU until then: when its preparation
    # was done, and what it cost (None in exec mode: nothing is prepared in the process).
    gated: float | None = None
    cpu_gate_s: float | None = None


class ProcessRegistry:
    """The client processes in flight in this process, so a stop request can end them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Running] = {}
        self._stopping = threading.Event()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def add(self, running: Running) -> bool:
        """Track ``running`` until ``remove``; False (not tracked) once a stop was requested."""
        with self._lock:
            if self._stopping.is_set():
                return False
            self._running[running.pid] = running
            return True

    def remove(self, running: Running) -> None:
        """Forget a process that has exited."""
        with self._lock:
            self._running.pop(running.pid, None)

    def stop_all(self, wait_s: float = 3 * ESCALATION_STEP_S + 1) -> None:
        """Refuse new processes and stop the running ones, escalating signals; wait for them."""
        self._stopping.set()
        with self._lock:
            running = list(self._running.values())
        for item in running:
            item.interrupt()
        deadline = time.monotonic() + wait_s
        for item in running:
            item.exited.wait(max(0.0, deadline - time.monotonic()))


class Running:
    """One client process in flight: how to signal its group, and whether it has exited.

    ``send`` delivers a signal to the process group; the default is ``os.killpg`` on ``pid``
    (a process we spawned); a warm launcher's child is signalled through its launcher, which
    knows whether the pid is still its unreaped child (``pipstorm.clients.warm.launcher``).
    """

    def __init__(self, pid: int, send: Callable[[signal.Signals], None] | None = None) -> None:
        self.pid = pid
        self.exited = threading.Event()
        self.interrupted = False
        self.timed_out = False
        self._send = send or (lambda sig: _signal_group(pid, sig))
        self._escalating = threading.Lock()

    def interrupt(self, *, timed_out: bool = False) -> None:
        """Stop it: SIGINT, then SIGTERM, then SIGKILL, ``ESCALATION_STEP_S`` apart."""
        if not self._escalating.acquire(blocking=False):
            return  # an escalation is already under way
        if timed_out:
            self.timed_out = True
        else:
            self.interrupted = True
        threading.Thread(target=self._escalate, name=f"stop-{self.pid}", daemon=True).start()

    def _escalate(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
            self._send(sig)
            if self.exited.wait(ESCALATION_STEP_S):
                return


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _drain(stream: BufferedReader, keep: bytearray) -> None:
    """Read a pipe to EOF keeping only its tail, so a chatty client cannot block or bloat us."""
    for chunk in iter(lambda: stream.read1(65536), b""):
        keep.extend(chunk)
        if len(keep) > 2 * TAIL_BYTES:
            del keep[: len(keep) - TAIL_BYTES]
    stream.close()


def _tail(buffer: bytearray, secrets: Sequence[str]) -> str:
    return redact(bytes(buffer[-TAIL_BYTES:]).decode("utf-8", "replace"), secrets)


def file_tail(path: Path, secrets: Sequence[str] = ()) -> str:
    """The last ``TAIL_BYTES`` of a file a client wrote its output to, redacted ("" if none)."""
    try:
        with path.open("rb") as file:
            file.seek(max(0, path.stat().st_size - TAIL_BYTES))
            return _tail(bytearray(file.read()), secrets)
    except OSError:
        return ""


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout_s: float,
    registry: ProcessRegistry,
    secrets: Sequence[str] = (),
) -> Outcome:
    """Run ``argv`` to completion (or timeout / stop) and describe what happened.

    The process gets no stdin, its own session (process group) and the explicit ``env``. After it
    exits, anything it left behind in its group is killed, so no grandchild outlives a run.
    """
    shown_argv = tuple(redact(arg, secrets) for arg in argv)
    wall_start = time.time()
    mono_start = time.monotonic()
    if registry.stopping:
        return _not_started(shown_argv, wall_start, "not started: stop requested")
    program = _resolve(argv[0], env, cwd)
    if program is None:  # said here: behind setpriv it would be setpriv's exit status
        return _not_started(shown_argv, wall_start, f"cannot start {argv[0]}: not found")
    try:
        proc = subprocess.Popen(
            with_parent_death_signal([program, *argv[1:]]),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        return _not_started(shown_argv, wall_start, f"cannot start {argv[0]}: {exc}")
    # Right after spawn (Popen has no portable nice, and preexec_fn is unsafe with threads):
    # the client is still importing, before any thread or child of its own, which inherit it.
    # Its session's autogroup too: otherwise the nice weighs only inside the client's own
    # session (pipstorm.clients.warm.nice).
    set_nice(proc.pid, CLIENT_NICE)
    running = Running(proc.pid)
    if not registry.add(running):
        running.interrupt()
    out, err = bytearray(), bytearray()
    if proc.stdout is None or proc.stderr is None:  # pragma: no cover - PIPE always gives both
        raise RuntimeError("subprocess pipes missing")
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True),
    ]
    for reader in readers:
        reader.start()
    timer = threading.Timer(timeout_s, running.interrupt, kwargs={"timed_out": True})
    timer.daemon = True
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    ended_mono = time.monotonic()
    ended_wall = wall_start + (ended_mono - mono_start)
    proc.returncode = os.waitstatus_to_exitcode(status)
    running.exited.set()
    registry.remove(running)
    _signal_group(proc.pid, signal.SIGKILL)  # orphans the client left in its session
    for reader in readers:
        reader.join(timeout=ESCALATION_STEP_S)
    return Outcome(
        argv=shown_argv,
        exit_code=proc.returncode,
        started=wall_start,
        ended=ended_wall,
        duration_s=ended_mono - mono_start,
        cpu_s=usage.ru_utime + usage.ru_stime,
        max_rss_kb=usage.ru_maxrss,
        stdout_tail=_tail(out, secrets),
        stderr_tail=_tail(err, secrets),
        timed_out=running.timed_out,
        interrupted=running.interrupted,
    )


def _resolve(program: str, env: Mapping[str, str], cwd: Path) -> str | None:
    """The file ``program`` names, as exec would find it with ``env`` in ``cwd``; None if none."""
    if "/" in program:
        path = cwd / program  # an absolute program stays itself
        return str(path) if path.is_file() and os.access(path, os.X_OK) else None
    return shutil.which(program, path=env.get("PATH", os.defpath))


def with_parent_death_signal(argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so the process is SIGKILLed when the thread that starts it dies (the
    record keeps the client's own argv). Without ``setpriv`` it runs as it is: a SIGKILLed
    pipstorm then leaves it to finish, or fail, on its own."""
    if _SETPRIV is None:
        return list(argv)
    return [_SETPRIV, "--pdeathsig", "KILL", "--", *argv]


def _not_started(argv: tuple[str, ...], when: float, why: str) -> Outcome:
    return Outcome(
        argv=argv,
        exit_code=None,
        started=when,
        ended=when,
        duration_s=0.0,
        cpu_s=0.0,
        max_rss_kb=0,
        stdout_tail="",
        stderr_tail=why,
        interrupted=True,
    )
