"""Did the processes that time and serve requests wait for a CPU? The measured half of the
generator rule (``pipstorm.engine.analysis.generator.saturation``).

A busy host is a proxy for distortion, not the distortion: a machine full of clients at a low
priority may sit at 100 % CPU while the proxy (SCHED_FIFO, or niced ahead) gets a core the moment
a request needs one. What turns into false latency is the proxy or a local target being ready to
run and waiting on a run queue while a request is in flight. The sampler records exactly that
per second (``runq_wait_ms`` of the ``proxy`` and ``target`` groups, from Linux's per-thread
``schedstat``: ``pipstorm.engine.run.runqueue``); this module judges it.

**The threshold**: a group waited for a CPU more than ``WAIT_PERCENT`` (10 %) of a second, i.e.
100 ms summed over its threads, for ``CPU_SUSTAINED_S`` consecutive seconds or a quarter of the
sampled time (the CPU rule's own shape). Why 10 %: the proxy is one event loop, so a wait
delays every request in flight while it lasts. At 10 % of the time a request that is in flight
for the proxy's median exchange here (a listing through the proxy: ~1.3 ms p50 quiet, 5-10 ms in
a burst) is delayed by 0.1-1 ms on average, already the proxy's whole added-latency budget (<=
0.3 ms p50, <= 1 ms p99; issue 20). Measured on the 2-core machine (2026-12-06, quiet, under
the lock): the proxy at SCHED_FIFO through two x170 bursts waited at most 0.5 % of any sampled
second, twenty times below the limit; the bench's static index beside it (32 threads, nice -5)
waited 143 % p95 (summed over threads) and is flagged; a proxy niced +19 beside a busy loop per
core is flagged (``tests/e2e/test_generator_bound.py``).

**Or over the run**: a group's threads spent more than ``RUNNABLE_WAIT_SHARE`` (25 %) of their
runnable time (run + wait) waiting, at least ``MIN_WAIT_S`` (1 s) in all. A proxy only becomes
runnable when it has work, so this is the share of its request handling stretched by waiting,
however few requests a run makes: a light run whose proxy is starved waits hard in the few
seconds that carry requests and idles in between, and no streak of seconds shows it. Measured
(2026-12-06): x170's proxy at SCHED_FIFO 0.7 % (20 ms waited, 3 s run); a proxy niced +19
beside a busy loop per core in ``light_load`` 99.8 % (11.9 s waited, 27 ms run); the static
index beside x170's clients ~96 %.

**When it replaces the CPU rule**: only when the wait is measured for every process that records
or serves latency on this host, in every sample: the proxy always, and the target when it is
local (embedded, or on a loopback URL and found listening). Measured also means covered: a
thread that exits between two samples takes its wait along, so the threads' own CPU
(``runq_run_ms``) must account for at least ``MIN_COVERAGE`` of the group's CPU (from psutil,
which the kernel keeps for exited threads) over the run; a server that spawns a thread per
request and loses most of them is not measured. Otherwise the host CPU rule stays the verdict.

**ATTRIBUTED: a local target's wait counts as far as other processes' CPU explains it.** A
server's threads also wait for each other (more runnable threads than cores, GIL hand-offs):
that queue is the server's own and would be the same on a host of its own. The wait the
generator can have caused is bounded by the CPU every other process used on the cores the target
may run on (``others_cpu_ms``: the busy share of its ``cpus`` minus its own run time) while the
wait lasted, so the rule counts ``min(wait, others' CPU)``: a target alone on its cores counts
nothing, one whose threads wait while clients hold the cores counts all of it. "While it lasted"
because Linux adds a thread's wait to its schedstat when the thread gets a CPU: a thread starved
for 11.5 s shows it all in the second it finally ran (a static index niced +19 beside a busy loop
per core, 2026-12-06). A wait reported in a sample began at most as long before that sample's
interval as the longest one thread waited in it (``runq_wait_max_ms``; threads wait side by
side, so not the sum), and it is set against the others' CPU of the samples in that span, each
ms of which explains one ms of wait once (``OthersCredit``); per second alone the rule counted
2.5 of that index's 12 s and let it pass. Judged like the proxy's,
except that the share of its runnable time (run + counted wait) must exceed
``TARGET_WAIT_SHARE`` (50 %), in a second (beside the 10 %) and over the run: the target then
spent longer waiting for the generator's CPU than running, and its latency is more the
generator's than its own. Measured on the 2-core machine (2026-12-06, quiet, under the lock):
the bench's static index beside x170's 510 clients waited 42.3 s against 1.03 s run, 30.0 s of
it explained by others' CPU (97 %), and 0.24 s in all at SCHED_FIFO: flagged; the embedded
pypiserver at x25 (`make run`, four runs) waited 16.5-18.7 s against 5.8-6.3 s run, of which
others' CPU explains 4.6-5.4 s (44-46.5 %): not flagged (a thin margin: a busier machine flags
it), the rest its two workers' threads queueing for each other (seconds where it waited 2.3 s
with no other process running); a static index niced +19 beside a busy loop per core is
flagged, and one pinned to a core with two busy children of its own, waiting as long, is not
(``tests/e2e/test_generator_bound.py``).

**A sized target's cgroup**: a CPU quota throttles the target's threads while they are runnable,
which shows as run-queue wait too; that is the index's limit (the deployment it models), not the
generator's. The target's wait is therefore not counted in seconds its cgroup was throttled
(``throttled_ms`` > 0); the proxy's always is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

#: A group waited for a CPU more than this share of a second (summed over its threads).
WAIT_PERCENT = 10.0
#: Over the run, a group waiting more than this share of its runnable time is flagged ...
RUNNABLE_WAIT_SHARE = 0.25
#: A local target's limit on the same share, of its wait that other processes' CPU explains
#: (ATTRIBUTED in the module docstring): more than this, it waited longer for the generator's
#: CPU than it ran.
TARGET_WAIT_SHARE = 0.5
#: ... once its wait adds up to this much (below, a few slow wake-ups are not a pattern).
MIN_WAIT_S = 1.0
#: Over the run, the sampled threads' CPU must cover this share of the group's CPU.
MIN_COVERAGE = 0.8
#: Below this much CPU over the run a group's coverage is not judged (tick-rounded noise).
_COVERAGE_MIN_CPU_S = 1.0
#: Two samples further apart than this many intervals are not "consecutive" (a stalled sampler).
_GAP_FACTOR = 2.5


class Timed(Protocol):
    """A sample in time: when it was taken and the interval it covers."""

    @property
    def ts(self) -> float: ...
    @property
    def interval_s(self) -> float: ...


_Sample = TypeVar("_Sample", bound=Timed)


class WaitSample(Timed, Protocol):
    """What this rule reads of a host sample (``saturation.HostSample``)."""

    @property
    def waits(self) -> dict[str, GroupWait | None]: ...


@dataclass(frozen=True)
class GroupWait:
    """One group's run-queue figures in one sample (from its ``host.jsonl`` object)."""

    wait_ms: float | None  # None: the group was sampled, its wait was not
    run_ms: float | None
    cpu_percent: float | None
    throttled_ms: float | None = None
    #: CPU that every other process used on the cores this group may run on (None: not known).
    others_ms: float | None = None
    #: The most one of its threads waited (None: rows before it; the sum bounds it then).
    wait_max_ms: float | None = None

    @classmethod
    def from_json(cls, data: object, *, others_ms: float | None = None) -> GroupWait | None:
        """The group's figures, or None when the group was not sampled (``null``/absent)."""
        if not isinstance(data, dict):
            return None
        return cls(
            wait_ms=_num(data.get("runq_wait_ms")),
            run_ms=_num(data.get("runq_run_ms")),
            cpu_percent=_num(data.get("cpu_percent")),
            throttled_ms=_num(data.get("throttled_ms")),
            others_ms=others_ms,
            wait_max_ms=_num(data.get("runq_wait_max_ms")),
        )

    def counted_wait_ms(self, group: str) -> float | None:
        """The wait the rule counts. The proxy's: all of it. A local target's: only what other
        processes' CPU can explain (see ATTRIBUTED), and none in a second its cgroup was
        throttled (the index's own limit)."""
        if group != "target" or self.wait_ms is None:
            return self.wait_ms
        if self.throttled_ms:
            return 0.0
        if self.others_ms is None:
            return self.wait_ms  # not known: every ms of it may be the generator's
        return min(self.wait_ms, self.others_ms)


