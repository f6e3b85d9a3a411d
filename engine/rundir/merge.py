"""Shards' streams merged into one results folder that reads exactly like one machine's.

Each shard writes its ``requests.jsonl``, ``clients.jsonl`` and ``host.jsonl`` on its own
generator and ships them back whole (:func:`pack`, zlib: JSONL compresses ~10x). The coordinator
:func:`merge_into` its run folder: every line gains ``shard`` and ``host`` (readers ignore keys
they do not know, so every report, trace and comparison reads the merged folder unchanged), the
lines of all shards are put in time order, and percentiles are then computed by the reports from
all samples, never averaged per shard. A malformed line (a shard's crash cut it short) is kept
as it was, at the end, so the reader skips and counts it as for a single machine.
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


def _sort_key(key: str) -> Callable[[dict[str, Any]], float]:
    """Order rows by ``key`` (rows without a number there first, as read)."""

    def order(row: dict[str, Any]) -> float:
        value = row.get(key)
        return float(value) if isinstance(value, int | float) else 0.0

    return order


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
            for raw in zlib.decompress(blob).splitlines():
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
        if not present:
            continue
        rows.sort(key=_sort_key(key))
        with (run_dir / name).open("wb") as out:
            for row in rows:
                out.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            for raw in broken:
                out.write(raw + b"\n")
        counts[name] = len(rows) + len(broken)
    return counts
