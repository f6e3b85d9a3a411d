"""Shards' streams pulled to the coordinator while the run plays, not only shipped at the end.

Before, a shard's records reached the coordinator only when the shard ended (its whole streams in
:class:`pipstorm.engine.run.shards.worker.ShardResult`): nothing could watch a sharded run while
it played. Now the coordinator pulls, about once a second, what each shard appended to its
``requests.jsonl``, ``clients.jsonl`` and ``host.jsonl`` since the last pull, and appends it,
tagged with ``shard`` and ``host`` as the merge tags it (``pipstorm.engine.rundir.merge``), to
its own files: the results folder stays the single source of truth, and the live page,
``--abort-on-fail`` and the progress line read the whole run from it as they do on one machine.

Why pulled, by ``Client.run`` (out of band, beside the shard's task): the coordinator decides how
often and how much (at most ``CHUNK_BYTES`` per stream and pull), a worker keeps no state but the
folder it plays in, and a pull whose answer is lost changes nothing, since the coordinator holds
the offsets and a piece is taken only if it starts exactly where the coordinator's copy ends. The
pulls run in a thread of their own, so a slow or dead worker never delays the coordinator's
watch of its shards. At the end each shard's whole streams arrive with its result and
:meth:`ShardFeed.close` appends what had not been pulled; a lost shard keeps what was pulled
before its worker died (its runs that ended before are in the report, not thrown away).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.stats import NOT_FAILED
from pipstorm.engine.rundir.files import CLIENTS_FILE
from pipstorm.engine.rundir.merge import STREAMS, ShardStreams, append_lines, tag_lines

#: How often the coordinator pulls (the live page polls every second, shows at most every 2 s).
PULL_S = 1.0
#: The most one pull takes of one stream (a pull that falls behind catches up over several).
CHUNK_BYTES = 4 << 20

# Worker side: the folders of the shards this worker plays now, by key; the lock keeps a folder
# from being removed while a pull reads it.
_PLAYING: dict[str, Path] = {}
_PLAYING_LOCK = threading.Lock()


def shard_key(token: str, index: int) -> str:
    """The name under which shard ``index`` of run ``token`` is pulled."""
    return f"{token}-{index}"


@contextmanager
def pulled_while_playing(key: str, folder: Path) -> Iterator[None]:
    """On the worker: ``folder``'s streams can be pulled while the block runs (the shard)."""
    with _PLAYING_LOCK:
        _PLAYING[key] = folder
    try:
        yield
    finally:
        with _PLAYING_LOCK:
            _PLAYING.pop(key, None)


def read_appended(wanted: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, Any]]:
    """On a worker (``Client.run``): for each shard key it plays, each stream's complete lines
    past the offset asked, as ``{name: (offset, zlib bytes)}``; a key it does not play is left
    out (the shard ended, or plays elsewhere)."""
    _quiet_out_of_band_log()
    out: dict[str, dict[str, Any]] = {}
    with _PLAYING_LOCK:
        for key, offsets in wanted.items():
            folder = _PLAYING.get(key)
            if folder is None:
                continue
            pieces: dict[str, Any] = {}
            for name in STREAMS:
                start = int(offsets.get(name, 0))
                data = _complete_lines(folder / name, start)
                if data:
                    pieces[name] = (start, zlib.compress(data, 1))
            out[key] = pieces
    return out


def _complete_lines(path: Path, offset: int) -> bytes:
    """The bytes past ``offset`` up to the last complete line (a line cut short waits)."""
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            data = fh.read(CHUNK_BYTES)
    except FileNotFoundError:
        return b""
    end = data.rfind(b"\n")
    return data[: end + 1] if end >= 0 else b""


