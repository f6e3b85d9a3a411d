"""The pool's own failure modes, with real worker processes."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from pipstorm.engine.run.dispatch import raise_if_fatal
from pipstorm.engine.run.pool import ClientPool, PoolError


def test_a_worker_killed_mid_run_is_a_fatal_error_not_a_hang() -> None:
    pool = ClientPool(lambda result: None, workers=2)
    pool.start()
    try:
        os.kill(pool.pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while pool.fatal is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.fatal is not None
        assert "pool worker 0 exited unexpectedly (exit code -9)" in pool.fatal
        assert pool.wait_idle(1.0)  # waiting ends instead of waiting for runs that never come
        with pytest.raises(PoolError, match="exited unexpectedly"):
            raise_if_fatal(pool)
    finally:
        pool.stop()
    assert not any(p.is_alive() for p in pool._procs)


def test_a_stopped_pool_is_not_fatal_and_its_workers_are_gone() -> None:
    pool = ClientPool(lambda result: None, workers=2)
    pool.start()
    workers = [psutil.Process(pid) for pid in pool.pids]
    assert len(workers) == 2 and all(w.is_running() for w in workers)
    pool.stop()
    pool.stop()  # idempotent
    assert pool.fatal is None
    # stop() returns once its workers are gone, not merely asked to go (reaped: no zombies)
    assert not any(p.is_alive() for p in pool._procs)
    assert not any(psutil.pid_exists(w.pid) and w.is_running() for w in workers)


def test_stop_is_bounded_when_a_worker_is_gone_and_its_queue_is_full() -> None:
    """A huge plan handed out at once, then the worker dies: the queue's feeder thread blocks
    on a pipe nobody reads. stop() must not join it (it did: a run hung for 11 minutes)."""
    from pipstorm.clients.task import ClientTask

    pool = ClientPool(lambda result: None, workers=1)
    pool.start()
    os.kill(pool.pids[0], signal.SIGKILL)
    task = ClientTask(run_id="r" * 200, client="http", project="p", version="1", index_url="x")
    for _ in range(20_000):  # far more than a pipe buffer holds
        pool.submit(task, time.monotonic() + 3600)
    stopper = threading.Thread(target=pool.stop, kwargs={"timeout_s": 2.0}, daemon=True)
    began = time.monotonic()
    stopper.start()
    stopper.join(timeout=120)  # a hang, not a duration: stop() returns in seconds when bounded
    assert not stopper.is_alive(), "ClientPool.stop() hung on a queue whose reader is gone"
    print(f"ClientPool.stop() with 20,000 dispatches queued: {time.monotonic() - began:.1f} s")  # noqa: T201 - the figure docs/reliability.md quotes
    assert not any(p.is_alive() for p in pool._procs)
