"""Room on the results folder's file system, checked before and during a run.

A disk that fills in the middle of a run tears the JSONL streams at whatever byte the proxy,
the pool and the sampler had reached, and leaves a ``run.json`` that cannot say what happened
(it cannot be rewritten any more). So a run keeps ``MIN_FREE_BYTES`` free: it is refused before
any load when the folder has less, and stopped, with ``run.json`` marking it interrupted, when
the free space falls under it during the run (checked twice a second by the dispatch loop).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from pipstorm.engine.errors import UsageError

#: What a run keeps free: its final ``run.json`` (a few KiB, written beside the old one and
#: renamed) and the streams' lines of the next half second of a busy burst (~100 requests of
#: ~0.3 KiB each per generator), with room to spare.
MIN_FREE_BYTES: Final = 1 << 20


class DiskFull(UsageError):
    """The results folder's file system is (nearly) full: ENOSPC is, or would be, next."""


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s file system."""
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def check_room(run_dir: Path, minimum: int = MIN_FREE_BYTES) -> None:
    """Raise :class:`DiskFull` when ``run_dir``'s file system has less than ``minimum`` free."""
    free = free_bytes(run_dir)
    if free < minimum:
        raise DiskFull(
            f"results folder {run_dir}: its disk is nearly full ({free // 1024} KiB free, a "
            f"run keeps {minimum // 1024} KiB; No space left on device next)"
        )
