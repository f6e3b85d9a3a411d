"""Shards' streams merged into one results folder that reads exactly like one machine's.

Each shard writes its ``requests.jsonl``, ``clients.jsonl`` and ``host.jsonl`` on its own
generator. While the run plays the coordinator pulls what each shard appended
(``pipstorm.engine.run.shards.stream``) and :func:`append_lines` it to its own folder as it
arrives, so the live page, ``--abort-on-fail`` and the progress line read the whole run from one
place; at the end each shard ships its streams whole (:func:`pack`, zlib: JSONL compresses
~10x), the coordinator appends what it had not received yet, and :func:`put_in_time_order`
leaves the folder exactly as :func:`merge_into` writes it at once: every line gains ``shard``
and ``host`` (:func:`tag_lines`; readers ignore keys they do not know, so every report, trace
and comparison reads the merged folder unchanged), the lines of all shards are in time order,
and percentiles are then computed by the reports from all samples, never averaged per shard. A
malformed line (a shard's crash cut it short) is kept as it was, at the end, so the reader skips
and counts it as for a single machine.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.engine.rundir.files import CLIENTS_FILE, HOST_FILE, REQUESTS_FILE

#: The streams a shard ships back, and the field that orders each in time.
STREAMS: Mapping[str, str] = {REQUESTS_FILE: "ts", CLIENTS_FILE: "intended", HOST_FILE: "ts"}


@dataclass(frozen=True)
class ShardStreams:
    """What one shard ships back: its index, host name and compressed streams by file name."""

    index: int
    host: str
    packed: Mapping[str, bytes] = field(default_factory=dict)


def pack(shard_dir: Path) -> dict[str, bytes]:
    """A shard's streams, compressed, by file name (a missing stream is left out)."""
    return {
        name: zlib.compress((shard_dir / name).read_bytes(), 1)
        for name in STREAMS
        if (shard_dir / name).is_file()
    }


def _sort_key(key: str) -> Callable[[dict[str, Any]], tuple[float, int]]:
    """Order rows by ``key`` (rows without a number there first), then by shard; rows equal in
    both keep their order (a shard's own), so the order does not depend on which shard's lines
    came first: a burst's runs share one intended instant."""

    def order(row: dict[str, Any]) -> tuple[float, int]:
        value, shard = row.get(key), row.get("shard")
        return (
            float(value) if isinstance(value, int | float) else 0.0,
            shard if isinstance(shard, int) else -1,
        )

    return order


def tag_lines(data: bytes, shard: ShardStreams) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The complete lines of ``data`` (a shard's stream, or a piece of it) as rows tagged with
    ``shard`` and ``host``, and the malformed lines as they were."""
    rows: list[dict[str, Any]] = []
    broken: list[bytes] = []
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except ValueError:
            broken.append(raw)
            continue
        if not isinstance(row, dict):
            broken.append(raw)
            continue
        row["shard"] = shard.index
        row["host"] = shard.host
        rows.append(row)
    return rows, broken


def append_lines(path: Path, rows: Sequence[dict[str, Any]], broken: Sequence[bytes] = ()) -> None:
    """Append tagged rows (then malformed lines) to ``path``: how the coordinator writes what a
    shard streams while the run plays (``pipstorm.engine.run.shards.stream``)."""
    with path.open("ab") as out:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        for raw in broken:
            out.write(raw + b"\n")


def put_in_time_order(run_dir: Path) -> dict[str, int]:
    """Rewrite each stream of ``run_dir`` in time order (malformed lines last), atomically: the
    end of a run whose shards streamed their lines as they came; the line count of each."""
    counts: dict[str, int] = {}
    for name, key in STREAMS.items():
        path = run_dir / name
        if not path.is_file():
            continue
        rows: list[dict[str, Any]] = []
        broken: list[bytes] = []
        for raw in path.read_bytes().splitlines():
            if not raw.strip():
                continue
            try:
                row = json.loads(raw)
            except ValueError:
                row = None
            if isinstance(row, dict):
                rows.append(row)
            else:
                broken.append(raw)
        rows.sort(key=_sort_key(key))
        temp = path.with_name(f".{name}.sorting")
        temp.unlink(missing_ok=True)
        append_lines(temp, rows, broken)
        temp.replace(path)
        counts[name] = len(rows) + len(broken)
    return counts


def merge_into(run_dir: Path, shards: Sequence[ShardStreams]) -> dict[str, int]:
    """Write the shards' streams into ``run_dir``, tagged and in time order; the line count of
    each stream. A stream no shard shipped is not created (the report names it missing)."""
    counts: dict[str, int] = {}
    for name, key in STREAMS.items():
        rows: list[dict[str, Any]] = []
        broken: list[bytes] = []
        present = False
        for shard in shards:
            blob = shard.packed.get(name)
            if blob is None:
                continue
            present = True
            tagged, cut = tag_lines(zlib.decompress(blob), shard)
            rows.extend(tagged)
            broken.extend(cut)
        if not present:
            continue
        rows.sort(key=_sort_key(key))
        (run_dir / name).unlink(missing_ok=True)
        append_lines(run_dir / name, rows, broken)
        counts[name] = len(rows) + len(broken)
    return counts