class OthersCredit:
    """Others' CPU not yet set against a local target's wait, per sample (ATTRIBUTED): fed in
    time order, it turns each sample's ``others_ms`` from that second's figure into what the
    span of the sample's wait offers."""

    def __init__(self) -> None:
        self._unspent: list[list[float]] = []  # [sample ts, ms of others' CPU unspent]

    def attribute(self, ts: float, interval_s: float, wait: GroupWait | None) -> GroupWait | None:
        """``wait`` with ``others_ms`` replaced by the credit its span offers, that credit spent
        by what the rule counts of it (oldest first: it expires first)."""
        if wait is None or wait.others_ms is None:
            return wait
        self._unspent.append([ts, wait.others_ms])
        if wait.wait_ms is None:
            return wait
        # The samples whose interval overlaps the span the wait can have lasted: as far back as
        # the longest one thread waited (threads wait side by side).
        longest = wait.wait_ms if wait.wait_max_ms is None else wait.wait_max_ms
        began = ts - interval_s - longest / 1000.0
        span: list[list[float]] = []
        for entry in reversed(self._unspent):  # time order: stop at the span's start
            if entry[0] <= began:
                break
            span.append(entry)
        span.reverse()
        attributed = replace(wait, others_ms=sum(ms for _, ms in span))
        spend = attributed.counted_wait_ms("target") or 0.0
        for entry in span:
            taken = min(entry[1], spend)
            entry[1] -= taken
            spend -= taken
        return attributed


