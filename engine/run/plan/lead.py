"""How far ahead of its instant each run is handed out: from the plan and measured costs.

A run must be prepared before its instant: in ``warm`` mode forked from its client's launcher,
started up and gated; in ``exec`` mode its venv or project made. A burst of N runs due at once
needs all N prepared before the burst, which on C cores at c CPU-s each takes about N*c/C
seconds; and a prepared warm child holds memory until its release (its USS: what it does not
share with the launcher, copy-on-write included). Both are measured before the run starts (one
probe run per client kind, prepared and never released: nothing is sent anywhere), then:

- ``ahead_s``: the largest instant's preparation time: its CPU with a safety factor, plus the
  memory its children fault in at what backing memory again costs this host (measured at the
  start, ``pipstorm.infra.first_touch``: on a VM that hands free memory back to its host, a burst's
  children find it given back; x170's 6 GB cost 2.3 ms of CPU per MB more than the probe's
  memory did), plus the launcher's own start (the first run of a kind waits for it) with the
  factor too (every worker starts its launchers at once), never less than a floor;
- ``peak_prepared``: the most runs prepared and not yet released at any moment (those due within
  any window of ``ahead_s``), and the memory they hold against a budget (by default half the
  memory available now).

When the plan cannot be prepared in time (the first instant comes sooner than ``ahead_s`` after
the start) or within the memory budget, ``problem`` says so in one line with the figures, before
any load is sent; the run starts late enough for its first burst (``start_margin_s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import resource
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from pipstorm.clients.runner import prepared
from pipstorm.clients.task import ClientTask
from pipstorm.clients.warm.launchers import Launchers
from pipstorm.clients.warm.run import warm_capable, warm_prepared
from pipstorm.engine.rundir.files import write_json_atomic
from pipstorm.infra import first_touch

#: Preparing on a loaded host takes longer than the CPU figure says.
SAFETY = 2.0
#: Never hand a run out later than this before its instant (the pool's thread, the fork).
MIN_AHEAD_S = {"warm": 3.0, "exec": 10.0}
#: Share of the memory available at start that prepared runs may hold.
MEMORY_SHARE = 0.5
#: A probe never sends anything: its index URL is a loopback port nothing listens on.
PROBE_URL = "http://127.0.0.1:9/r/pipstorm-probe/simple/"
#: How long a probe child may take to reach its gate (poetry's launcher imports first).
PROBE_TIMEOUT_S = 120.0
#: A first-touch figure at least this high found memory the host had taken back (the guest's
#: own fault is ~0.5 ms per MB with 4 KB pages, ~0.1 with huge pages; the host's part ~2.3).
GIVEN_BACK_MS_PER_MB = 0.5
#: Where the last such figure is kept between runs, in the cache (with the boot it was seen in).
TOUCH_FILE = "first-touch.json"
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class PrepareCost:
    """What preparing one run of ``kind`` costs, measured: CPU before the instant, memory held
    until release (0 in exec mode: a venv on disk holds none), the launcher's start-up."""

    kind: str
    mode: str
    cpu_s: float
    held_mb: float
    launcher_s: float = 0.0


@dataclass(frozen=True)
class LeadPlan:
    """How far ahead runs are handed out, and what that holds at the worst moment."""

    mode: str
    kinds: dict[str, str]  # kind -> the mode its runs launch in
    ahead_s: float
    start_margin_s: float
    largest_instant: int
    prepare_s: float  # the largest instant's preparation time (with the safety factor)
    peak_prepared: int
    peak_mb: float
    budget_mb: float
    costs: tuple[PrepareCost, ...]
    problem: str | None
    touch_ms_per_mb: float = 0.0  # what backing memory again costs the host, per MB held

    def to_dict(self) -> dict[str, Any]:
        """For ``run.json`` (``launch``)."""
        data = asdict(self)
        data["costs"] = {cost.kind: asdict(cost) for cost in self.costs}
        return data

    def warnings(self) -> list[str]:
        """The problem, if any, as a run warning (``run.json`` ``warnings``)."""
        return [f"the plan cannot be prepared as played: {self.problem}"] if self.problem else []

    def summary(self) -> str:
        """One line for the terminal before the run starts."""
        kinds = ", ".join(f"{k} {m}" for k, m in sorted(self.kinds.items()))
        held = (
            f", at most {self.peak_prepared} gated ({self.peak_mb:.0f} MB of {self.budget_mb:.0f})"
            if self.peak_mb
            else ""
        )
        touch = (
            f", memory first touched +{self.touch_ms_per_mb:.1f} ms of CPU per MB"
            if self.touch_ms_per_mb
            else ""
        )
        return (
            f"launch: {kinds}; runs prepared {self.ahead_s:.1f} s ahead (largest instant "
            f"{self.largest_instant} runs, {self.prepare_s:.1f} s to prepare{touch}){held}"
        )


