"""The warm launchers of one pool worker, and what a forked child's run becomes.

``pipstorm.clients.warm.launcher`` is one launcher process and its line protocol. This holds what
pipstorm keeps around them:

- ``Launchers``: the set a pool worker (or a lab) keeps, one per (client module, interpreter):
  started when a run first needs its module, replaced when it died, not retried when it could
  not start, and closed together (each kills its children);
- ``outcome_of``: a forked child's life as the ``Outcome`` record every client run gives (as
  ``pipstorm.clients.process.run_process`` describes an exec'd client): argv as typed (redacted),
  wall times from its release to its exit, CPU, output tails, with the same timeout and
  interrupt (SIGINT -> SIGTERM -> SIGKILL of the child's group, through ``ProcessRegistry``), so
  a stop request also ends children still gated.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pipstorm.clients.process import Outcome, ProcessRegistry, Running, file_tail, redact
from pipstorm.clients.warm.launcher import Launcher, LauncherError, WarmChild, WarmSpec


class Launchers:
    """The launchers of one pool worker, one per (client module, interpreter), started on first
    use and closed together. Thread-safe: runs of a worker prepare from many threads."""

    def __init__(
        self,
        temp_root: Path | None = None,
        *,
        gate_at: str = "connect",
        share: bool = True,
        cgroup_ready: str | None = None,
        cgroup_after_send: str | None = None,
    ) -> None:
        """``gate_at``, ``share``: how every launcher's children gate (``Launcher.fork``);
        ``cgroup_ready``, ``cgroup_after_send``: the ``cgroup.procs`` files they move into when
        they reach their gate and once their first request is sent (``pipstorm.clients.warm.gate``;
        None: they stay where they are)."""
        self._temp_root = temp_root
        self._gate = (gate_at, share)
        self._cgroups = (cgroup_ready, cgroup_after_send)
        self._lock = threading.Lock()
        self._started: dict[tuple[str, Path], Launcher] = {}
        self._failed: dict[tuple[str, Path], str] = {}
        self._closed = False

    def for_spec(self, spec: WarmSpec) -> Launcher:
        """The launcher that runs ``spec``'s module from its interpreter (started if need be).

        A launcher that died (killed by the OOM killer, say) is replaced by a new one; one that
        could not start is not tried again: its error is raised at once for every later run.
        """
        key = (spec.module, spec.python)
        with self._lock:
            if self._closed:
                raise LauncherError("the warm launchers are closed")
            if key in self._failed:
                raise LauncherError(self._failed[key])
            launcher = self._started.get(key)
            if launcher is not None and not launcher.alive:
                launcher.close()
                launcher = None
            if launcher is None:
                try:
                    launcher = Launcher(
                        spec.module, spec.python, spec.env_for, temp_root=self._temp_root
                    )
                    launcher.gate_at, launcher.share = self._gate
                    launcher.cgroup_ready, launcher.cgroup_after_send = self._cgroups
                except LauncherError as exc:
                    self._failed[key] = str(exc)
                    raise
                self._started[key] = launcher
            return launcher

    def __enter__(self) -> Launchers:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def facts(self) -> list[dict[str, Any]]:
        """What each launcher reported when ready (modules, captured paths, preload CPU)."""
        with self._lock:
            return [dict(launcher.facts) for launcher in self._started.values()]

    def close(self) -> None:
        """Close every launcher (each kills its children). Safe to call twice."""
        with self._lock:
            self._closed = True
            launchers, self._started = list(self._started.values()), {}
        for launcher in launchers:
            launcher.close()


def outcome_of(
    child: WarmChild,
    argv: Sequence[str],
    work: Path,
    *,
    timeout_s: float,
    registry: ProcessRegistry,
    secrets: Sequence[str] = (),
) -> Outcome:
    """Wait for a forked child to be released and to exit; describe it like ``run_process``.

    The child is in ``registry`` from its fork on, so a stop request ends gated children too.
    ``timeout_s`` counts from the release, as a subprocess's counts from its spawn.
    """
    shown = tuple(redact(arg, secrets) for arg in argv)
    child.forked.wait()
    running = Running(child.pid or 0, send=_safe(child))
    tracked = child.pid is not None and registry.add(running)
    if child.pid is not None and not tracked:
        running.interrupt()
    try:
        child.released.wait()
        # No timer thread per run: 510 of them started in the same instant cost the burst's
        # onset CPU (the pool's share of it, docs/performance.md).
        if not child.exited.wait(timeout_s):
            running.interrupt(timed_out=True)
            child.exited.wait()
    finally:
        running.exited.set()
        if tracked:
            registry.remove(running)
    exit_info = child.exit or {}
    status = exit_info.get("status")
    to_wall = time.time() - time.monotonic()
    released = child.released_mono
    ended_mono = float(exit_info.get("mono") or time.monotonic())
    started_mono = released if released is not None else ended_mono
    never_ran = released is None or status is None
    return Outcome(
        argv=shown,
        exit_code=None if never_ran or status is None else int(status),
        started=started_mono + to_wall,
        ended=ended_mono + to_wall,
        duration_s=max(0.0, ended_mono - started_mono),
        cpu_s=float(exit_info.get("cpu_s") or 0.0),
        max_rss_kb=int(exit_info.get("max_rss_kb") or 0),
        stdout_tail=file_tail(work / "stdout", secrets),
        stderr_tail=file_tail(work / "stderr", secrets)
        or ("the warm launcher died" if status is None else ""),
        timed_out=running.timed_out,
        gated=None if child.gated_mono is None else child.gated_mono + to_wall,
        cpu_gate_s=None if child.gated_mono is None else child.cpu_ahead_s,
        # A child gone before its release without our asking (its launcher died, its start-up
        # failed) is not interrupted but an error: exit_code None, the reason in stderr_tail.
        interrupted=running.interrupted,
    )


def _safe(child: WarmChild) -> Callable[[signal.Signals], None]:
    def send(sig: signal.Signals) -> None:
        with contextlib.suppress(LauncherError):
            child.signal(sig)

    return send
