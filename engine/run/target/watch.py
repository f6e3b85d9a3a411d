"""Noticing that the embedded target died during a run, and saying so at once.

A pypiserver killed in the middle of a run (the OOM killer, a crash, someone's ``kill``) leaves
the proxy answering 502 ``upstream_refused`` to every request. The run goes on (its report
shows what the clients met), but the user is told the moment it happens, the death is
appended to ``events.jsonl`` at once (a pipstorm SIGKILLed a moment later leaves it on disk;
``pipstorm.engine.rundir.events``), and ``run.json``'s ``target.died`` records when and how (exit
code) at the run's end, so the report names the death and fails the run on it
(``pipstorm.engine.analysis.target.failure``), for a plain run as for a sized one. Stopped before
the target is, so a stop at the end of the run is never taken for a death.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipstorm.engine.run.target.cgroup import sample_target_cgroup
from pipstorm.engine.run.target.opening import Target
from pipstorm.engine.rundir.events import TARGET_DIED, append_event
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.infra.periodic import Periodic

#: How often the server's master is checked: a death is noticed within this.
POLL_S = 0.5


@contextmanager
def watch_target(
    target: Target,
    meta: RunMeta,
    emit: Callable[[str], None],
    *,
    poll_s: float = POLL_S,
    run_dir: Path | None = None,
) -> Iterator[None]:
    """Watch the embedded server while the block runs (nothing for a remote target); a death
    goes into ``meta`` and, with ``run_dir``, is appended to its ``events.jsonl`` at once."""
    server = target.server
    if server is None:
        yield
        return

    def watch() -> None:
        if "died" in meta.target or server.alive():
            return  # said once: a dead server stays dead
        at = time.time()
        code = server.returncode
        meta.target["died"] = {"ts": at, "exit_code": code}
        if run_dir is not None:
            try:
                append_event(run_dir, TARGET_DIED, ts=at, exit_code=code)
            except OSError as exc:  # a full disk: the warning below and run.json still say it
                emit(f"pipstorm: WARNING: could not record the target's death: {exc}")
        since = "" if meta.started is None else f" at t={at - meta.started:.1f} s"
        emit(
            f"pipstorm: WARNING: the embedded target (pypiserver) died{since} "
            f"(exit code {code}); the run goes on and records what the clients meet"
        )

    ticker = Periodic(watch, every_s=poll_s, name="pipstorm-target-watch")
    ticker.start()
    try:
        yield
    finally:
        ticker.stop()


@contextmanager
def observe_target(
    target: Target, run_dir: Path, meta: RunMeta, emit: Callable[[str], None]
) -> Iterator[None]:
    """While the block runs: the target's death watched, and its cgroup sampled when sized."""
    with (
        sample_target_cgroup(target, run_dir, meta),
        watch_target(target, meta, emit, run_dir=run_dir),
    ):
        yield