def kind_modes(mode: str, kinds: Iterable[str]) -> dict[str, str]:
    """The mode each kind's runs launch in: ``warm`` only where the kind has a warm launch."""
    return {k: "warm" if mode == "warm" and warm_capable(k) else "exec" for k in kinds}


def measure_costs(
    modes: Mapping[str, str], versions: Mapping[str, str | None], temp_root: Path | None = None
) -> tuple[PrepareCost, ...]:
    """Prepare one probe run per kind the way the pool will, and measure it."""
    costs = []
    for kind, mode in sorted(modes.items()):
        task = ClientTask(
            run_id=f"pipstorm-probe-{kind}",
            client=kind,
            project="pipstorm-probe",
            version="1.0.0",
            index_url=PROBE_URL,
            client_version=versions.get(kind),
        )
        costs.append(_measure_warm(task, temp_root) if mode == "warm" else _measure_exec(task))
    return tuple(costs)


def _measure_warm(task: ClientTask, temp_root: Path | None) -> PrepareCost:
    """Two probes: the first starts the launcher (its start is ``launcher_s``) and computes
    what its children share (``pipstorm.clients.warm.shared``); the second is what every later
    run costs: the child's CPU to its gate (the client's start-up included), the launcher's
    fork of it and this process's part (its dir, its spec), all of it CPU of the host."""
    launchers = Launchers(temp_root)
    try:
        started = time.monotonic()
        first = _probe(task, launchers, temp_root)
        if first is None:
            return PrepareCost(task.client, "warm", 0.0, 0.0)
        gated, cpu, held, launcher_pid = first
        launcher_s = max(0.0, gated - started)
        before = _self_cpu() + _cpu_of(launcher_pid)
        second = _probe(dataclasses.replace(task, run_id=f"{task.run_id}-2"), launchers, temp_root)
        if second is None:
            return PrepareCost(task.client, "warm", cpu, held, launcher_s)
        around = max(0.0, _self_cpu() + _cpu_of(launcher_pid) - before)
        return PrepareCost(task.client, "warm", second[1] + around, second[2], launcher_s)
    finally:
        launchers.close()


def _probe(
    task: ClientTask, launchers: Launchers, temp_root: Path | None
) -> tuple[float, float, float, int] | None:
    """One probe child prepared and gated, then dropped: (gated at, its CPU, its USS in MB,
    its launcher's pid)."""
    with warm_prepared(
        task, launchers=launchers, temp_root=temp_root, due_mono=None, registry=None
    ) as prep:
        child = prep.child
        if child is None or not child.gated.wait(PROBE_TIMEOUT_S) or child.pid is None:
            return None
        try:
            held = psutil.Process(child.pid).memory_full_info().uss / 2**20
        except psutil.Error:
            held = 0.0
        gated = child.gated_mono or time.monotonic()
        return gated, child.cpu_ahead_s, held, child.launcher.pid


def _cpu_of(pid: int) -> float:
    """A process's own CPU (not its children's: the launcher's helpers, its children)."""
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _measure_exec(task: ClientTask) -> PrepareCost:
    before = _self_cpu()
    with prepared(task, temp_root=None):
        pass
    return PrepareCost(task.client, "exec", max(0.0, _self_cpu() - before), 0.0)


def touch_cost(cache_root: Path) -> float:
    """What backing memory again costs this host per MB (``pipstorm.infra.first_touch``): this
    run's measure, or the last one since the machine booted that found memory given back, if
    higher.

    Why not the measure alone: it finds given-back memory only when no memory freed moments
    ago comes first. Just after another run ended it says ~0, while the burst 10-30 s later
    finds the freed memory given back: x170 right after a bench freed 6 GB measured 0.05 ms per
    MB and 30 of its first burst's runs reached their gates after their instant. What the host
    charges does not change while the machine runs; whether a sample meets it does. Kept in
    ``cache_root``/``TOUCH_FILE`` with the boot id, so a new boot (another machine) measures
    afresh; nothing kept where the file cannot be read or written."""
    return remembered_touch(first_touch.measure().host_ms_per_mb, cache_root)


def remembered_touch(measured: float, cache_root: Path) -> float:
    """``touch_cost``'s choice for a measured figure: it, kept if it found memory given back;
    else the figure kept from this boot, if higher."""
    try:
        boot = BOOT_ID.read_text(encoding="ascii").strip()
    except OSError:
        return measured
    path = cache_root / TOUCH_FILE
    kept = _kept_touch(path, boot)
    if measured >= GIVEN_BACK_MS_PER_MB:
        _keep_touch(path, boot, measured)
        return measured
    return max(measured, kept)


