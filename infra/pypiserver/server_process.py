"""The embedded server's process, seen from outside and from inside.

From outside (``pipstorm.infra.pypiserver.target``, its owner): which port gunicorn's master
listens on, how many workers it has, a plain HTTP status for the readiness checks, the log's tail
for an error message, and stopping the whole process group. From inside: the server's own entry
point (``python -m pipstorm.infra.pypiserver.target`` calls ``serve_until_orphaned``): pypiserver's
main behind a watch that stops the group and removes its private folder when the owner dies. Kept
apart from the ``LocalPypiserver`` class so that it reads as what it configures and starts.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import os
import runpy
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from pipstorm.infra.pypiserver import cgroups

#: After its owner died, how long the server gets to shut down quickly before its group is killed.
ORPHAN_GRACE_S = 2.0

#: The private temp dir of one server (its cwd): htpasswd, gunicorn's files, the log.
PRIVATE_DIR_PREFIX = "pipstorm-pypiserver-"


def listening_port(pid: int) -> int | None:
    """The port ``pid`` listens on (gunicorn binds port 0 itself), None while it does not."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr:
            return int(conn.laddr.port)
    return None


def worker_count(pid: int) -> int:
    """How many workers gunicorn's master ``pid`` has forked so far."""
    try:
        return len(psutil.Process(pid).children())
    except psutil.NoSuchProcess:
        return 0


def http_status(
    host: str, port: int, path: str, authorization: str | None, timeout: float = 5.0
) -> int | None:
    """The status of one GET (None: no answer); a fresh connection each time."""
    headers = {"Authorization": authorization} if authorization else {}
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
    except OSError:
        return None
    else:
        return response.status
    finally:
        conn.close()


def log_tail(path: Path, chars: int) -> str:
    """The server log's last lines on one line (``": a | b"``), at most ``chars`` of it, for an
    error message; empty when there is nothing to read."""
    try:
        with path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - 4096))
            text = log.read().decode("utf-8", "replace")
    except OSError:
        return ""
    tail = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    return f": {tail[-chars:]}" if tail else ""


def terminate_group(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM the process group, wait for every member, then SIGKILL what is left.

    Workers are remembered before the signal: once the master has exited they are re-parented
    and can no longer be found as its children.
    """
    try:
        members = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        members = []
    signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout)
    _, alive = psutil.wait_procs(members, timeout=max(0.0, timeout / 2))
    if alive or proc.poll() is None:
        signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        psutil.wait_procs(alive, timeout=timeout)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def serve_until_orphaned(argv: list[str]) -> None:
    """The server process: pypiserver's main, stopped (SIGTERM) if its parent dies.

    Started in its own session, the server would otherwise outlive a load generator killed
    with SIGKILL, holding its port. The thread lives in the gunicorn master only: forked
    workers do not inherit it, and they exit with their master.
    """
    # First, before gunicorn forks a worker: enter the cgroup the owner made for us.
    cgroups.join_from_env(os.environ)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        # The owner died without stopping us (SIGKILL), so nobody else will remove our private
        # dir (our cwd: the htpasswd, maybe the log). Not before the server has stopped: in-flight
        # requests would get 500 for the missing htpasswd, recorded as the index's errors. So at
        # the master's exit, after its workers are gone.
        here = Path.cwd()
        if here.name.startswith(PRIVATE_DIR_PREFIX):  # checked by name before anything goes
            atexit.register(shutil.rmtree, here, ignore_errors=True)
        # The whole group (gunicorn's master and workers: it is our own session), with the quick
        # shutdown signal (SIGTERM is gunicorn's graceful one, up to 30 s). A signal sent to
        # this process from this thread was once seen lost, the master living on for minutes:
        # whatever still runs ORPHAN_GRACE_S later is killed (the folder removed first).
        signal_group(os.getpgrp(), signal.SIGINT)
        time.sleep(ORPHAN_GRACE_S)
        if here.name.startswith(PRIVATE_DIR_PREFIX):
            shutil.rmtree(here, ignore_errors=True)
        signal_group(os.getpgrp(), signal.SIGKILL)

    threading.Thread(target=watch, name="pipstorm-parent-watch", daemon=True).start()
    sys.argv = ["pypiserver", *argv]
    runpy.run_module("pypiserver", run_name="__main__", alter_sys=True)  # = python -m pypiserver
