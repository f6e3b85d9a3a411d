"""Was the load generator itself the bottleneck? The rule, over ``host.jsonl`` and
``clients.jsonl``.

A load generator that runs out of CPU measures itself: the proxy and a local target wait for a
core and record that wait as latency, clients time out, and runs start late so the index sees
less load than planned. The report must then say so, loudly, instead of blaming the index.

The rule (any condition flags the run as generator-bound):

- **CPU wait** (measured): the proxy, or a local target, waited on a run queue for a CPU more
  than ``cpu_wait.WAIT_PERCENT`` of the time for ``CPU_SUSTAINED_S`` consecutive seconds or
  ``CPU_BUSY_SHARE`` of the sampled time, or too large a share of its runnable time over the run
  (``pipstorm.engine.analysis.generator.cpu_wait``, where the thresholds are justified): that
  wait is what the proxy records as latency. A local target's wait counts only as far as other
  processes' CPU on its cores explains it (its threads queueing for each other are its own).
- **CPU** (the proxy for it): the host's CPU (all cores) above ``CPU_BUSY_PERCENT`` (90 %) for at
  least ``CPU_SUSTAINED_S`` (5) consecutive seconds, or for at least ``CPU_BUSY_SHARE`` (25 %) of
  the sampled time. One busy second is a burst starting; five in a row is a queue building up,
  and a quarter of the run in short spells distorts the percentiles as much. **Only when the
  wait is not measured** for every process on this host that records or serves latency (no
  schedstat, a local target not watched, threads that exited unsampled): where it is, a busy
  host whose proxy and target got their CPU in time is a reported figure (``cpu_rule_applied``
  false), not a verdict: a machine full of low-priority clients is what a burst looks like.
- **lag**: the p99 of the client runs' launch lag above ``LAG_P99_S`` (1 s): the generator could
  not launch runs on time, so the planned load was not offered.
- **onset**: the p95 of the runs' onset (intended instant -> first request at the proxy) above
  ``pipstorm.engine.analysis.generator.onset.ONSET_P95_S`` (1 s) at any burst tick or at the base
  ticks: the runs were released on time but reached the index late (client start-up starved of CPU),
  so the index saw a smear instead of the profile's bursts, whatever the CPU figure says.

``host.jsonl`` is parsed once, by ``pipstorm.engine.rundir.host``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pipstorm.engine.analysis.generator.cpu_wait import (
    WAIT_PERCENT,
    GroupWait,
    OthersCredit,
    WaitCheck,
    check_wait,
    others_cpu_ms,
    streaks,
)
from pipstorm.engine.analysis.generator.onset import ONSET_P95_S, Onset
from pipstorm.engine.analysis.stats import percentile
from pipstorm.engine.rundir.host import HostRow
from pipstorm.engine.rundir.records import ClientRecord

CPU_BUSY_PERCENT = 90.0
CPU_SUSTAINED_S = 5.0
CPU_BUSY_SHARE = 0.25
LAG_P99_S = 1.0

CPU_INFLATED = (
    "latency percentiles (p50/p95/p99 per operation): the proxy{target} waited for a CPU and "
    "that wait is recorded as latency",
    "error rates: client runs that hit their timeout, and requests they abandoned",
    "client run wall times and lag",
)
ONSET_INFLATED = (
    "the offered load: runs reached the index late, so bursts arrived smeared over seconds and "
    "the index saw less concurrency than the profile plans",
    "latency and error figures under the bursts, which were not the profile's bursts",
)
LAG_INFLATED = (
    "the offered load: runs started late, so the index saw less load than the profile plans "
    "and its latency and error rates may look better than under the real profile",
    "client run lag and done times (intended start to end)",
)


@dataclass(frozen=True)
class HostSample:
    """The part of one ``host.jsonl`` line the saturation rule reads."""

    ts: float
    interval_s: float
    host_cpu_percent: float
    load1: float | None = None
    host_mem_percent: float | None = None
    clients_cpu_percent: float | None = None
    proxy_cpu_percent: float | None = None
    #: The run-queue figures of the ``proxy`` and ``target`` groups (None: group not sampled).
    waits: dict[str, GroupWait | None] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HostSample | None:
        """The sample, or None when the line lacks the fields the rule needs."""
        ts, cpu = _num(data.get("ts")), _num(data.get("host_cpu_percent"))
        if ts is None or cpu is None:
            return None
        return cls(
            ts=ts,
            interval_s=_num(data.get("interval_s")) or 1.0,
            host_cpu_percent=cpu,
            load1=_num(data.get("load1")),
            host_mem_percent=_num(data.get("host_mem_percent")),
            clients_cpu_percent=_group_cpu(data.get("clients")),
            proxy_cpu_percent=_group_cpu(data.get("proxy")),
            waits={
                "proxy": GroupWait.from_json(data.get("proxy")),
                "target": GroupWait.from_json(
                    data.get("target"), others_ms=others_cpu_ms(data, "target")
                ),
            },
        )


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _group_cpu(value: object) -> float | None:
    return _num(value.get("cpu_percent")) if isinstance(value, Mapping) else None


def host_samples(rows: Iterable[HostRow]) -> list[HostSample]:
    """The rule's view of ``host.jsonl`` rows (``pipstorm.engine.rundir.host``: parsed, in time
    order)."""
    samples: list[HostSample] = []
    credit = OthersCredit()  # a local target's wait against others' CPU while it lasted
    for sample in map(HostSample.from_json, rows):
        if sample is None:
            continue
        target = credit.attribute(sample.ts, sample.interval_s, sample.waits.get("target"))
        samples.append(replace(sample, waits={**sample.waits, "target": target}))
    return samples


@dataclass(frozen=True)
class GeneratorCheck:
    """The generator's figures and whether it was the bottleneck (``report.json``'s
    ``generator`` section)."""

    saturated: bool
    reasons: tuple[str, ...]
    inflated: tuple[str, ...]
    samples: int
    cpu_p50: float | None
    cpu_p95: float | None
    cpu_max: float | None
    cpu_busy_longest_s: float
    cpu_busy_share: float | None
    lag_p99_s: float | None
    load1_max: float | None
    mem_max_percent: float | None
    clients_cpu_max: float | None
    proxy_cpu_max: float | None
    #: The measured run-queue wait (None for a check made without samples).
    cpu_wait: WaitCheck | None = None
    #: Whether the host CPU rule could flag the run (False: the wait was measured instead).
    cpu_rule_applied: bool = True
    #: What the host CPU did, when it was a figure rather than a verdict.
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The JSON form, with the rule's limits so a reader knows what was applied."""
        return {
            "saturated": self.saturated,
            "reason": "; ".join(self.reasons) or None,
            "reasons": list(self.reasons),
            "may_be_inflated": list(self.inflated),
            "samples": self.samples,
            "cpu_percent": {"p50": self.cpu_p50, "p95": self.cpu_p95, "max": self.cpu_max},
            "cpu_busy_longest_s": self.cpu_busy_longest_s,
            "cpu_busy_share": self.cpu_busy_share,
            "lag_p99_s": self.lag_p99_s,
            "load1_max": self.load1_max,
            "mem_max_percent": self.mem_max_percent,
            "clients_cpu_max_percent": self.clients_cpu_max,
            "proxy_cpu_max_percent": self.proxy_cpu_max,
            "cpu_wait": None if self.cpu_wait is None else self.cpu_wait.to_dict(),
            "cpu_rule_applied": self.cpu_rule_applied,
            "notes": list(self.notes),
            "rule": {
                "cpu_busy_percent": CPU_BUSY_PERCENT,
                "cpu_sustained_s": CPU_SUSTAINED_S,
                "cpu_busy_share": CPU_BUSY_SHARE,
                "lag_p99_s": LAG_P99_S,
                "onset_p95_s": ONSET_P95_S,
                "cpu_wait_percent": WAIT_PERCENT,
            },
        }


