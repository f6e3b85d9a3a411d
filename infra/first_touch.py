"""What memory touched for the first time costs this host beyond the guest's own page fault.

Why a load generator cares: a warm child faults in ~12 MB of its own before its gate (the
copy-on-write pages of its launcher that the client's start-up writes to), so a burst of 510
children faults in ~6 GB within its lead. On a virtual machine whose guest hands free memory
back to its host (virtio-balloon free page reporting: this Firecracker guest has
``page_reporting`` on its command line) the host must back such memory again when it is
touched. Measured here: 0.5 ms of CPU per MB for memory the guest had kept, 2.3-3.0 ms for
memory it had given back, and the guest keeps only ~5-7 GB of its free memory; 200 children
forked while 6 GB were held elsewhere cost 52 ms of CPU each to their gate instead of 20
(docs/performance.md, "x170's first run on a fresh machine"). The lead a burst is prepared with
(``pipstorm.engine.run.plan.lead``) adds this per MB a child holds.

How: fresh private mappings asked for as transparent huge pages where the kernel grants them
(``madvise``), so each fault takes a free 2 MB block, the kind a guest reports to its host. Two
are touched and held, the second drawing past whatever the first found that was freed just
before (a process that exited, the probes): the dearer of the two is the first touch. Both are
released, and a third takes the blocks they just freed, which the host still backs: the touch
again. The difference per MB is the host's part: about 0 on bare metal, in a guest that keeps its
memory, or just after a large free (then the figure is low for a while: memory freed is reported
within tens of seconds; the plan keeps the last figure that found memory given back,
``pipstorm.engine.run.plan.lead.touch_cost``). The page writes are the same in all three, so
the interpreter's loop cancels out. One measure costs ~0.2 s of CPU at most (64 MB at 2.5 ms, 32
at 0.15).
"""

from __future__ import annotations

import mmap
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

#: Each sample: 16 huge pages, cheap at the cold rate.
SAMPLE_MB = 32
PAGE = mmap.PAGESIZE


@dataclass(frozen=True)
class FirstTouch:
    """CPU per MB of the first touch of fresh memory, and of the same again just after."""

    first_ms_per_mb: float
    again_ms_per_mb: float
    huge_pages: bool  # whether the mapping was asked for as transparent huge pages

    @property
    def host_ms_per_mb(self) -> float:
        """What backing memory again costs, per MB: the first touch's extra over the second."""
        return max(0.0, self.first_ms_per_mb - self.again_ms_per_mb)


def measure(sample_mb: int = SAMPLE_MB) -> FirstTouch:
    """Two fresh samples of ``sample_mb`` touched and held, then one more once they are freed."""
    with ExitStack() as held:
        first = [_touch(held.enter_context(_area(sample_mb))) for _ in range(2)]
    with _area(sample_mb) as area:
        again = _touch(area)
    huge = all(h for _, h in first)
    return FirstTouch(round(max(ms for ms, _ in first), 3), round(again[0], 3), huge)


@contextmanager
def _area(sample_mb: int) -> Iterator[mmap.mmap]:
    area = mmap.mmap(-1, sample_mb << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        yield area
    finally:
        area.close()


def _touch(area: mmap.mmap) -> tuple[float, bool]:
    """CPU of this thread per MB to write one byte of every page of a fresh mapping, and
    whether it was asked for as huge pages."""
    huge = _ask_huge(area)
    size = len(area)
    before = time.thread_time()
    for offset in range(0, size, PAGE):
        area[offset] = 1
    spent = time.thread_time() - before
    return 1000.0 * spent / (size >> 20), huge


def _ask_huge(area: mmap.mmap) -> bool:
    """Ask for transparent huge pages; False where the kernel or Python cannot."""
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None:
        return False
    try:
        area.madvise(advice)
    except OSError:
        return False
    return True
