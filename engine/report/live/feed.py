"""What the live dashboard shows, read from a run's own streams as they grow.

The results folder stays the single source of truth: :class:`LiveFeed` follows
``requests.jsonl``, ``clients.jsonl``, ``host.jsonl`` and ``target_cgroup.jsonl`` incrementally
(:class:`pipstorm.engine.rundir.jsonl.JsonlTail`: a run of hours is never re-read) and re-reads
``run.json`` (small) and ``cloudwatch.jsonl`` (written whole after the load, when it changes:
``cloudwatch_figures``). A browser that connects late gets the whole run so far, because the
feed starts from the files' first byte, whatever it is asked and whenever. A sharded run's
folder on the coordinator fills as the shards' lines arrive (``pipstorm.engine.run.shards``),
merged as the report merges them; the feed adds what is per generator (``shard_figures``).

Two kinds of figures, two costs:

* time series (requests/s, p50/p95/p99 per operation, errors and status classes per bin,
  generator CPU) are kept up to date record by record in fixed bins; only the bins that
  received records since the last snapshot are summarised again;
* the judged figures (each threshold's state so far, the generator check, burst onset per
  tick, the target's failure) come from the report's own code (``build_report`` on the records
  read so far), so the page says what the report will say. That costs time proportional to
  the run, so it is redone at most every ``JUDGE_EVERY_S`` and never more often than
  ``JUDGE_COST_FACTOR`` times its own last cost allows (the generator must not pay for the
  page: a judgement that took 0.2 s waits 2 s before the next).

Nothing is computed while no browser asks: the server calls :meth:`LiveFeed.snapshot` per
request, and the feed reads the files then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipstorm.engine.analysis.stats import NOT_FAILED, counts_as_error, percentile
from pipstorm.engine.report.live.cloudwatch_figures import CloudWatchFigures
from pipstorm.engine.report.live.judged import judged_state
from pipstorm.engine.report.live.shard_figures import (
    ShardCounts,
    cpu_by_shard,
    shard_of,
    shard_rows,
)
from pipstorm.engine.rundir.data import RunData
from pipstorm.engine.rundir.files import (
    CLIENTS_FILE,
    HOST_FILE,
    REQUESTS_FILE,
    TARGET_CGROUP_FILE,
)
from pipstorm.engine.rundir.jsonl import JsonlTail, RecordError
from pipstorm.engine.rundir.meta import RunMeta
from pipstorm.engine.rundir.records import (
    ClientRecord,
    RequestRecord,
    request_from_json,
)

#: The judged figures are redone at most this often...
JUDGE_EVERY_S = 2.0
#: ...and at most once per this many times their last cost (10: under 10 % of a core).
JUDGE_COST_FACTOR = 10.0
#: Bins of the time series: 1 s for runs of up to 10 minutes, 5 s beyond (a 24-minute run:
#: 288 points per series).
LONG_RUN_S = 600.0
STATUS_CLASSES = ("2xx", "3xx", "4xx", "5xx", "no answer")


@dataclass
class _Bin:
    """One bin of the time series: latencies per operation, errors and status classes."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0
    status: dict[str, int] = field(default_factory=dict)


def status_class(status: int | None) -> str:
    """``2xx`` ... ``5xx``, or ``no answer`` (a transport error)."""
    if status is None or not 200 <= status <= 599:
        return "no answer"
    return f"{status // 100}xx"


