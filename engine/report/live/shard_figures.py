"""The live page's per-shard figures of a run spread over generators (``--shards N``).

The page shows the whole run from the coordinator's folder, merged as the report merges it
(every line tagged with its ``shard``); where a figure is about a generator rather than the
index it is shown per shard too: runs finished, in flight and failed, each generator's CPU over
time and whether it was saturated, and its clock offset. A one-machine run has none of this.

Counted as the report's shard table counts (``pipstorm.engine.analysis.generator.shards``): a
run is in flight from its first request until its clients line arrives; failed as the report
says failed (an interrupted run is not a failed one).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipstorm.engine.analysis.generator.saturation import check_generator, host_samples
from pipstorm.engine.analysis.stats import NOT_FAILED
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.meta import ShardMeta


@dataclass
class ShardCounts:
    """What the feed counts of one shard as its lines arrive."""

    started: set[str] = field(default_factory=set)  # run ids with a request
    finished: set[str] = field(default_factory=set)  # run ids with a clients line
    failed: int = 0

    def client(self, run_id: str, outcome: str) -> None:
        self.finished.add(run_id)
        self.failed += outcome not in {*NOT_FAILED, "interrupted"}


def shard_of(line: Mapping[str, Any]) -> int | None:
    """The ``shard`` a merged line carries (None on a one-machine run)."""
    value = line.get("shard")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def shard_rows(
    shards: Sequence[ShardMeta],
    counts: Mapping[int, ShardCounts],
    host: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """One row per shard: status, host, clock offset, runs, and its generator's last CPU %."""
    last_cpu: dict[int, float] = {}
    for row in host:
        index, cpu = shard_of(row), row.get("host_cpu_percent")
        if index is not None and isinstance(cpu, int | float):
            last_cpu[index] = float(cpu)
    rows = []
    for shard in sorted(shards, key=lambda s: s.index):
        mine = counts.get(shard.index, ShardCounts())
        offset = shard.clock_offset_s
        rows.append(
            {
                "index": shard.index,
                "status": shard.status,
                "host": shard.host,
                "clock_offset_ms": None if offset is None else round(offset * 1000.0, 2),
                "planned": len(shard.runs),
                "finished": len(mine.finished),
                "in_flight": len(mine.started - mine.finished),
                "failed": mine.failed,
                "cpu_percent": last_cpu.get(shard.index),
            }
        )
    return rows


def cpu_by_shard(
    host: Sequence[Mapping[str, Any]], started: float | None, bin_s: float
) -> dict[str, Any]:
    """Each shard's host CPU % on one time axis (bins of ``bin_s``: the shards' samplers tick
    at their own instants; a bin keeps a shard's last sample in it)."""
    by_bin: dict[int, dict[int, float]] = {}
    shards: set[int] = set()
    for row in host:
        index, ts, cpu = shard_of(row), row.get("ts"), row.get("host_cpu_percent")
        if index is None or started is None or not isinstance(ts, int | float):
            continue
        if not isinstance(cpu, int | float):
            continue
        shards.add(index)
        by_bin.setdefault(int(max(0.0, ts - started) // bin_s), {})[index] = float(cpu)
    bins = sorted(by_bin)
    order = sorted(shards)
    return {
        "t": [b * bin_s for b in bins],
        "shards": order,
        "cpu": [[by_bin[b].get(i) for b in bins] for i in order],
    }


def shard_saturation(data: RunData) -> list[dict[str, Any]]:
    """Each shard's generator check on its own host samples and client runs (the report's
    check, ``pipstorm.engine.analysis.generator.saturation``, without the burst-onset part:
    onset is judged over the whole run)."""
    out: list[dict[str, Any]] = []
    for shard in sorted(data.meta.shards, key=lambda s: s.index):
        rows = [r for r in data.host if shard_of(r) == shard.index]
        runs = set(shard.runs)
        clients = [c for c in data.clients if c.run_id in runs]
        check = check_generator(host_samples(rows), clients, local_target=data.meta.embedded_target)
        out.append(
            {
                "index": shard.index,
                "saturated": check.saturated if check.samples else None,
                "reason": "; ".join(check.reasons) or None,
                "cpu_p95": check.cpu_p95,
            }
        )
    return out