def _kept_touch(path: Path, boot: str) -> float:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0.0
    if not isinstance(data, dict) or data.get("boot_id") != boot:
        return 0.0
    value = data.get("touch_ms_per_mb")
    return float(value) if isinstance(value, int | float) else 0.0


def _keep_touch(path: Path, boot: str, value: float) -> None:
    """Written atomically: concurrent runs never read half of it."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, {"boot_id": boot, "touch_ms_per_mb": value})


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan_lead(
    dues: Sequence[tuple[float, str]],
    costs: Sequence[PrepareCost],
    *,
    mode: str,
    cores: int,
    budget_mb: float,
    start_margin_s: float,
    touch_ms_per_mb: float = 0.0,
) -> LeadPlan:
    """``dues``: (offset, kind) of every planned run. The lead time, its peak and any problem.

    ``touch_ms_per_mb``: what memory costs this host when touched for the first time beyond
    the guest's own fault (``pipstorm.infra.first_touch``), added per MB a prepared run holds,
    without the safety factor: it is the worst case already (every MB found given back; the
    guest keeps some GB, so the first of a burst's children find theirs at the probe's cost)."""
    by_kind = {cost.kind: cost for cost in costs}
    work = {c.kind: SAFETY * c.cpu_s + c.held_mb * touch_ms_per_mb / 1000.0 for c in costs}
    instants: dict[float, list[str]] = {}
    for offset, kind in dues:
        instants.setdefault(offset, []).append(kind)
    prepare_s = 0.0
    largest = 0
    for kinds in instants.values():
        prepare_s = max(prepare_s, sum(work.get(k, 0.0) for k in kinds) / max(1, cores))
        largest = max(largest, len(kinds))
    launcher_s = max((cost.launcher_s for cost in costs), default=0.0)
    modes = {cost.kind: cost.mode for cost in costs}
    floor = MIN_AHEAD_S["warm" if "warm" in modes.values() else "exec"]
    # Every pool worker starts its own launchers when its first run comes, all at once and
    # while the workers themselves start: the probe's launcher started alone (issue 20: x25's
    # first burst was 0.5-1.3 s late with one launcher start of lead, its second on time).
    ahead = max(floor, prepare_s + SAFETY * launcher_s)
    peak, peak_mb, window_work = _peak_held(sorted(dues), by_kind, work, ahead)
    problems = []
    if window_work > cores * ahead:
        problems.append(
            f"runs due within {ahead:.1f} s need {window_work:.1f} CPU-s of preparation (the "
            f"safety factor and the memory first touched in), more than {cores} cores give in "
            "that time: later runs will start late"
        )
    if peak_mb > budget_mb:
        problems.append(
            f"{peak} prepared runs would hold {peak_mb:.0f} MB, over the memory budget of "
            f"{budget_mb:.0f} MB"
        )
    first = min(instants, default=0.0)
    margin = max(start_margin_s, ahead - first)
    return LeadPlan(
        mode=mode,
        kinds=modes,
        ahead_s=round(ahead, 2),
        start_margin_s=round(margin, 2),
        largest_instant=largest,
        prepare_s=round(prepare_s, 2),
        peak_prepared=peak,
        peak_mb=round(peak_mb, 1),
        budget_mb=round(budget_mb, 1),
        costs=tuple(costs),
        problem="; ".join(problems) or None,
        touch_ms_per_mb=round(touch_ms_per_mb, 3),
    )


def _peak_held(
    dues: Sequence[tuple[float, str]],
    by_kind: Mapping[str, PrepareCost],
    work: Mapping[str, float],
    ahead: float,
) -> tuple[int, float, float]:
    """Most runs (and MB) prepared but not released at once (those due within ``ahead``), and
    the most preparation (``work``: CPU-s with the safety factor, memory first touched) any
    such window asks for."""
    peak, peak_mb, peak_work = 0, 0.0, 0.0
    start = 0
    held: Counter[str] = Counter()
    for offset, kind in dues:
        held[kind] += 1
        while dues[start][0] <= offset - ahead:
            held[dues[start][1]] -= 1
            start += 1
        memory = sum(n * (by_kind[k].held_mb if k in by_kind else 0.0) for k, n in held.items())
        peak_work = max(peak_work, sum(n * work.get(k, 0.0) for k, n in held.items()))
        if memory > peak_mb or (memory == peak_mb and sum(held.values()) > peak):
            peak, peak_mb = sum(held.values()), memory
    return peak, peak_mb, peak_work


def default_budget_mb() -> float:
    """Half of the memory available now."""
    return MEMORY_SHARE * psutil.virtual_memory().available / 2**20
