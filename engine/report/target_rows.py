"""The sized target's rows (``--sizing``): its sizing, cgroup, counters and diagnosis.

Shared by report.md, report.html and the terminal summary, like ``pipstorm.engine.report.rows``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from pipstorm.engine.report.model import Report
from pipstorm.engine.report.rows import NONE, fmt_num
from pipstorm.engine.rundir.host import number


def sizing_label(sizing: Mapping[str, Any]) -> str:
    """``baseline (t3.micro: 0.2 vCPU, 128 MiB, 2 gevent workers, apr1, simple-dir, sha256)``."""
    cpus, memory = sizing.get("cpus"), sizing.get("memory_mb")
    parts = [
        f"{cpus:g} vCPU" if isinstance(cpus, int | float) else "unlimited CPU",
        f"{memory} MiB" if isinstance(memory, int) else "unlimited memory",
        f"{sizing.get('workers')} {sizing.get('worker_class')} workers",
        str(sizing.get("auth")),
        str(sizing.get("backend")),
        f"hash {sizing.get('hash_algo')}",
    ]
    instance = f"{sizing['instance']}: " if sizing.get("instance") else ""
    return f"{sizing.get('name', '?')} ({instance}{', '.join(parts)})"


def target_rows(report: Report) -> list[tuple[str, str]]:
    """The sized target's facts and cgroup counters over the run (empty without --sizing)."""
    target = report.target
    if target is None:
        return []
    rows = [("sizing", sizing_label(target.sizing))]
    cgroup = target.cgroup or {}
    found = cgroup.get("limits")
    limits: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    if target.unconfined_reason is not None or not cgroup:
        rows.append(("confinement", f"none: {target.unconfined_reason or 'not recorded'}"))
    else:
        quota, period = limits.get("cpu_quota_us"), limits.get("cpu_period_us")
        memory = limits.get("memory_limit_bytes")
        rows.append(
            (
                "confinement",
                f"cgroup v{cgroup.get('version')}: CPU quota "
                + (f"{quota} us per {period} us" if isinstance(quota, int) else "none")
                + ", memory limit "
                + (f"{memory / 2**20:.0f} MiB" if isinstance(memory, int) else "none")
                + _weight(limits),
            )
        )
    if target.counters is not None:
        ratio = target.figure("throttled_ratio")
        rows += [
            (
                "server CPU",
                f"{fmt_num(target.figure('cpu_s'), 2)} CPU-s used; throttled in "
                f"{fmt_num(target.figure('throttled_periods'), 0)} of "
                f"{fmt_num(target.figure('periods'), 0)} periods "
                f"({fmt_num(None if ratio is None else 100 * ratio, 0)} %), "
                f"{fmt_num(target.figure('throttled_s'), 2)} s held back",
            ),
            ("memory peak", f"{fmt_num(target.figure('memory_peak_mb'))} MiB"),
            ("memory reclaim", _reclaim_row(target.figure)),
            ("OOM kills", fmt_num(target.figure("oom_kills"), 0)),
            ("survived", {True: "yes", False: "NO", None: NONE}[target.survived]),
        ]
    cost = target.listing_cost
    if cost is not None:
        rows.append(
            (
                "CPU per listing",
                " / ".join(
                    f"{fmt_num(None if v is None else 1000 * v, 2)} ms {label}"
                    for label, v in (
                        ("as sized", number(cost.get("as_sized"))),
                        ("with --auth none", number(cost.get("without_auth"))),
                        ("with --hash-algo off", number(cost.get("without_hashing"))),
                    )
                ),
            )
        )
    rows += [(f"diagnosis: {d.cause}", d.detail) for d in report.diagnosis]
    return rows


def _reclaim_row(figure: Callable[[str], float | None]) -> str:
    """Limit hits, refaults, major faults and the stall clock (where the kernel keeps one)."""
    stall = figure("memory_stall_s")
    return (
        f"limit hit {fmt_num(figure('limit_hits'), 0)} times, "
        f"{fmt_num(figure('refaults'), 0)} refaults, {fmt_num(figure('major_faults'), 0)} major "
        "faults, "
        + (
            f"stalled {fmt_num(stall, 1)} s"
            if stall is not None
            else "stall time not kept per cgroup here"
        )
    )


def _weight(limits: Mapping[str, Any]) -> str:
    """The CPU weight that puts the server before the clients sharing its cores (absent in runs
    recorded before 2026-12-06)."""
    for key, name in (("cpu_shares", "cpu.shares"), ("cpu_weight", "cpu.weight")):
        value = limits.get(key)
        if isinstance(value, int):
            return f", {name} {value} (ahead of the clients)"
    return ""
