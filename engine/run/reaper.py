"""Remove a scratch folder once its owner process is gone, even if the owner was SIGKILLed.

A local run keeps its clients' and launchers' work folders under one temp folder
(``guarded_folder``), and the local Dask cluster keeps its scheduler's and workers' scratch
folders (and each shard's streams before they are shipped) under one. The owner removes it when
it ends; this process, started beside it in its own session, removes it when the owner cannot
(SIGKILL): it waits for the owner to exit, then for every process still working inside the folder
(its cwd there: an orphaned embedded server finishing its in-flight requests, whose htpasswd is in
its private dir below; clients and workers exiting with their parent) to exit, at most
``SETTLE_S``, and removes the folder. Then, as root, it sweeps the pipstorm cgroups whose owner
is gone (``pipstorm.infra.pypiserver.cgroups.remove_stale``): the one the owner's clients moved
into after their first request (``pipstorm.infra.client_cgroup``) goes with the owner, not only
at the next start.

Run as ``python -m pipstorm.engine.run.reaper PID FOLDER``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from pipstorm.infra.pypiserver.cgroups import CgroupError, remove_stale

#: After the owner is gone, how long the processes working inside the folder get to exit; the
#: folder is removed then whatever is left.
SETTLE_S = 30.0


def start(folder: Path) -> subprocess.Popen[bytes]:
    """A reaper for ``folder`` watching this process; terminate it once the folder is removed."""
    return subprocess.Popen(
        [sys.executable, "-m", "pipstorm.engine.run.reaper", str(os.getpid()), str(folder)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C to the owner's group must not stop the reaper first
        env={k: v for k, v in os.environ.items() if not k.startswith("PYPI_")},  # no credentials
    )


def stop(reaper: subprocess.Popen[bytes]) -> None:
    """The owner removed the folder itself: the reaper is not needed any more."""
    reaper.terminate()
    try:
        reaper.wait(timeout=5)
    except subprocess.TimeoutExpired:
        reaper.kill()
        reaper.wait()


@contextmanager
def guarded_folder(prefix: str) -> Iterator[Path]:
    """A new temp folder, removed when the block ends, or by a reaper if this process cannot
    (a SIGKILL of pipstorm's process group, which ends the block's owner mid-flight)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    guard = start(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        stop(guard)


def _wait_gone(pid: int) -> None:
    """Until ``pid`` has exited. A SIGKILLed owner stays a zombie until its parent (a shell, a
    test) reaps it, and ``psutil.Process.wait`` on a process that is not our child waits for that
    too: a zombie has exited, its folder can go."""
    with contextlib.suppress(psutil.NoSuchProcess):
        owner = psutil.Process(pid)
        while owner.status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.1)


def _working_inside(folder: str) -> bool:
    """Whether a live process has its cwd in ``folder`` (a zombie has exited: it does not)."""
    for proc in psutil.process_iter(["cwd", "status"]):
        cwd = proc.info["cwd"]  # None where it cannot be read
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not cwd:
            continue
        if cwd == folder or cwd.startswith(folder + os.sep):
            return True
    return False


def main(argv: list[str]) -> int:
    pid, folder = int(argv[1]), Path(argv[2])
    _wait_gone(pid)
    deadline = time.monotonic() + SETTLE_S
    real = os.path.realpath(folder)
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.5)  # worker processes notice their parent's death within a second or so
        if not _working_inside(real):
            shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(folder, ignore_errors=True)  # past the bound: nothing of the run outlives it
    if os.geteuid() == 0:
        with contextlib.suppress(OSError, CgroupError):
            remove_stale()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