class LiveFeed:
    """The dashboard's state of one results folder; :meth:`snapshot` is thread-safe."""

    def __init__(self, run_dir: Path, *, judge_every_s: float = JUDGE_EVERY_S) -> None:
        self.run_dir = run_dir
        self.judge_every_s = judge_every_s
        self._lock = threading.Lock()
        self._tails = {
            name: JsonlTail(run_dir / name)
            for name in (REQUESTS_FILE, CLIENTS_FILE, HOST_FILE, TARGET_CGROUP_FILE)
        }
        self._requests: list[RequestRecord] = []
        self._clients: list[ClientRecord] = []
        self._host: list[Mapping[str, Any]] = []
        self._cgroup: list[Mapping[str, Any]] = []
        self._bins: dict[int, _Bin] = {}
        self._summaries: dict[int, dict[str, Any]] = {}
        self._dirty: set[int] = set()
        self._run_ids: set[str] = set()
        self._by_shard: dict[int, ShardCounts] = {}  # a sharded run's lines, per shard
        self._cloudwatch = CloudWatchFigures(run_dir)
        self._judged: dict[str, Any] = {}
        self._judged_at = 0.0
        self._judge_wait_s = 0.0
        self.judge_cpu_s = 0.0  # what judging has cost so far (the bench reads it)

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready data (read from the files now)."""
        with self._lock:
            meta = _read_meta(self.run_dir)
            bin_s = 5.0 if (meta.planned_duration_s or 0.0) > LONG_RUN_S else 1.0
            self._read(meta, bin_s)
            ended = meta.ended is not None
            self._judge(meta, force=ended)
            return {
                **self._header(meta),
                "bin_s": bin_s,
                "series": self._series(bin_s),
                "host": _host_series(self._host, meta.started),
                "runs": self._runs(meta),
                "target_counters": _cgroup_last(self._cgroup),
                "target_series": _cgroup_series(self._cgroup, meta.started),
                "cloudwatch": self._cloudwatch.state(meta.started),
                "shards": shard_rows(meta.shards, self._by_shard, self._host),
                "cpu_by_shard": cpu_by_shard(self._host, meta.started, bin_s),
                **self._judged,
            }

    def _read(self, meta: RunMeta, bin_s: float) -> None:
        started = meta.started
        for line in self._tails[REQUESTS_FILE].poll():
            try:
                record = request_from_json(line)
            except (RecordError, TypeError, ValueError):
                continue
            self._requests.append(record)
            if record.run_id is not None:
                self._run_ids.add(record.run_id)
                if (index := shard_of(line)) is not None:
                    self._by_shard.setdefault(index, ShardCounts()).started.add(record.run_id)
            if started is None:
                continue
            index = int(max(0.0, record.ts - started) // bin_s)
            slot = self._bins.setdefault(index, _Bin())
            slot.latencies.setdefault(record.op, []).append(record.total_ms)
            slot.errors += counts_as_error(record, count_injected=meta.count_injected)
            label = status_class(record.status)
            slot.status[label] = slot.status.get(label, 0) + 1
            self._dirty.add(index)
        for line in self._tails[CLIENTS_FILE].poll():
            try:
                client = ClientRecord.from_json(line)
            except (RecordError, TypeError, ValueError):
                continue
            self._clients.append(client)
            if (index := shard_of(line)) is not None:
                self._by_shard.setdefault(index, ShardCounts()).client(
                    client.run_id, client.outcome
                )
        self._host.extend(self._tails[HOST_FILE].poll())
        self._cgroup.extend(self._tails[TARGET_CGROUP_FILE].poll())

    def _judge(self, meta: RunMeta, *, force: bool) -> None:
        """The report's own figures on what was read, at most as often as it may cost."""
        now = time.monotonic()
        if not force and now - self._judged_at < max(self.judge_every_s, self._judge_wait_s):
            return
        if force and self._judged.get("final"):
            return
        cpu = time.thread_time()
        data = RunData(
            run_dir=self.run_dir,
            meta=meta,
            requests=tuple(self._requests),
            clients=tuple(self._clients),
            host=tuple(self._host),
            target_cgroup=tuple(self._cgroup),
        )
        self._judged = judged_state(data, final=meta.ended is not None)
        spent = time.thread_time() - cpu
        self.judge_cpu_s += spent
        self._judged_at = time.monotonic()
        self._judge_wait_s = JUDGE_COST_FACTOR * spent if self.judge_every_s else 0.0

    def _header(self, meta: RunMeta) -> dict[str, Any]:
        now = time.time()
        elapsed = None if meta.started is None else (meta.ended or now) - meta.started
        report = self.run_dir / "report.html"
        return {
            "profile": meta.profile_name,
            "run_dir": str(self.run_dir),
            "planned_s": meta.planned_duration_s,
            "elapsed_s": None if elapsed is None else max(0.0, elapsed),
            "state": "waiting" if meta.started is None else "ended" if meta.ended else "running",
            "report": report.name if meta.ended is not None and report.is_file() else None,
            "aborted": None if meta.aborted is None else meta.aborted.get("reason"),
            "interrupted": meta.interrupted,
        }

    def _series(self, bin_s: float) -> dict[str, Any]:
        for index in self._dirty:
            self._summaries[index] = _summary(self._bins[index], bin_s)
        self._dirty.clear()
        last = max(self._bins, default=-1)
        ops = sorted({op for b in self._bins.values() for op in b.latencies})
        summaries = [self._summaries.get(i) for i in range(last + 1)]
        out: dict[str, Any] = {"t": [i * bin_s for i in range(last + 1)], "ops": ops}
        # A second without requests of an operation: its rate is 0, its latency unknown.
        out["rps"] = {op: [s["rps"].get(op, 0.0) if s else 0.0 for s in summaries] for op in ops}
        for key in ("p50", "p95", "p99"):
            out[key] = {op: [s[key].get(op) if s else None for s in summaries] for op in ops}
        out["errors"] = [s["errors"] if s else 0 for s in summaries]
        out["status"] = {
            c: [s["status"].get(c, 0) if s else 0 for s in summaries] for c in STATUS_CLASSES
        }
        return out

    def _runs(self, meta: RunMeta) -> dict[str, Any]:
        finished = {c.run_id for c in self._clients}
        # As the report counts them (an interrupted run is not a failed one).
        failed = sum(1 for c in self._clients if c.outcome not in {*NOT_FAILED, "interrupted"})
        return {
            "planned": meta.runs_planned,
            "finished": len(finished),
            "failed": failed,
            "in_flight": len(self._run_ids - finished),
            "requests": len(self._requests),
        }