def others_cpu_ms(row: Mapping[str, Any], group: str) -> float | None:
    """The CPU (ms) every process but ``group`` used in a ``host.jsonl`` row's interval, on the
    cores ``group`` may run on (its ``cpus``, all cores when absent); None when the row lacks the
    per-core figures."""
    per_core, data = row.get("host_cpu_per_core"), row.get(group)
    interval = _num(row.get("interval_s")) or 1.0
    if not isinstance(per_core, list) or not isinstance(data, Mapping):
        return None
    cores = data.get("cpus")
    indices = (
        [c for c in cores if isinstance(c, int) and 0 <= c < len(per_core)]
        if isinstance(cores, list)
        else list(range(len(per_core)))
    )
    busy = sum(_num(per_core[c]) or 0.0 for c in indices) / 100.0 * interval * 1000.0
    own = _num(data.get("runq_run_ms"))
    if own is None:
        own = (_num(data.get("cpu_percent")) or 0.0) * 10.0 * interval
    return max(0.0, busy - own)


def _num(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class GroupFigures:
    """One group's wait over the run."""

    wait_percent_p95: float | None
    wait_percent_max: float | None
    longest_s: float
    share: float | None
    coverage: float | None
    throttled_s: float
    measured: bool
    why_not: str | None
    waited_s: float = 0.0  # the wait the rule counts (``GroupWait.counted_wait_ms``)
    ran_s: float = 0.0
    waited_all_s: float = 0.0  # the wait as measured, whatever caused it

    @property
    def runnable_wait_share(self) -> float | None:
        """The share of the group's runnable time (run + wait) spent waiting."""
        total = self.waited_s + self.ran_s
        return round(self.waited_s / total, 4) if total > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "waited_s": self.waited_s,
            "waited_all_s": self.waited_all_s,
            "ran_s": self.ran_s,
            "runnable_wait_share": self.runnable_wait_share,
            "wait_percent": {"p95": self.wait_percent_p95, "max": self.wait_percent_max},
            "waited_longest_s": self.longest_s,
            "waited_share": self.share,
            "coverage": self.coverage,
            "throttled_s": self.throttled_s,
            "measured": self.measured,
            "not_measured_because": self.why_not,
        }


def _percent(sample: WaitSample, group: str) -> float | None:
    figures = sample.waits.get(group)
    wait = None if figures is None else figures.counted_wait_ms(group)
    if wait is None or sample.interval_s <= 0:
        return None
    return 100.0 * wait / (1000.0 * sample.interval_s)


def _over(sample: WaitSample, group: str) -> bool:
    """Whether ``group`` waited (as counted) over the limit in this sample; for a local target
    also more than ``TARGET_WAIT_SHARE`` of its runnable time (run + counted wait) then."""
    percent = _percent(sample, group)
    if percent is None or percent <= WAIT_PERCENT:
        return False
    figures = sample.waits.get(group)
    if group != "target" or figures is None:
        return True
    counted = figures.counted_wait_ms(group) or 0.0
    return counted / (counted + (figures.run_ms or 0.0)) > TARGET_WAIT_SHARE


def streaks(samples: Sequence[_Sample], over: Callable[[_Sample], bool]) -> tuple[float, float]:
    """(longest consecutive seconds where ``over``, seconds in total): the one count of every
    sustained-for-N-seconds rule here and in ``saturation`` (host CPU)."""
    longest = streak = total = 0.0
    previous: _Sample | None = None
    for s in samples:
        consecutive = previous is not None and s.ts - previous.ts <= _GAP_FACTOR * max(
            s.interval_s, previous.interval_s
        )
        if over(s):
            streak = (streak if consecutive else 0.0) + s.interval_s
            total += s.interval_s
        else:
            streak = 0.0
        longest = max(longest, streak)
        previous = s
    return longest, total


def _coverage(samples: Sequence[WaitSample], group: str) -> float | None:
    run_s = cpu_s = 0.0
    for s in samples:
        figures = s.waits.get(group)
        if figures is None or figures.run_ms is None or figures.cpu_percent is None:
            continue
        run_s += figures.run_ms / 1000.0
        cpu_s += figures.cpu_percent / 100.0 * s.interval_s
    if cpu_s < _COVERAGE_MIN_CPU_S:
        return None
    return round(run_s / cpu_s, 3)


