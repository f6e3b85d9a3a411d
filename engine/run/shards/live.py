"""What the coordinator of a sharded run follows while its shards play.

A one-machine run follows its own streams from its dispatch loop: the progress line
(``pipstorm.engine.run.progress``), ``--abort-on-fail`` (``pipstorm.engine.run.live.abort``) and
the live page all read the results folder. A sharded run now has the same folder on the
coordinator, filled as the shards' lines arrive (``pipstorm.engine.run.shards.stream``), so the
same three read it the same way: :class:`CoordinatorLive` holds the pulls, the progress line and
the abort watch, and :meth:`CoordinatorLive.tick` is called from the coordinator's watch of its
shards (``pipstorm.engine.run.shards.coordinator``, five times a second).

The counts differ from one machine's in one way: the coordinator launches nothing itself, so
``launched`` is the runs whose intended instant has passed, and ``in flight`` those of them not
finished as far as the lines received say (a run ended less than a pull ago still shows in
flight).
"""

from __future__ import annotations

import bisect
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pipstorm.engine.run.live.abort import AbortWatch
from pipstorm.engine.run.progress import LiveProgress, RunCounts
from pipstorm.engine.run.shards.split import Shard
from pipstorm.engine.run.shards.stream import Puller, ShardFeed
from pipstorm.engine.rundir.files import REQUESTS_FILE
from pipstorm.engine.rundir.meta import RunMeta


@dataclass
class CoordinatorLive:
    """The pulls, the progress line and (with ``--abort-on-fail``) the abort watch of a run."""

    feed: ShardFeed
    puller: Puller
    progress: LiveProgress
    abort: AbortWatch | None
    offsets: Sequence[float]  # every planned run's intended offset, in order
    t0: float  # the shared offset 0 (epoch seconds)

    def tick(self) -> None:
        """Progress if a line is due, then raise ``AbortRun`` if the run can no longer pass."""
        self.progress.update(self.counts())
        if self.abort is not None:
            self.abort.check()

    def counts(self) -> RunCounts:
        """The client runs so far, as the coordinator knows them from the lines received."""
        launched = bisect.bisect_right(self.offsets, time.time() - self.t0)
        finished, failed = self.feed.runs_finished()
        return RunCounts(
            launched=launched,
            in_flight=max(0, launched - finished),
            finished=finished,
            failed=failed,
        )

    def end_line(self) -> None:
        """End the progress line (before the coordinator says anything else)."""
        self.progress.close()

    def stop(self, *, played: bool) -> None:
        """No more pulls; with ``played`` (every shard settled) the last progress line."""
        self.puller.stop()
        if played:
            self.progress.update(self.counts(), force=True)
        self.progress.close()


def follow(
    feed: ShardFeed,
    client: Any,  # noqa: ANN401 - distributed.Client
    *,
    shards: Sequence[Shard],
    meta: RunMeta,
    abort_on_fail: bool,
    quiet: bool,
    emit: Callable[[str], None],
    tty: bool,
) -> CoordinatorLive:
    """Start pulling the shards' streams; the run's live view from the offset 0 in ``meta``."""
    t0 = meta.started if meta.started is not None else time.time()
    puller = Puller(feed, client)
    puller.start()
    progress = LiveProgress(
        feed.run_dir / REQUESTS_FILE,
        planned_s=meta.planned_duration_s or 0.0,
        t0_mono=time.monotonic() + (t0 - time.time()),
        emit=emit,
        tty=sys.stderr if tty else None,
        quiet=quiet,
    )
    abort = None
    if abort_on_fail:
        abort = AbortWatch(feed.run_dir / REQUESTS_FILE, meta, feed.runs_finished)
    offsets = sorted(run.offset_s for shard in shards for run in shard.runs)
    return CoordinatorLive(feed, puller, progress, abort, offsets, t0)