class _DropPulls(logging.Filter):
    """A worker logs every out-of-band call at INFO: one line a second per worker is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            str(record.msg).startswith("Run out-of-band function")
            and "read_appended" in str(record.args)
        )


def _quiet_out_of_band_log() -> None:
    logger = logging.getLogger("distributed.worker")
    if not any(isinstance(f, _DropPulls) for f in logger.filters):
        logger.addFilter(_DropPulls())


@dataclass
class ShardFeed:
    """The coordinator's side: what it holds of each shard's streams, in its own run folder."""

    run_dir: Path
    token: str
    hosts: dict[int, str]  # shard index -> host name (as the merge tags lines)
    workers: dict[int, str]  # shard index -> worker address
    offsets: dict[int, dict[str, int]] = field(default_factory=dict)
    closed: set[int] = field(default_factory=set)
    finished: dict[int, set[str]] = field(default_factory=dict)  # run ids with a clients line
    failed: dict[int, int] = field(default_factory=dict)  # client runs failed, as reported
    pulls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def pull(self, client: Any) -> None:  # noqa: ANN401 - distributed.Client
        """One pull from every shard still playing (errors of a worker are skipped)."""
        with self._lock:
            active = [i for i in self.workers if i not in self.closed]
            wanted = {shard_key(self.token, i): dict(self.offsets.get(i, {})) for i in active}
        if not active:
            return
        replies = client.run(
            read_appended, wanted, workers=[self.workers[i] for i in active], on_error="return"
        )
        by_key = {shard_key(self.token, i): i for i in active}
        with self._lock:
            self.pulls += 1
            for reply in replies.values():
                if not isinstance(reply, dict):  # that worker failed to answer
                    continue
                for key, pieces in reply.items():
                    index = by_key.get(key)
                    if index is None or index in self.closed:
                        continue
                    for name, (start, blob) in pieces.items():
                        if start == self.offsets.get(index, {}).get(name, 0):
                            self._take(index, name, zlib.decompress(blob))

    def close(self, index: int, packed: Mapping[str, bytes]) -> None:
        """Shard ``index`` ended and shipped its whole streams: append what was not pulled."""
        with self._lock:
            if index in self.closed:
                return
            for name, blob in packed.items():
                done = self.offsets.get(index, {}).get(name, 0)
                self._take(index, name, zlib.decompress(blob)[done:])
            self.closed.add(index)

    def lose(self, index: int) -> None:
        """Shard ``index`` will ship nothing more (lost, late): keep what was pulled."""
        with self._lock:
            self.closed.add(index)

    def runs_finished(self) -> tuple[int, int]:
        """(finished, failed) client runs of every shard, as received so far."""
        with self._lock:
            return sum(len(s) for s in self.finished.values()), sum(self.failed.values())

    def _take(self, index: int, name: str, data: bytes) -> None:
        if not data:
            return
        shard = ShardStreams(index, self.hosts.get(index, "?"))
        rows, broken = tag_lines(data, shard)
        append_lines(self.run_dir / name, rows, broken)
        offsets = self.offsets.setdefault(index, {})
        offsets[name] = offsets.get(name, 0) + len(data)
        if name == CLIENTS_FILE:
            seen = self.finished.setdefault(index, set())
            for row in rows:
                seen.add(str(row.get("run_id")))
                # As the report counts them (an interrupted run is not a failed one).
                if row.get("outcome") not in {*NOT_FAILED, "interrupted"}:
                    self.failed[index] = self.failed.get(index, 0) + 1


class Puller:
    """Pulls ``feed`` every ``PULL_S`` in a thread of its own until :meth:`stop`."""

    def __init__(self, feed: ShardFeed, client: Any, every_s: float = PULL_S) -> None:  # noqa: ANN401
        self.feed = feed
        self._client = client
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="shard-streams", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._every_s):
            # A failed pull is tried again next time; the end ships every stream whole.
            with contextlib.suppress(Exception):
                self.feed.pull(self._client)

    def stop(self) -> None:
        """No pull writes after this returns (a pull in flight is waited for, boundedly; a
        late one writes nothing: every shard is closed by then)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