def _max(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def check_generator(
    samples: Sequence[HostSample],
    clients: Sequence[ClientRecord],
    *,
    local_target: bool,
    onset: Onset | None = None,
) -> GeneratorCheck:
    """Apply the rule (see the module docstring) to a run's samples and client runs."""
    inflated: list[str] = []
    cpu = sorted(s.host_cpu_percent for s in samples)
    longest, busy_total = streaks(samples, lambda s: s.host_cpu_percent > CPU_BUSY_PERCENT)
    sampled = sum(s.interval_s for s in samples)
    share = busy_total / sampled if sampled > 0 else None
    wait = check_wait(
        samples, local_target=local_target, sustained_s=CPU_SUSTAINED_S, busy_share=CPU_BUSY_SHARE
    )
    reasons = list(wait.reasons)
    busy = _busy_text(longest, share, busy_total)
    notes: list[str] = []
    if busy is not None and wait.measured and samples:
        who = "the proxy and the local target" if local_target else "the proxy"
        notes.append(f"{busy}: a figure, not a verdict ({who} measured for CPU wait instead)")
    elif busy is not None:
        reasons.append(busy)
    if reasons:
        target = " and the local target" if local_target else ""
        inflated.extend(text.format(target=target) for text in CPU_INFLATED)
    lags = sorted(c.lag_s for c in clients)
    lag_p99 = percentile(lags, 99) if lags else None
    if lag_p99 is not None and lag_p99 > LAG_P99_S:
        reasons.append(f"client run lag p99 {lag_p99:.2f} s > {LAG_P99_S:g} s")
        inflated.extend(t for t in LAG_INFLATED if t not in inflated)
    worst = None if onset is None else onset.worst_p95_s
    if onset is not None and onset.late and worst is not None:
        gated_late = onset.gated_late
        why = f" ({gated_late} runs gated after their instant: prepared late)" if gated_late else ""
        reasons.append(f"burst onset p95 {worst:.2f} s > {ONSET_P95_S:g} s{why}")
        inflated.extend(t for t in ONSET_INFLATED if t not in inflated)
    return GeneratorCheck(
        saturated=bool(reasons),
        reasons=tuple(reasons),
        inflated=tuple(inflated),
        samples=len(samples),
        cpu_p50=round(percentile(cpu, 50), 1) if cpu else None,
        cpu_p95=round(percentile(cpu, 95), 1) if cpu else None,
        cpu_max=cpu[-1] if cpu else None,
        cpu_busy_longest_s=round(longest, 1),
        cpu_busy_share=None if share is None else round(share, 3),
        lag_p99_s=None if lag_p99 is None else round(lag_p99, 3),
        load1_max=_max([s.load1 for s in samples]),
        mem_max_percent=_max([s.host_mem_percent for s in samples]),
        clients_cpu_max=_max([s.clients_cpu_percent for s in samples]),
        proxy_cpu_max=_max([s.proxy_cpu_percent for s in samples]),
        cpu_wait=wait,
        cpu_rule_applied=not (wait.measured and bool(samples)),
        notes=tuple(notes),
    )


def _busy_text(longest: float, share: float | None, busy_total: float) -> str | None:
    """The host CPU rule's finding, or None when the host was not busy for long."""
    if longest >= CPU_SUSTAINED_S:
        return f"generator host CPU above {CPU_BUSY_PERCENT:g} % for {longest:.0f} consecutive s"
    if share is not None and share >= CPU_BUSY_SHARE and busy_total >= CPU_SUSTAINED_S:
        return f"generator host CPU above {CPU_BUSY_PERCENT:g} % for {100 * share:.0f} % of the run"
    return None


def warning_lines(check: GeneratorCheck | None) -> list[str]:
    """The warning for people (report.md, terminal), or nothing when the generator kept up."""
    if check is None or not check.saturated:
        return []
    return [
        "WARNING: the load generator was the bottleneck (" + "; ".join(check.reasons) + ").",
        "These figures may be inflated by the generator, not the index:",
        *(f"  - {text}" for text in check.inflated),
        "Use fewer clients per machine, a bigger generator, or shard the run.",
    ]
