"""The sized target's cgroup over the run, drawn to sit beside the latency chart.

Three panels on the latency chart's time axis: the server's CPU against its quota, the share of
CFS periods in which it was throttled, and its memory against the limit, with each OOM kill and
the server's death marked. A latency spike can then be read against the quota that caused it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from pipstorm.engine.report.charts.draw import (
    BURST_COLOUR,
    Chart,
    add_legend,
    panel_figure,
    time_axis,
    to_png,
)
from pipstorm.engine.rundir.host import number

KEY = "target-cgroup"
CPU_COLOUR = "#ff7f0e"
LIMIT_COLOUR = "#b3261e"
MEMORY_COLOUR = "#1f77b4"


def _column(rows: Sequence[Mapping[str, Any]], key: str) -> list[float]:
    return [v if (v := number(row.get(key))) is not None else float("nan") for row in rows]


def target_cgroup_chart(
    rows: Sequence[Mapping[str, Any]],
    sizing: Mapping[str, Any],
    *,
    origin: float,
    span_s: float,
    ticks: Sequence[float],
) -> Figure:
    """CPU vs quota, throttled share and memory vs limit of the target's cgroup."""
    offsets = [float(row["ts"]) - origin for row in rows]
    fig = panel_figure(3, 2.2)
    cpu_ax, throttle_ax, memory_ax = fig.subplots(3, 1, sharex=True)
    cpu_ax.plot(offsets, _column(rows, "cpu_percent"), color=CPU_COLOUR, label="server CPU")
    cpus = number(sizing.get("cpus"))
    if cpus is not None:
        cpu_ax.axhline(100 * cpus, color=LIMIT_COLOUR, linestyle="--", label="quota")
    cpu_ax.set_ylabel("CPU % (100 = a core)")
    cpu_ax.set_title(f"Target {sizing.get('name', '')}: CPU of its cgroup", loc="left")
    throttle_ax.plot(offsets, _column(rows, "throttled_percent"), color=LIMIT_COLOUR)
    throttle_ax.set_ylim(0, 105)
    throttle_ax.set_ylabel("throttled %")
    throttle_ax.set_title(
        "Share of CFS periods in which the server wanted more than its quota",
        loc="left",
        fontsize="medium",
    )
    memory_ax.plot(offsets, _column(rows, "memory_mb"), color=MEMORY_COLOUR, label="memory")
    limit = number(sizing.get("memory_mb"))
    if limit is not None:
        memory_ax.axhline(limit, color=LIMIT_COLOUR, linestyle="--", label="limit")
    _mark_events(memory_ax, rows, offsets)
    memory_ax.set_ylabel("MiB")
    memory_ax.set_ylim(bottom=0)
    memory_ax.set_title("Memory of its cgroup; OOM kills and death marked", loc="left")
    cpu_ax.set_ylim(bottom=0)
    for ax in (cpu_ax, throttle_ax, memory_ax):
        time_axis(ax, span_s, ticks, label=ax is memory_ax)
        add_legend(ax)
    return fig


def _mark_events(ax: Axes, rows: Sequence[Mapping[str, Any]], offsets: Sequence[float]) -> None:
    kills_seen = 0.0
    dead_marked = False
    for row, at in zip(rows, offsets, strict=True):
        kills = number(row.get("oom_kills")) or 0.0
        if kills > kills_seen:
            ax.axvline(
                at, color=LIMIT_COLOUR, linewidth=2, label="OOM kill" if not kills_seen else None
            )
            kills_seen = kills
        if row.get("server_alive") is False and not dead_marked:
            ax.axvline(at, color=BURST_COLOUR, linewidth=3, alpha=0.6, label="server died")
            dead_marked = True


def target_chart(
    rows: Sequence[Mapping[str, Any]],
    sizing: Mapping[str, Any],
    *,
    origin: float,
    span_s: float,
    ticks: Sequence[float],
) -> Chart:
    """The rendered chart for the reports."""
    figure = target_cgroup_chart(rows, sizing, origin=origin, span_s=span_s, ticks=ticks)
    return Chart(
        key=KEY,
        title="Target cgroup",
        filename=f"chart-{KEY}.png",
        caption=(
            "The embedded target's own cgroup counters: CPU against its quota, throttled "
            "periods, memory against its limit (dashed red), OOM kills and death marked."
        ),
        png=to_png(figure),
    )