def group_figures(samples: Sequence[WaitSample], group: str) -> GroupFigures:
    """One group's wait figures over the run, and whether they count as measured."""
    percents = sorted(p for s in samples if (p := _percent(s, group)) is not None)
    longest, total = streaks(samples, lambda s: _over(s, group))
    sampled = sum(s.interval_s for s in samples)
    coverage = _coverage(samples, group)
    throttled = sum(
        (f.throttled_ms or 0.0) for s in samples if (f := s.waits.get(group)) is not None
    )
    why_not = None
    if not samples:
        why_not = "no samples"
    elif any(s.waits.get(group) is None for s in samples):
        why_not = "not sampled (not watched)"
    elif len(percents) < len(samples):
        why_not = "no run-queue wait in the samples (no schedstat)"
    elif coverage is not None and coverage < MIN_COVERAGE:
        why_not = f"threads that exited took {100 * (1 - coverage):.0f} % of its CPU unsampled"
    p95 = percents[min(len(percents) - 1, int(0.95 * len(percents)))] if percents else None
    return GroupFigures(
        wait_percent_p95=None if p95 is None else round(p95, 1),
        wait_percent_max=round(percents[-1], 1) if percents else None,
        longest_s=round(longest, 1),
        share=round(total / sampled, 3) if sampled > 0 else None,
        coverage=coverage,
        throttled_s=round(throttled / 1000.0, 3),
        measured=why_not is None,
        why_not=why_not,
        waited_s=round(sum(_counted(s, group) for s in samples) / 1000.0, 3),
        waited_all_s=round(
            sum((f.wait_ms or 0.0) for s in samples if (f := s.waits.get(group)) is not None)
            / 1000.0,
            3,
        ),
        ran_s=round(
            sum((f.run_ms or 0.0) for s in samples if (f := s.waits.get(group)) is not None)
            / 1000.0,
            3,
        ),
    )


def _counted(sample: WaitSample, group: str) -> float:
    figures = sample.waits.get(group)
    wait = None if figures is None else figures.counted_wait_ms(group)
    return wait or 0.0


@dataclass(frozen=True)
class WaitCheck:
    """The wait rule's result: per group figures, whether it replaces the CPU rule, reasons."""

    groups: dict[str, GroupFigures]
    measured: bool  # every latency-recording process on this host measured in every sample
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "measured": self.measured,
            "groups": {name: g.to_dict() for name, g in self.groups.items()},
            "rule": {
                "wait_percent": WAIT_PERCENT,
                "runnable_wait_share": RUNNABLE_WAIT_SHARE,
                "target_wait_share": TARGET_WAIT_SHARE,
                "min_wait_s": MIN_WAIT_S,
                "min_coverage": MIN_COVERAGE,
            },
        }


def check_wait(
    samples: Sequence[WaitSample], *, local_target: bool, sustained_s: float, busy_share: float
) -> WaitCheck:
    """Judge the proxy's (and a local target's) run-queue wait; see the module docstring."""
    names = ("proxy", "target") if local_target else ("proxy",)
    groups = {name: group_figures(samples, name) for name in names}
    reasons: list[str] = []
    for name, g in groups.items():
        who = "the proxy" if name == "proxy" else "the local target"
        limit = RUNNABLE_WAIT_SHARE if name == "proxy" else TARGET_WAIT_SHARE
        if name == "target":
            who += " (the wait other processes' CPU explains)"
        if g.wait_percent_max is None:
            continue
        if g.longest_s >= sustained_s:
            reasons.append(
                f"{who} waited for a CPU more than {WAIT_PERCENT:g} % of the time "
                f"for {g.longest_s:.0f} consecutive s"
            )
        elif (
            g.share is not None
            and g.share >= busy_share
            and g.share * _sampled(samples) >= (sustained_s)
        ):
            reasons.append(
                f"{who} waited for a CPU more than {WAIT_PERCENT:g} % of the time "
                f"in {100 * g.share:.0f} % of the run's seconds"
            )
        elif (
            g.waited_s >= MIN_WAIT_S
            and (share := g.runnable_wait_share) is not None
            and share > limit
        ):
            reasons.append(
                f"{who} waited for a CPU {100 * share:.0f} % of the time it had work "
                f"({g.waited_s:.1f} s waited, {g.ran_s:.2f} s run)"
            )
    # The wait replaces the host CPU rule where it is measured for every latency-recording
    # process on this host: the proxy, and a local target (its attributed wait: ATTRIBUTED).
    measured = all(g.measured for g in groups.values())
    return WaitCheck(groups=groups, measured=measured, reasons=tuple(reasons))


def _sampled(samples: Sequence[WaitSample]) -> float:
    return sum(s.interval_s for s in samples)
