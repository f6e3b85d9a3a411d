"""Per-shard figures of a run spread over generators: did every shard play its part, on time?

A merged report judges the index from all samples together; this table is about the generators:
each shard's runs (planned, recorded, failed, lost), how late its runs reached the index (onset
p95) and were launched (lag p95), what its clients cost (CPU-s per run, host CPU), and how far
its clock was from the coordinator's. A lost shard shows from when and how many runs it took.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pipstorm.engine.analysis.generator.onset import Onset
from pipstorm.engine.analysis.generator.saturation import (
    GeneratorCheck,
    check_generator,
    host_samples,
)
from pipstorm.engine.analysis.stats import NOT_FAILED, distribution
from pipstorm.engine.rundir.host import HostRow, number
from pipstorm.engine.rundir.meta import ShardMeta
from pipstorm.engine.rundir.records import ClientRecord


@dataclass(frozen=True)
class ShardRow:
    """One shard's line in the table (seconds, except the clock offset in ms)."""

    shard: int
    status: str
    host: str | None
    worker: str | None
    runs_planned: int
    runs_recorded: int
    runs_failed: int
    runs_lost: int
    lost_after_s: float | None  # when the loss was seen, after the run's offset 0
    onset_p95_s: float | None
    lag_p95_s: float | None
    cpu_s_per_run: float | None
    host_cpu_percent: float | None  # mean of the shard's host samples
    clock_offset_ms: float | None
    dispatch_ms: float | None
    error: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shard_rows(
    shards: Sequence[ShardMeta],
    clients: Sequence[ClientRecord],
    host: Sequence[HostRow],
    onset_by_run: Mapping[str, float],
    origin: float | None,
) -> tuple[ShardRow, ...]:
    """The table, one row per shard in index order; empty for a one-machine run."""
    by_id = {c.run_id: c for c in clients}
    rows: list[ShardRow] = []
    for shard in sorted(shards, key=lambda s: s.index):
        mine = [by_id[r] for r in shard.runs if r in by_id]
        onsets = [onset_by_run[r] for r in shard.runs if r in onset_by_run]
        cpu = [c.cpu_s for c in mine if c.cpu_s is not None]
        samples = [
            v
            for row in host
            if row.get("shard") == shard.index
            and (v := number(row.get("host_cpu_percent"))) is not None
        ]
        onset = distribution(onsets)
        lag = distribution(c.lag_s for c in mine)
        rows.append(
            ShardRow(
                shard=shard.index,
                status=shard.status,
                host=shard.host,
                worker=shard.worker,
                runs_planned=len(shard.runs),
                runs_recorded=len(mine),
                runs_failed=sum(1 for c in mine if c.outcome not in NOT_FAILED),
                runs_lost=len(shard.runs) - len(mine) if shard.status == "lost" else 0,
                lost_after_s=(
                    shard.lost_at - origin
                    if shard.lost_at is not None and origin is not None
                    else None
                ),
                onset_p95_s=None if onset is None else onset.p95,
                lag_p95_s=None if lag is None else lag.p95,
                cpu_s_per_run=math.fsum(cpu) / len(cpu) if cpu else None,
                host_cpu_percent=math.fsum(samples) / len(samples) if samples else None,
                clock_offset_ms=_ms(shard.clock_offset_s),
                dispatch_ms=_ms(shard.dispatch_s),
                error=shard.error,
            )
        )
    return tuple(rows)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def generator_check(
    host: Sequence[HostRow],
    clients: Sequence[ClientRecord],
    *,
    local_target: bool,
    onset: Onset | None,
) -> GeneratorCheck:
    """The generator check, per shard when the rows come from several (each shard's sampler
    watched its own host; interleaved, two shards' busy seconds would count twice): the first
    saturated shard's check, else shard 0's. A one-machine run is checked as it always was."""
    by_shard: dict[object, list[HostRow]] = {}
    for row in host:
        by_shard.setdefault(row.get("shard"), []).append(row)
    checks = [
        check_generator(host_samples(rows), clients, local_target=local_target, onset=onset)
        for _, rows in sorted(by_shard.items(), key=lambda item: str(item[0]))
    ] or [check_generator([], clients, local_target=local_target, onset=onset)]
    return next((c for c in checks if c.saturated), checks[0])
