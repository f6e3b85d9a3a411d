"""Remove a scratch folder once its owner process is gone, even if the owner was SIGKILLed.

A local run keeps its clients' and launchers' work folders under one temp folder
(``guarded_folder``), and the local Dask cluster keeps its scheduler's and workers' scratch
folders (and each shard's streams before they are shipped) under one. The owner removes it when
it ends; this process, started beside it in its own session, removes it when the owner cannot
(SIGKILL): it waits for the owner to exit, gives the worker processes (which
exit with their parent) a moment, and removes the folder.

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

#: After the owner is gone, how long removal is retried while its workers finish exiting.
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


def main(argv: list[str]) -> int:
    pid, folder = int(argv[1]), Path(argv[2])
    _wait_gone(pid)
    deadline = time.monotonic() + SETTLE_S
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(1.0)  # worker processes notice their parent's death within a second or so
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