def _summary(slot: _Bin, bin_s: float) -> dict[str, Any]:
    out: dict[str, Any] = {"rps": {}, "p50": {}, "p95": {}, "p99": {}}
    for op, values in slot.latencies.items():
        ordered = sorted(values)
        out["rps"][op] = round(len(values) / bin_s, 3)
        for q in (50, 95, 99):
            out[f"p{q}"][op] = round(percentile(ordered, q), 1)
    out["errors"] = slot.errors
    out["status"] = dict(slot.status)
    return out


def _host_series(rows: list[Mapping[str, Any]], started: float | None) -> dict[str, Any]:
    """Generator CPU over time: the host's, and the clients' share (host.jsonl)."""
    t: list[float] = []
    cpu: list[float | None] = []
    clients: list[float | None] = []
    for row in rows:
        ts = row.get("ts")
        if not isinstance(ts, int | float) or started is None:
            continue
        t.append(round(ts - started, 2))
        cpu.append(_number(row.get("host_cpu_percent")))
        part = row.get("clients")
        clients.append(_number(part.get("cpu_percent")) if isinstance(part, dict) else None)
    return {"t": t, "cpu": cpu, "clients_cpu": clients}


def _cgroup_series(rows: list[Mapping[str, Any]], started: float | None) -> dict[str, Any]:
    """The sized target's CPU, throttling and memory over time (target_cgroup.jsonl)."""
    out: dict[str, list[float | None]] = {
        "t": [],
        "cpu_percent": [],
        "throttled_percent": [],
        "memory_mb": [],
    }
    for row in rows:
        ts = row.get("ts")
        if not isinstance(ts, int | float) or started is None:
            continue
        out["t"].append(round(ts - started, 2))
        for key in ("cpu_percent", "throttled_percent", "memory_mb"):
            out[key].append(_number(row.get(key)))
    return out


def _cgroup_last(rows: list[Mapping[str, Any]]) -> list[list[str]]:
    """The target's latest cgroup counters as label/value rows (none without --sizing)."""
    if not rows:
        return []
    last = rows[-1]
    return [
        [str(k), str(v)] for k, v in last.items() if k != "ts" and not isinstance(v, dict | list)
    ]


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _read_meta(run_dir: Path) -> RunMeta:
    try:
        return RunMeta.read(run_dir)
    except RecordError:  # between two atomic writes there is always one; a torn read waits
        return RunMeta(profile={})
