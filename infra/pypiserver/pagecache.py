"""Dropping a corpus from the page cache before a sized server starts, so it pays for its reads.

Linux charges a cached page to the memory cgroup that first read it. pipstorm builds (or checked)
the corpus itself, so its pages sit in the page cache charged to pipstorm's own cgroup: a sized
server reading them would find them there, never charged against its memory limit, and a
128 MB container would seem to hold a corpus ten times its size. In production the container
reads its packages from EFS through its own page cache, inside its limit (the incident's
"EFS metadata-heavy workload requires page cache"). ``posix_fadvise(DONTNEED)`` on each file
drops its clean, unmapped pages (no root needed, nothing else touched; dirty ones are written
first), so the server's first
read of each file is charged to the server's cgroup, as a fresh container's would be.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path


def drop_cached(directories: Iterable[Path]) -> int:
    """Ask the kernel to drop the cached pages of every file in ``directories`` (one level, as
    pypiserver's ``simple-dir`` reads them, plus subfolders); returns the files advised."""
    advised = 0
    for directory in directories:
        for root, _, names in os.walk(directory):
            for name in names:
                with contextlib.suppress(OSError):
                    fd = os.open(Path(root) / name, os.O_RDONLY)
                    try:
                        # Dirty pages (a corpus just built) are not dropped, only queued for
                        # writeback: write them first (Linux allows it on a read-only fd).
                        os.fdatasync(fd)
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                        advised += 1
                    finally:
                        os.close(fd)
    return advised
